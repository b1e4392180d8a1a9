"""``mlepi train-electron CONFIG.yaml``: train HedgeNet-Electron (:func:`mlepi_ase.train.electron.train_electron`).

The YAML file holds the training settings, section by section
(:data:`mlepi_ase.train.electron.DEFAULT_TRAIN_ELECTRON_CONFIG`): ``data`` (the HDF5 dataset of
``mlepi make-dataset electron`` and/or glob patterns of DeepH folders), ``model`` (hyper-parameters, orbital
basis, per-relation cutoffs), ``training`` (epochs, batch size, learning rate and schedule, device, dtype,
time limit), ``evaluation`` and ``output``.  Relative paths are taken from the YAML file's folder.  A run that
finds ``checkpoint.pt`` in its output folder resumes from it unless ``--restart`` is given.

Example::

    mlepi make-dataset electron -o electron_dataset --seed 0
    mlepi train-electron data/hedgenet_electron/config.yaml
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train-electron",
        help="train a HedgeNet-Electron Hamiltonian model (HDF5 dataset or DeepH folders)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", help="training configuration (YAML)")
    p.add_argument("--restart", action="store_true", help="ignore an existing checkpoint and start afresh")
    p.add_argument("--device", default=None, help="override training.device (cpu, cuda, cuda:1, ...)")
    p.add_argument("--dtype", default=None, choices=["float32", "float64"], help="override training.dtype")
    p.add_argument("--epochs", type=int, default=None, help="override training.epochs")
    p.add_argument("--time-limit", type=float, default=None, help="override training.time_limit_s (seconds)")
    p.add_argument("--output", default=None, help="override output.dir")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--quiet", action="store_true", help="do not echo log lines to the terminal")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import yaml

    from ..train.electron import train_electron

    path = Path(args.config)
    if not path.is_file():
        raise FileNotFoundError(f"training configuration {args.config!r} does not exist")
    with open(path) as fh:
        cfg = yaml.safe_load(fh) or {}
    if not isinstance(cfg, dict):
        raise ValueError(f"{args.config} must hold a YAML mapping of sections")
    training = cfg.setdefault("training", {}) or {}
    cfg["training"] = training
    for key, value in (("device", args.device), ("dtype", args.dtype), ("epochs", args.epochs),
                       ("time_limit_s", args.time_limit)):
        if value is not None:
            training[key] = value
    if args.no_progress:
        training["progress"] = False
    if args.output is not None:
        cfg.setdefault("output", {})
        cfg["output"] = dict(cfg["output"] or {}, dir=str(Path(args.output).resolve()))
    result = train_electron(cfg, resume=not args.restart, base_dir=path.resolve().parent,
                            log=None if args.quiet else print)
    print(json.dumps({"model_file": result["model_path"], "best": result["best"].get("epoch"),
                      "metrics": result["metrics"]}, indent=2, default=str))
    return 0
