r"""Relabel the shipped model's training and held-out sets with REBO made analytic at 120° (an experiment only).

REBO's angular function G_C(cos θ) is a piecewise quintic with a knot at cos θ = −1/2, exactly graphene's bond
angle, where the third derivative jumps (2.35 → 26.68; ``../force_error_anatomy/``).  Here the piece on
[−1/2, −1/3] (angles below 120°) is replaced by the piece on [−2/3, −1/2] continued across the knot, in both
gC1 and gC2 of a copy of ``CH.rebo``: G_C becomes one polynomial around 120°, so the energy is analytic at
the equilibrium.  This changes the physics for angles below 120° (smaller G there): it is not a better
reference, only an analytic one, to test whether the knot is what limits a smooth network's accuracy.

Writes ``<output>/potentials/{CH.rebo, CH_taper.KC}`` and, for every input file (or those named by ``--only``),
``<output>/<dataset>/<file>`` (and the dataset's ``unitcell.xyz``)
with the same configurations (positions, layers, ``config_type``) and the new ``REF_energy`` /
``REF_forces`` / ``REF_stress``; prints the mean |ΔF| between the two references per file.

Usage (~10 min on one thread)::

    python data/hedgenet_phonon/experiments/smooth_knot/make_smooth_knot_sets.py -o out/smooth_knot
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "force_error_anatomy"))
from reference_nonanalyticity import gc_block_lines  # noqa: E402
FILES = (
    "out/phonon_dataset_large/train.xyz", "out/phonon_dataset_large/valid.xyz", "out/phonon_dataset_large/test.xyz",
    "out/phonon_dataset_large/test_6x6.xyz", "out/phonon_dataset_slides/train.xyz",
    "out/phonon_dataset_slides/valid.xyz", "out/phonon_dataset_slides/test.xyz",
    "out/phonon_dataset_thermal_extra/train.xyz",
    "out/phonon_dataset_thermal_extra/test_6x6.xyz", "out/phonon_dataset_thermal_extra2/train.xyz",
    "out/phonon_dataset_thermal_extra2/test_6x6.xyz",
)


def smooth_knot_rebo(text: str) -> str:
    """``CH.rebo`` text with the gC1 / gC2 piece right of cos θ = −1/2 replaced by the piece left of it."""
    lines = text.splitlines()
    numeric = gc_block_lines(lines)
    n = int(float(lines[numeric[0]].split()[0]))
    knots = [float(lines[i].split()[0]) for i in numeric[1:1 + n]]
    k = int(np.argmin(np.abs(np.array(knots) + 0.5)))  # knot index of cos θ = −1/2
    if abs(knots[k] + 0.5) > 1e-9:
        raise ValueError(f"no knot at cos θ = -1/2 in {knots}")
    for g in range(2):  # gC1, gC2: (n − 1) pieces of 6 coefficients each
        block = numeric[1 + n + 6 * (n - 1) * g:1 + n + 6 * (n - 1) * (g + 1)]
        left, right = block[6 * (k - 1):6 * k], block[6 * k:6 * (k + 1)]
        for i_left, i_right in zip(left, right, strict=True):
            lines[i_right] = lines[i_left]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-o", "--output", required=True)
    parser.add_argument("--only", nargs="+", metavar="FILE", help=f"relabel only these of {FILES}")
    args = parser.parse_args()
    unknown = set(args.only or ()) - set(FILES)
    if unknown:
        parser.error(f"not among the files this script relabels: {sorted(unknown)}")

    from mlepi_ase.phonon_dataset import label_configurations, read_phonon_dataset, write_extxyz
    from mlepi_ase.reference import ReferenceForceField
    from mlepi_ase.reference.force_field import lammps_potentials_dir

    out = Path(args.output)
    pots = out / "potentials"
    pots.mkdir(parents=True, exist_ok=True)
    src = lammps_potentials_dir()
    shutil.copy(src / "CH_taper.KC", pots / "CH_taper.KC")
    (pots / "CH.rebo").write_text(smooth_knot_rebo((src / "CH.rebo").read_text()))
    calc = ReferenceForceField(potentials_dir=pots)
    for rel in args.only or FILES:
        configs = read_phonon_dataset(ROOT / rel)
        relabelled = label_configurations(configs, calc, progress=False)
        dest = out / Path(rel).parent.name / Path(rel).name
        dest.parent.mkdir(parents=True, exist_ok=True)
        write_extxyz(dest, relabelled)
        if (ROOT / rel).with_name("unitcell.xyz").is_file():  # unlabelled; for phonons against this reference
            shutil.copy((ROOT / rel).with_name("unitcell.xyz"), dest.with_name("unitcell.xyz"))
        diff = np.concatenate([b.arrays["REF_forces"] - a.arrays["REF_forces"] for a, b in zip(configs, relabelled)])
        size = np.concatenate([a.arrays["REF_forces"] for a in configs])
        print(f"{rel}: {len(configs)} configurations, mean |ΔF| {1e3 * np.abs(diff).mean():.1f} meV/Å "
              f"(mean |F| {1e3 * np.abs(size).mean():.1f})", flush=True)


if __name__ == "__main__":
    main()
