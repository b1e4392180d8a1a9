r"""The reference force field is not analytic at graphene's equilibrium: REBO's angular spline has a knot at 120°.

REBO's bond order contains :math:`\sum_k G_C(\cos\theta_{jik})`, a piecewise fifth-order polynomial in
:math:`\cos\theta` with knots at :math:`\cos\theta = -1, -2/3, -1/2, -1/3, 1`.  Graphene's bond angles sit
exactly on the knot :math:`-1/2`, where the two pieces share value, first and second derivative but not the
third.  The energy then holds a :math:`|\delta\cos\theta|^3` term: the curvature of the energy grows linearly
with the *magnitude* of a distortion, which no analytic (smooth) function of the positions reproduces, and a
smooth machine-learned force field has to compromise between small and large amplitudes.

Three checks (~1 min on one thread):

1. the spline's derivatives at :math:`\cos\theta = -1/2` on both sides, read from the ``CH.rebo`` file the
   reference calculator uses;
2. an affine in-plane shear :math:`\gamma` of the relaxed 4×4×1 AB supercell: the even part of the energy,
   :math:`[E(\gamma) + E(-\gamma) - 2E(0)]/2\gamma^2`, is constant + :math:`O(\gamma^2)` for an analytic energy
   and constant + :math:`O(|\gamma|)` with a third-derivative jump;
3. forces along a held-out 300 K displacement pattern :math:`s\,u` (the first 6×6×1 configuration): the odd
   part :math:`[F(su) - F(-su)]/2s` per unit :math:`s`, constant + :math:`O(s^2)` for an analytic field and
   constant + :math:`O(|s|)` otherwise.

Usage::

    OMP_NUM_THREADS=1 python data/hedgenet_phonon/experiments/force_error_anatomy/reference_nonanalyticity.py \
        --model stage13=out/hedgenet_phonon_stage13/hedgenet_phonon.pt > reference_nonanalyticity.txt
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from anatomy import displacements  # noqa: E402


def gc_block_lines(lines: list[str]) -> list[int]:
    """Indices into ``lines`` (a ``CH.rebo`` file) of the numbers of its ``# gC1 and gC2`` block, in order: the
    knot count n, the n knots, then (n − 1) pieces × 6 polynomial coefficients of gC1 and the same of gC2."""
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("# gC1"))
    numeric: list[int] = []
    for i in range(start + 1, len(lines)):
        if lines[i].strip().startswith("#"):
            if numeric:
                break  # the next block
            continue
        if lines[i].strip():
            numeric.append(i)
    return numeric


def angular_spline(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Knots (n,) and gC1 polynomial coefficients (n − 1, 6), lowest order first, from a LAMMPS ``CH.rebo``."""
    lines = path.read_text().splitlines()
    numbers = [float(lines[i].split()[0]) for i in gc_block_lines(lines)]
    n = int(numbers[0])
    knots = np.array(numbers[1:1 + n])
    coeffs = np.array(numbers[1 + n:1 + n + 6 * (n - 1)]).reshape(n - 1, 6)
    return knots, coeffs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", default=[], metavar="NAME=PATH")
    args = parser.parse_args()

    from mlepi_ase.calculators import HedgeNetPhononCalculator
    from mlepi_ase.phonon_dataset import read_phonon_dataset
    from mlepi_ase.phonons import load_phonons
    from mlepi_ase.reference import ReferenceForceField
    from mlepi_ase.reference.force_field import lammps_potentials_dir

    knots, coeffs = angular_spline(lammps_potentials_dir() / "CH.rebo")
    k = int(np.argmin(np.abs(knots + 0.5)))
    print(f"1. REBO G_C(cos θ) knots {np.round(knots, 4).tolist()}; derivatives d^n G/d(cos θ)^n at cos θ = "
          f"{knots[k]:.4f} (120°), n = 0..3:")
    for side, piece in (("θ > 120° piece", k - 1), ("θ < 120° piece", k)):
        p = np.polynomial.Polynomial(coeffs[piece])
        print(f"   {side} [{knots[piece]:+.4f}, {knots[piece + 1]:+.4f}]: "
              + "  ".join(f"{float(p.deriv(n)(knots[k]) if n else p(knots[k])):9.4f}" for n in range(4)))

    calcs = {"reference (REBO + KC)": ReferenceForceField()}
    for spec in args.model:
        name, path = spec.split("=", 1)
        calcs[name] = HedgeNetPhononCalculator(path, dtype="float64")

    supercell = load_phonons(ROOT / "out/phonon_dataset_large/reference_phonons_4x4.yaml").supercell
    shears = (0.0025, 0.005, 0.01, 0.02, 0.04)
    print("\n2. affine in-plane shear γ of the relaxed 4×4×1 supercell: [E(γ) + E(−γ) − 2E(0)] / 2γ² "
          "(meV/atom), then its increments between successive γ (×2 per doubling: |γ|³ term; ×4: analytic)")
    for name, calc in calcs.items():
        def energy(g: float) -> float:
            a = supercell.copy()
            strain = np.eye(3)
            strain[0, 1] = g
            a.set_cell(supercell.cell.array @ strain.T, scale_atoms=True)
            a.calc = calc
            return a.get_potential_energy() / len(a)
        e0 = energy(0.0)
        curv = np.array([1e3 * (energy(g) + energy(-g) - 2 * e0) / (2 * g * g) for g in shears])
        inc = np.diff(curv)
        print(f"   {name:24s} " + "  ".join(f"{c:9.2f}" for c in curv)
              + "   increments " + " ".join(f"{d:7.2f}" for d in inc)
              + "   ratios " + " ".join(f"{b / a:4.2f}" for a, b in zip(inc[:-1], inc[1:])))

    ref6 = load_phonons(ROOT / "out/phonon_dataset_large/reference_phonons_6x6.yaml")
    eq = ref6.supercell
    u = displacements(read_phonon_dataset(ROOT / "out/phonon_dataset_large/test_6x6.xyz")[0], eq)
    scales = (0.004, 0.008, 0.016, 0.032, 0.064, 0.128)
    print("\n3. forces along s·u, u = first held-out 6×6×1 300 K displacement (RMS 0.09 Å): mean |F(su) − F(−su)|"
          " / 2s (meV/Å per unit s), then increments (×2 per doubling: |s| term; ×4: analytic)")
    for name, calc in calcs.items():
        def forces(s: float) -> np.ndarray:
            a = eq.copy()
            a.positions = eq.positions + s * u
            a.calc = calc
            return a.get_forces()
        odd = np.array([1e3 * np.abs(forces(s) - forces(-s)).mean() / (2 * s) for s in scales])
        inc = np.diff(odd)
        print(f"   {name:24s} " + "  ".join(f"{c:8.1f}" for c in odd)
              + "   increments " + " ".join(f"{d:6.2f}" for d in inc))


if __name__ == "__main__":
    main()
