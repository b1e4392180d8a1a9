r"""A harmonic-regime training set: ± pairs of tiny Gaussian rattles of the relaxed 4×4×1 AB supercell.

For a pair :math:`\pm u` the reference forces are :math:`F(\pm u) = \mp \Phi u + \tfrac12 \Psi u u + O(u^3)`:
a least-squares fit of forces over both members sees the cubic term :math:`\Psi` only as an even part that a
model's own curvature cannot absorb, so the set pins the force constants :math:`\Phi` (what the phonon bands
and most of the thermal force depend on) to :math:`O(u^2)`.  The relaxed supercell (phonopy atom order, with
``layer``) is that of ``out/phonon_dataset_large/reference_phonons_4x4.yaml``; labels come from the reference
force field, keys as ``mlepi make-dataset phonon`` writes them.

Writes ``train.xyz`` / ``valid.xyz`` / ``test.xyz`` (``--pairs`` / 40 / 40 pairs) into ``--output``.

Usage (~1 min)::

    python data/hedgenet_phonon/experiments/harmonic_fit/make_harmonic_set.py -o out/phonon_dataset_harmonic
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[4]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-o", "--output", required=True)
    parser.add_argument("--amplitude", type=float, default=0.003, help="rattle standard deviation, Å")
    parser.add_argument("--pairs", type=int, default=400, help="± pairs in the training split")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()

    from mlepi_ase.phonon_dataset import label_configurations, write_extxyz
    from mlepi_ase.phonons import load_phonons
    from mlepi_ase.reference import ReferenceForceField

    supercell = load_phonons(ROOT / "out/phonon_dataset_large/reference_phonons_4x4.yaml").supercell
    rng = np.random.default_rng(args.seed)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    calc = ReferenceForceField()
    for split, n in (("train", args.pairs), ("valid", 40), ("test", 40)):
        configs = []
        for _ in range(n):
            u = rng.normal(scale=args.amplitude, size=supercell.positions.shape)
            for sign in (1.0, -1.0):
                a = supercell.copy()
                a.positions += sign * u
                a.info["config_type"] = f"rattle_pm_{args.amplitude:g}"
                configs.append(a)
        write_extxyz(out / f"{split}.xyz", label_configurations(configs, calc, progress=False))
        print(f"{split}: {len(configs)} configurations")


if __name__ == "__main__":
    main()
