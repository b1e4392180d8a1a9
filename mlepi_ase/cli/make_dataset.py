"""``mlepi make-dataset KIND``: generate a labelled reference dataset.

Kinds (each maps to one function in :data:`KINDS`):

* ``phonon`` — displaced supercells of AB bilayer graphene (thermal samples from the reference force
  constants at several temperatures, rattles, layer slides) labelled by the REBO + Kolmogorov–Crespi
  reference force field, written as extended XYZ with MACE's keys and split into train/valid/test, plus
  a held-out larger-supercell test set (:func:`mlepi_ase.phonon_dataset.make_phonon_dataset`).
* ``electron`` — thermal, rattled, slid and compressed/stretched AB bilayer supercells (4×4×1 train,
  6×6×1 held out) labelled by the sp3 Slater–Koster reference Hamiltonian, one HDF5 file
  (:func:`mlepi_ase.models.electron_data.make_electron_dataset`).

Settings come from an optional YAML file (``--settings``) whose keys override the kind's defaults.

Example::

    mlepi make-dataset phonon -o out/phonon_dataset --seed 0
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Callable


def _load_settings(path: str | None) -> dict[str, Any]:
    if path is None:
        return {}
    import yaml

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"settings file {path!r} does not exist")
    with open(p) as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, dict):
        raise ValueError(f"settings file {path!r} must hold a YAML mapping")
    return data


def make_phonon(args: argparse.Namespace) -> int:
    """``phonon`` kind: :func:`mlepi_ase.phonon_dataset.make_phonon_dataset`."""
    from ..phonon_dataset import make_phonon_dataset

    summary = make_phonon_dataset(args.output, _load_settings(args.settings), rng=args.seed,
                                  progress=not args.no_progress)
    print(json.dumps({"files": summary["files"], "counts": summary["counts"]}, indent=2))
    return 0


def make_electron(args: argparse.Namespace) -> int:
    """``electron`` kind: :func:`mlepi_ase.models.electron_data.make_electron_dataset`."""
    from ..models.electron_data import make_electron_dataset

    summary = make_electron_dataset(args.output, _load_settings(args.settings), rng=args.seed,
                                    progress=not args.no_progress)
    print(json.dumps({"files": summary["files"], "counts": summary["counts"]}, indent=2, default=str))
    return 0


KINDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "phonon": make_phonon,
    "electron": make_electron,
}
"""Dataset kind → function taking the parsed arguments and returning the exit status."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "make-dataset",
        help="generate a labelled reference dataset (kinds: " + ", ".join(KINDS) + ")",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("kind", choices=sorted(KINDS), help="which dataset to make")
    p.add_argument("--output", "-o", required=True, help="output folder")
    p.add_argument("--settings", default=None, help="YAML file overriding the kind's default settings")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return KINDS[args.kind](args)
