r"""Finite-displacement phonons of a reference that is not analytic at its equilibrium depend on the step.

With central differences at step :math:`h`, phonopy's force constant is
:math:`[F(+h) - F(-h)]/2h`.  For an analytic energy this is the Hessian + :math:`O(h^2)`.  REBO's angular
spline has a third-derivative jump at 120° (``../force_error_anatomy/``), so its energy holds a
:math:`c\,|\delta|^3` term whose force :math:`3c\,\delta|\delta|` is odd in :math:`\delta`: it survives the
central difference as :math:`3c\,|h|`, a bias *linear* in the step.  The analytic variant of this folder
(``make_smooth_knot_sets.py``: the piece below 120° continued from above) shares value, first and second
derivatives with REBO at 120°, hence the same :math:`h \to 0` Hessian and the same harmonic phonons.

This script computes the 6×6×1 Γ modes and Γ–M–K–Γ bands of AB bilayer graphene with phonopy for several
steps, for REBO + KC, for the analytic variant + KC and for HedgeNet-Phonon models, and prints each one's
Γ modes and band RMS difference from the analytic variant at the smallest step (the common harmonic limit).

Usage (~35 s on one thread with two models; needs ``out/smooth_knot/potentials`` from ``make_smooth_knot_sets.py``)::

    OMP_NUM_THREADS=1 python data/hedgenet_phonon/experiments/smooth_knot/reference_bands_vs_displacement.py \
        --model stage13=out/hedgenet_phonon_stage13/hedgenet_phonon.pt --json out/reference_bands_vs_displacement.json
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT / "benchmarks"))
from eval_phonon_model import MODE_LABELS, gamma_modes  # noqa: E402

STEPS = (0.04, 0.02, 0.01, 0.005, 0.0025)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", default=[], metavar="NAME=PATH")
    parser.add_argument("--potentials", default=str(ROOT / "out" / "smooth_knot" / "potentials"),
                        help="folder of the analytic variant's CH.rebo + CH_taper.KC")
    parser.add_argument("--unitcell", default=str(ROOT / "out" / "phonon_dataset_large" / "unitcell.xyz"))
    parser.add_argument("--steps", type=float, nargs="+", default=list(STEPS), help="displacement lengths (Å)")
    parser.add_argument("--json", help="also write the numbers to this JSON file")
    args = parser.parse_args()

    from ase.io import read

    from mlepi_ase.calculators import HedgeNetPhononCalculator
    from mlepi_ase.phonons import compute_force_constants, relax_positions
    from mlepi_ase.reference import ReferenceForceField

    unit = read(args.unitcell)
    calcs = {"REBO": ReferenceForceField(), "analytic variant": ReferenceForceField(potentials_dir=args.potentials)}
    for spec in args.model:
        name, _, path = spec.partition("=")
        calcs[name] = HedgeNetPhononCalculator(path, dtype="float64")
    steps = sorted(args.steps, reverse=True)
    results: dict[str, dict[float, dict]] = {}
    for name, calc in calcs.items():
        results[name] = {}
        relaxed = relax_positions(unit, calc, fmax=1e-5)  # as eval_phonon_model.py; once per calculator
        for h in steps:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = compute_force_constants(relaxed, calc, (6, 6, 1), distance=h, progress=False)
                bands = res.band_structure(npoints=51)
            results[name][h] = {"gamma": gamma_modes(res), "bands": bands}
    limit = results["analytic variant"][steps[-1]]["bands"]
    table = {}
    print(f"Γ modes (THz, mean of each label) and band RMS vs the analytic variant at h = {steps[-1]} Å")
    print(f"{'calculator':>18} {'h (Å)':>7} " + " ".join(f"{m:>9}" for m in MODE_LABELS) + "  band RMS  band max")
    for name, by_step in results.items():
        table[name] = {}
        for h, r in by_step.items():
            diff = r["bands"].differences(limit)
            row = {m: float(np.mean(r["gamma"][m])) for m in MODE_LABELS}
            row.update(band_rms_vs_limit_THz=diff["rms_THz"], band_max_vs_limit_THz=diff["max_abs_THz"])
            table[name][str(h)] = row
            print(f"{name:>18} {h:7.4f} " + " ".join(f"{row[m]:9.4f}" for m in MODE_LABELS)
                  + f"  {diff['rms_THz']:8.4f}  {diff['max_abs_THz']:8.4f}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"steps_A": steps, "limit": f"analytic variant, h = {steps[-1]}",
                                               "results": table}, indent=1))


if __name__ == "__main__":
    main()
