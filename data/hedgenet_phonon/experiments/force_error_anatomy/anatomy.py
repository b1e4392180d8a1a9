r"""Where does HedgeNet-Phonon's held-out force error come from: force constants or anharmonicity?

Every held-out configuration is the relaxed 6×6×1 AB supercell displaced by :math:`u` (thermal sample at 300 K
from the reference force constants).  Taylor-expanding both force fields about that equilibrium,

.. math::

    F^{\rm ref}(u) = -\Phi^{\rm ref} u + A^{\rm ref}(u), \qquad
    F^{\rm model}(u) = F^{\rm model}(0) - \Phi^{\rm model} u + A^{\rm model}(u),

the model's error splits exactly into three parts,

.. math::

    F^{\rm model} - F^{\rm ref} = \underbrace{F^{\rm model}(0)}_{\text{static}}
      + \underbrace{(\Phi^{\rm ref} - \Phi^{\rm model})\,u}_{\text{harmonic}}
      + \underbrace{A^{\rm model}(u) - A^{\rm ref}(u)}_{\text{anharmonic}},

with :math:`\Phi` the finite-difference force constants of the 6×6×1 supercell (phonopy, the dataset's
displacement distance; reference: the dataset's own ``reference_phonons_6x6.yaml``).  The script prints the
MAE of each part, the MAE the model would have with exact force constants (static + anharmonic) and with an
exact anharmonic part (static + harmonic), per Cartesian component, and the sizes of the reference's harmonic
and anharmonic forces.  Part of the "anharmonic" remainder is the finite-difference error of :math:`\Phi`
itself (second order in the displacement distance for ± displacements).

Usage (one thread: ~3 min per model)::

    OMP_NUM_THREADS=1 python data/hedgenet_phonon/experiments/force_error_anatomy/anatomy.py \
        --model stage13=out/hedgenet_phonon_stage13/hedgenet_phonon.pt > anatomy.txt
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
from eval_phonon_heldout import DRAWS  # noqa: E402


def displacements(atoms, equilibrium) -> np.ndarray:
    """Minimum-image displacements (N, 3) in Å of ``atoms`` from ``equilibrium`` (same atom order and cell)."""
    d = atoms.positions - equilibrium.positions
    frac = np.linalg.solve(equilibrium.cell.array.T, d.T).T
    frac[:, :2] -= np.round(frac[:, :2])
    return frac @ equilibrium.cell.array


def hessian_matrix(result) -> np.ndarray:
    """The full force constants of a :class:`~mlepi_ase.phonons.PhononResult` as a (3N, 3N) matrix, eV/Å²,
    so that the harmonic forces of displacements u (N, 3) are ``-(phi @ u.ravel()).reshape(N, 3)``."""
    fc = result.full_force_constants()
    n = fc.shape[0]
    return fc.transpose(0, 2, 1, 3).reshape(3 * n, 3 * n)


def mae(x: np.ndarray) -> float:
    return 1e3 * float(np.mean(np.abs(x)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", required=True, metavar="NAME=PATH")
    parser.add_argument("--json", help="also write the numbers to this JSON file")
    args = parser.parse_args()

    from mlepi_ase.calculators import HedgeNetPhononCalculator
    from mlepi_ase.phonon_dataset import read_phonon_dataset
    from mlepi_ase.phonons import compute_force_constants, load_phonons

    draws = []
    for name, rel in DRAWS.items():
        folder = (ROOT / rel).parent
        ref = load_phonons(folder / "reference_phonons_6x6.yaml")
        distance = json.loads((folder / "dataset.json").read_text())["settings"]["fc_distance"]
        eq = ref.supercell
        configs = read_phonon_dataset(ROOT / rel)
        u = [displacements(a, eq) for a in configs]
        max_u = max(float(np.abs(x).max()) for x in u)
        if max_u > 0.5:
            raise RuntimeError(f"{rel}: atoms do not follow the supercell order (max |u| {max_u:.2f} Å)")
        phi, n = hessian_matrix(ref), len(eq)
        harm_ref = [-(phi @ x.ravel()).reshape(n, 3) for x in u]
        f_ref = [a.arrays["REF_forces"] for a in configs]
        draws.append(dict(name=name, ref=ref, eq=eq, u=u, f_ref=f_ref, harm_ref=harm_ref, distance=distance,
                          configs=configs))
    all_u = np.concatenate([x for d in draws for x in d["u"]])
    all_fref = np.concatenate([x for d in draws for x in d["f_ref"]])
    all_href = np.concatenate([x for d in draws for x in d["harm_ref"]])
    print(f"{sum(len(d['u']) for d in draws)} configurations of {len(draws[0]['eq'])} atoms; "
          f"RMS displacement {np.sqrt(np.mean(all_u ** 2)):.4f} Å (x/y/z "
          + " / ".join(f"{np.sqrt(np.mean(all_u[:, k] ** 2)):.4f}" for k in range(3)) + ")")
    print(f"reference forces: mean |F| component {mae(all_fref):.1f} meV/Å; harmonic part {mae(all_href):.1f}; "
          f"anharmonic part {mae(all_fref - all_href):.1f} (x/y/z "
          + " / ".join(f"{mae((all_fref - all_href)[:, k]):.1f}" for k in range(3)) + ")")

    results = {}
    for spec in args.model:
        label, path = spec.split("=", 1)
        calc = HedgeNetPhononCalculator(path, dtype="float64")
        parts = {"total": [], "static": [], "harmonic": [], "anharmonic": []}
        model_phi: dict[bytes, np.ndarray] = {}  # per distinct unit cell and distance: the draws share one
        for d in draws:
            unit = d["ref"].unitcell
            key = unit.positions.tobytes() + unit.cell.array.tobytes() + np.float64(d["distance"]).tobytes()
            if key not in model_phi:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    model_fc = compute_force_constants(unit, calc, [6, 6, 1], distance=d["distance"], progress=False)
                if not np.allclose(model_fc.supercell.positions, d["eq"].positions):
                    raise RuntimeError("model and reference force-constant supercells differ")
                model_phi[key] = hessian_matrix(model_fc)
            phi, n = model_phi[key], len(d["eq"])
            eq = d["eq"].copy()
            eq.calc = calc
            f0 = eq.get_forces().copy()
            for a, x, fr, hr in zip(d["configs"], d["u"], d["f_ref"], d["harm_ref"]):
                at = a.copy()
                at.calc = calc
                fm = at.get_forces()
                hm = -(phi @ x.ravel()).reshape(n, 3)
                parts["total"].append(fm - fr)
                parts["static"].append(np.broadcast_to(f0, fm.shape))
                parts["harmonic"].append(hm - hr)
                parts["anharmonic"].append((fm - f0 - hm) - (fr - hr))
        p = {k: np.concatenate(v) for k, v in parts.items()}
        rows = {
            "total": p["total"],
            "static F_model(0)": p["static"],
            "harmonic (Φ_ref − Φ_model) u": p["harmonic"],
            "anharmonic A_model − A_ref": p["anharmonic"],
            "if Φ were exact: static + anharmonic": p["static"] + p["anharmonic"],
            "if A were exact: static + harmonic": p["static"] + p["harmonic"],
        }
        print(f"\n{label} ({path}): force error MAE, meV/Å (x / y / z; RMSE)")
        results[label] = {}
        for name, v in rows.items():
            results[label][name] = {"mae": mae(v), "mae_xyz": [mae(v[:, k]) for k in range(3)],
                                    "rmse": 1e3 * float(np.sqrt(np.mean(v ** 2)))}
            r = results[label][name]
            print(f"  {name:40s} {r['mae']:6.2f}  ({' / '.join(f'{x:.2f}' for x in r['mae_xyz'])}; "
                  f"{r['rmse']:.2f})")
        check = p["static"] + p["harmonic"] + p["anharmonic"] - p["total"]
        print(f"  (parts sum to the total within {1e3 * np.abs(check).max():.1e} meV/Å)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
