"""``mlepi train-phonon CONFIG.yaml``: train HedgeNet-Phonon (:func:`mlepi_ase.train.phonon.train_phonon`).

The YAML file holds the training settings (:data:`mlepi_ase.train.phonon.DEFAULT_TRAIN_CONFIG`: data
files, model hyper-parameters, dtype, device, optimiser, EMA, schedule, early stopping); paths are
relative to the YAML file.  ``train_file`` may be a list of parts that repeat or select configuration
types without writing a new file (:func:`mlepi_ase.train.phonon.load_train_config`).  A run that finds ``checkpoint.pt`` in its output folder resumes from it
unless ``--restart`` is given.  ``--export-last FILE`` trains nothing: it writes the (EMA) weights of the
checkpoint's last epoch as a model file, next to the lowest-validation-loss model the trainer keeps.

Example::

    mlepi train-phonon data/hedgenet_phonon/train_config_stage1.yaml
    mlepi train-phonon data/hedgenet_phonon/cpu_1h/train_config.yaml   # from scratch, ~1 h on 2 CPU cores
"""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train-phonon",
        help="train a HedgeNet-Phonon force model from an extended XYZ dataset",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", help="training configuration (YAML)")
    p.add_argument("--restart", action="store_true", help="ignore an existing checkpoint and start afresh")
    p.add_argument("--device", default=None, help="override the config's device (cpu, cuda, cuda:1, ...)")
    p.add_argument("--dtype", default=None, choices=["float32", "float64"], help="override the config's dtype")
    p.add_argument("--threads", default=None, type=int, metavar="N",
                   help="override the config's num_threads (CPU threads; a resumed run may change it)")
    p.add_argument("--export-last", default=None, metavar="FILE",
                   help="write the last checkpointed epoch's EMA weights to FILE and exit (no training)")
    p.add_argument("--quiet", action="store_true", help="do not echo log lines to the terminal")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..train.phonon import export_checkpoint_model, load_train_config, train_phonon

    cfg = load_train_config(args.config)
    if args.export_last is not None:
        ckpt = Path(cfg["output_dir"]) / "checkpoint.pt"
        if not ckpt.is_file():
            raise FileNotFoundError(f"no training checkpoint at {str(ckpt)!r}")
        print(export_checkpoint_model(ckpt, args.export_last))
        return 0
    if args.device is not None:
        cfg["device"] = args.device
    if args.dtype is not None:
        cfg["dtype"] = args.dtype
    if args.threads is not None:
        cfg["num_threads"] = args.threads  # checked with the rest of the config by train_phonon
    result = train_phonon(cfg, resume=not args.restart, log=None if args.quiet else print)
    print(json.dumps({"model_file": result["model_file"], "stopped": result["stopped"],
                      "best_epoch": result["best_epoch"], "metrics": result["metrics"]}, indent=2))
    return 0
