"""Force error of HedgeNet-Phonon models by configuration type, absolute and relative to the reference force.

On the 4×4×1 test and valid splits of ``out/phonon_dataset_large`` (never trained on; ``--split`` names other
extxyz files, relative to the repository): per ``config_type``
the number of configurations, force MAE (meV/Å), mean |F| component of the reference (meV/Å), their ratio and
the MAE per Cartesian component.

Usage (~20 s per model on one thread)::

    OMP_NUM_THREADS=1 python data/hedgenet_phonon/experiments/force_error_anatomy/per_type_errors.py \
        --model stage13=out/hedgenet_phonon_stage13/hedgenet_phonon.pt > per_type_errors.txt
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[4]
SPLITS = ("out/phonon_dataset_large/test.xyz", "out/phonon_dataset_large/valid.xyz")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", required=True, metavar="NAME=PATH")
    parser.add_argument("--split", action="append", help=f"extxyz file(s) to evaluate (default: {SPLITS})")
    args = parser.parse_args()
    splits = args.split or SPLITS

    from mlepi_ase.calculators import HedgeNetPhononCalculator
    from mlepi_ase.phonon_dataset import read_phonon_dataset

    configs = [a for split in splits for a in read_phonon_dataset(ROOT / split)]
    for spec in args.model:
        name, path = spec.split("=", 1)
        calc = HedgeNetPhononCalculator(path, dtype="float64")
        errors, refs = defaultdict(list), defaultdict(list)
        for a in configs:
            b = a.copy()
            b.calc = calc
            errors[a.info["config_type"]].append(b.get_forces() - a.arrays["REF_forces"])
            refs[a.info["config_type"]].append(a.arrays["REF_forces"])
        print(f"{name} ({path}): {' + '.join(splits)}")
        print(f"  {'config_type':14s} {'n':>3s} {'MAE':>7s} {'|F_ref|':>8s} {'rel.':>6s}   x / y / z (meV/Å)")
        for kind in sorted(errors):
            e, r = np.concatenate(errors[kind]), np.concatenate(refs[kind])
            mae, size = 1e3 * np.abs(e).mean(), 1e3 * np.abs(r).mean()
            print(f"  {kind:14s} {len(errors[kind]):3d} {mae:7.2f} {size:8.1f} {100 * mae / size:5.2f}%   "
                  + " / ".join(f"{1e3 * np.abs(e[:, k]).mean():.2f}" for k in range(3)))


if __name__ == "__main__":
    main()
