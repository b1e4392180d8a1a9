"""Tutorial 3 — HedgeNet-Electron: learn a tight-binding Hamiltonian and predict bands of a displaced bilayer.

Walk-through
------------
1. Make a small Hamiltonian dataset (``mlepi_ase.models.electron_data.make_electron_dataset``): displaced
   AB bilayer supercells — thermal-size Gaussian rattles, random layer slides and interlayer distances —
   labelled by the embedded sp3 Slater–Koster reference (``SlaterKosterSP3``), stored in one HDF5 file.
   (``mlepi make-dataset electron`` does the same from the command line, with harmonic thermal samples.)
2. Train a small HedgeNet-Electron (``mlepi_ase.train.electron.train_electron``; ``mlepi train-electron
   config.yaml`` from the command line): E(3)-equivariant message passing on the heterogeneous graph,
   one edge network per relation (intra-/inter-layer), blocks from Clebsch–Gordan products, exactly
   Hermitian.  The block errors are reported per relation in meV.
3. Predict H(R) for a new, thermally displaced bilayer with ``HedgeNetElectronCalculator`` and check
   its symmetry (Hermiticity of H(R)).
4. Diagonalise H(k) along Γ–M–K–Γ of the supercell for model and reference, and plot both
   (``bands.png``); if the shipped model ``data/hedgenet_electron/model.pt`` is present its bands are
   drawn too.

Run::

    python tutorials/03_hedgenet_electron.py            # 2×2 cells, ~60 structures, a few minutes
    python tutorials/03_hedgenet_electron.py --quick    # tiny setting for CI (under a minute)

(``MLEPI_TUTORIAL_QUICK=1`` in the environment also selects the quick setting.)  Outputs go to
``--output`` (default ``tutorial_output/03_hedgenet_electron``): ``data/electron_dataset.h5``,
``run/model.pt`` (+ log, history, checkpoint), ``bands.png`` and ``summary.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny setting for CI (also MLEPI_TUTORIAL_QUICK=1)")
    p.add_argument("--output", "-o", default="tutorial_output/03_hedgenet_electron", help="output folder")
    p.add_argument("--seed", type=int, default=7, help="random seed")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    args = p.parse_args()
    args.quick = args.quick or os.environ.get("MLEPI_TUTORIAL_QUICK", "") not in ("", "0")
    return args


def main() -> int:
    args = parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from mlepi_ase.calculators.electron import HedgeNetElectronCalculator
    from mlepi_ase.models.electron_data import make_electron_dataset
    from mlepi_ase.reference.slater_koster import SlaterKosterSP3
    from mlepi_ase.structures import bilayer_graphene
    from mlepi_ase.tb import special_path
    from mlepi_ase.train.electron import band_energy_errors, train_electron

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    # 1. dataset ------------------------------------------------------------------------------
    data_settings = {
        "thermal_method": "rattle",  # Gaussian thermal-size rattles: no LAMMPS needed here
        "train_supercell": [2, 2], "test_supercell": [3, 3],
        "temperatures": [300.0], "n_thermal": [6 if args.quick else 24],
        "rattle_amplitudes": [0.05], "n_rattle": [2 if args.quick else 8],
        "n_stacking": 4 if args.quick else 24, "interlayer_range": [3.2, 3.6],
        "n_test": 1 if args.quick else 2, "valid_fraction": 0.15,
    }
    summary_data = make_electron_dataset(out / "data", data_settings, rng=args.seed, progress=False, log=None)
    print(f"1. dataset: {summary_data['counts']}")

    # 2. training -----------------------------------------------------------------------------
    config = {
        "data": {"dataset": str(out / "data" / "electron_dataset.h5"), "test_splits": ["test_3x3"]},
        "model": {"basis": {"C": [0, 1]}, "cutoffs": {"intra": 4.0 if args.quick else 5.0, "inter": 4.5 if args.quick else 5.5},
                  "message_cutoffs": {"intra": 3.0, "inter": 4.0},
                  "num_channels": 4 if args.quick else 8, "head_channels": 2 if args.quick else 4,
                  "num_interactions": 1 if args.quick else 2, "num_radial": 8, "radial_hidden": 16 if args.quick else 32},
        "training": {"epochs": 12 if args.quick else 40, "batch_size": 1, "lr": 0.01, "dtype": "float32",
                     "num_threads": args.threads, "progress": False, "seed": args.seed},
        "evaluation": {"max_band_structures": 1},
        "output": {"dir": str(out / "run")},
    }
    result = train_electron(config, resume=False, log=None)
    hist = result["history"]
    test = result["metrics"]["test_3x3"]
    print(f"2. trained {len(hist)} epochs: train MAE {hist[0]['train']['mae_meV']:.1f} → "
          f"{hist[-1]['train']['mae_meV']:.1f} meV; held-out 3×3 block MAE {test['mae_meV']:.2f} meV "
          f"(on-site {test['mae_onsite_meV']:.2f}, intra {test['mae_intra_meV']:.2f}, inter {test['mae_inter_meV']:.2f})")

    # 3. predict a displaced bilayer -------------------------------------------------------------
    gen = np.random.default_rng(args.seed + 1)
    atoms = bilayer_graphene("AB", size=(3, 3))
    atoms.positions += gen.normal(scale=0.07, size=atoms.positions.shape)  # ~300 K amplitude
    calc = HedgeNetElectronCalculator(result["model_path"], dtype="float64")
    h_model = calc.get_hamiltonian(atoms)
    h_ref = SlaterKosterSP3().get_hamiltonian(atoms)
    print(f"3. predicted H: {h_model.n_blocks} blocks, {h_model.n_orbitals} orbitals, "
          f"Hermiticity error {h_model.hermiticity_error():.1e} eV")

    # 4. bands ------------------------------------------------------------------------------------
    path = special_path(atoms, "GMKG", 40 if args.quick else 90)
    x, xt, labels = path.get_linear_kpoint_axis()
    e_ref = h_ref.eigh(path.kpts)
    e_mod = h_model.eigh(path.kpts)
    err = band_energy_errors(h_ref, h_model, window=1.0)
    curves = {"reference (SlaterKosterSP3)": e_ref, "tutorial model": e_mod}
    shipped = ROOT / "data" / "hedgenet_electron" / "model.pt"
    shipped_err = None
    if shipped.exists():
        h_ship = HedgeNetElectronCalculator(shipped, dtype="float64").get_hamiltonian(atoms)
        curves["shipped model"] = h_ship.eigh(path.kpts)
        shipped_err = band_energy_errors(h_ref, h_ship, window=1.0)
    ef = err["fermi_level"]
    print(f"4. band errors within ±1 eV of E_F at Γ, M, K: tutorial model max {err['max_abs_meV']:.1f} meV"
          + (f", shipped model max {shipped_err['max_abs_meV']:.2f} meV" if shipped_err else ""))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    styles = {"reference (SlaterKosterSP3)": dict(color="k", lw=1.6),
              "tutorial model": dict(color="C0", lw=1.0, ls="--"), "shipped model": dict(color="C3", lw=1.0, ls=":")}
    for name, e in curves.items():
        for n in range(e.shape[1]):
            ax.plot(x, e[:, n] - ef, label=name if n == 0 else None, **styles[name])
    ax.set_xticks(xt, [lab.replace("G", "Γ") for lab in labels])
    for t in xt:
        ax.axvline(t, color="0.8", lw=0.6)
    ax.set_xlim(x[0], x[-1])
    ax.set_ylim(-2.0, 2.0)
    ax.set_ylabel("E − E_F (eV)")
    ax.set_title("Displaced 3×3 AB bilayer (σ = 0.07 Å): model vs reference", fontsize=9)
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(out / "bands.png", dpi=120)

    summary = {
        "quick": bool(args.quick), "dataset_counts": summary_data["counts"],
        "epochs": len(hist), "train_mae_first_meV": hist[0]["train"]["mae_meV"],
        "train_mae_last_meV": hist[-1]["train"]["mae_meV"], "test_3x3": {k: v for k, v in test.items() if k != "band_errors"},
        "hermiticity_error_eV": h_model.hermiticity_error(), "band_errors": err,
        "shipped_band_errors": shipped_err, "wall_time_s": round(time.perf_counter() - t_start, 1),
    }
    with open(out / "summary.json", "w") as fh:
        json.dump(summary, fh, indent=2, default=float)
    print(f"done in {summary['wall_time_s']:.0f} s; outputs in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
