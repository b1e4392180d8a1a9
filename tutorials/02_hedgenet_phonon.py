"""Tutorial 2 — HedgeNet-Phonon: learn the force field of AB bilayer graphene and compare its phonons.

Walk-through
------------
1. Make a small phonon training set (``mlepi_ase.phonon_dataset.make_phonon_dataset``; ``mlepi
   make-dataset phonon`` from the command line): the AB bilayer relaxed with the embedded reference
   force field (REBO + Kolmogorov–Crespi, LAMMPS), displaced supercells — harmonic thermal samples,
   small and large Gaussian rattles, random layer slides and interlayer distances — labelled with the
   reference energies, forces and stresses, split into train/valid files (extended XYZ).
2. Train a small HedgeNet-Phonon (``mlepi_ase.train.phonon.train_phonon``; ``mlepi train-phonon
   config.yaml`` from the command line) for a fixed wall-clock budget (``max_time_minutes``):
   MACE-style equivariant message passing with one edge network per relation (intra-/inter-layer).
   Forces are fitted with relative weights so the small rattles, which fix the force constants, count.
3. Phonons with the trained model (``HedgeNetPhononCalculator`` in float64): the unit cell relaxed at
   fixed cell, then phonopy finite-difference force constants of an n×n supercell
   (``mlepi_ase.phonons.relax_positions`` and ``compute_force_constants``, exactly as tutorial 1 does
   with the reference force field), bands along Γ–M–K–Γ.
4. The same for the reference force field.
5. Both band structures overlaid in one picture (``mlepi_ase.plotting.plot_phonon_bands``), the
   Γ-point frequencies of both side by side (labelled shear / breathing / ZO / G) and the RMS
   difference of the bands (frequencies sorted at every q).  A few minutes of training on a few dozen
   configurations give a rough model; the shipped ``data/hedgenet_phonon/hedgenet_phonon.pt`` was
   trained for about 40 minutes on a much larger dataset (``data/hedgenet_phonon/README.md``) — its
   phonons: ``mlepi phonons ab-bilayer --calculator hedgenet``.

Run::

    python tutorials/02_hedgenet_phonon.py            # 4×4 training cells, ~4 min training, 6×6 phonons
    python tutorials/02_hedgenet_phonon.py --quick    # 3×3 cells, ~20 s training (CI)

(``MLEPI_TUTORIAL_QUICK=1`` in the environment also selects the quick setting.)  Outputs go to
``--output`` (default ``tutorial_output/02_hedgenet_phonon``): ``data/`` (the dataset),
``run/hedgenet_phonon.pt`` (+ ``train.log``, ``history.json``, ``metrics.json``, ``checkpoint.pt``),
``phonopy_params_model.yaml``, ``phonopy_params_reference.yaml``, ``phonon_bands_vs_reference.png``
and ``summary.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from pathlib import Path


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny setting for CI (also MLEPI_TUTORIAL_QUICK=1)")
    p.add_argument("--output", "-o", default="tutorial_output/02_hedgenet_phonon", help="output folder")
    p.add_argument("--minutes", type=float, default=None,
                   help="training wall-clock budget in minutes (default 4, quick 0.33)")
    p.add_argument("--seed", type=int, default=3, help="random seed")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    args = p.parse_args()
    args.quick = args.quick or os.environ.get("MLEPI_TUTORIAL_QUICK", "") not in ("", "0")
    return args


def phonons_with(calc, unit, n_super: int, npoints: int):
    """Relax ``unit`` at fixed cell with ``calc``, force constants of the n×n×1 supercell, bands."""
    from mlepi_ase.phonons import compute_force_constants, relax_positions

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        relaxed = relax_positions(unit, calc, fmax=1e-4, steps=300)
        result = compute_force_constants(relaxed, calc, [n_super, n_super, 1], progress=False)
        bands = result.band_structure(npoints=npoints)
    for w in caught:
        print(f"   warning: {w.message}")
    return relaxed, result, bands


def main() -> int:
    args = parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from ase.io import read

    from mlepi_ase.calculators import HedgeNetPhononCalculator
    from mlepi_ase.phonon_dataset import make_phonon_dataset
    from mlepi_ase.plotting import plot_phonon_bands
    from mlepi_ase.reference import ReferenceForceField
    from mlepi_ase.structures import interlayer_distance
    from mlepi_ase.train.phonon import train_phonon

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    quick = args.quick
    minutes = args.minutes if args.minutes is not None else (0.33 if quick else 4.0)
    n_train = 3 if quick else 4  # training supercell n×n×1
    n_phon = 3 if quick else 6  # phonon supercell n×n×1
    npoints = 21 if quick else 51

    # 1. dataset ------------------------------------------------------------------------------
    ref_calc = ReferenceForceField()
    data_settings = {
        "train_supercell": [n_train, n_train], "test_supercell": [n_train, n_train] if quick else [6, 6],
        "temperatures": [300.0] if quick else [100.0, 300.0, 600.0],
        "n_thermal": [4] if quick else [6, 10, 6],
        "rattle_amplitudes": [0.005, 0.03] if quick else [0.003, 0.01, 0.03, 0.06],
        "n_rattle": [4, 2] if quick else [10, 8, 6, 4],
        "n_stacking": 3 if quick else 10, "n_slide": 2 if quick else 8,
        "valid_fraction": 0.2 if quick else 0.1, "test_fraction": 0.0 if quick else 0.1,
        "n_test_thermal": 2 if quick else 4,
    }
    print(f"1. making the dataset ({n_train}x{n_train} supercells, reference REBO + KC) ...", flush=True)
    ds = make_phonon_dataset(out / "data", data_settings, calculator=ref_calc, rng=args.seed, progress=False,
                             log=lambda msg: print(f"   {msg}", flush=True))
    print(f"   counts: {ds['counts']}")

    # 2. training -----------------------------------------------------------------------------
    config = {
        "train_file": str((out / "data" / ds["files"]["train"]).resolve()),
        "valid_file": str((out / "data" / ds["files"]["valid"]).resolve()),
        "test_files": {k: str((out / "data" / v).resolve()) for k, v in ds["files"].items()
                       if k.startswith("test")},
        "output_dir": str((out / "run").resolve()),
        "model": {"cutoffs": {"intra": 3.0 if quick else 4.0, "inter": 4.5 if quick else 6.0},
                  "num_channels": 4 if quick else 8, "max_ell": 1 if quick else 2, "max_L": 1,
                  "correlation": 2, "num_interactions": 1 if quick else 2,
                  "radial_mlp": [8] if quick else [16, 16], "readout_mlp": 4 if quick else 8,
                  "num_bessel": 6},
        "dtype": "float32", "seed": args.seed, "num_threads": args.threads,
        "batch_size": 2, "max_epochs": 1000, "max_time_minutes": minutes, "lr": 0.01,
        "force_weighting": "relative", "scheduler": "plateau", "patience": 1000, "progress": False,
    }
    print(f"2. training HedgeNet-Phonon for at most {minutes:g} min ...", flush=True)
    trained = train_phonon(config, resume=False, log=None)
    hist = trained["history"]
    valid = trained["metrics"].get("valid", {})
    print(f"   {trained['epochs']} epochs ({trained['stopped']}), best epoch {trained['best_epoch']}: "
          f"valid force MAE {hist[0]['valid_forces_mae_meV_per_A']:.1f} → "
          f"{valid.get('forces_mae_meV_per_A', float('nan')):.1f} meV/Å, "
          f"energy RMSE {valid.get('energy_rmse_meV_per_atom', float('nan')):.2f} meV/atom")

    # 3./4. phonons with the model and with the reference ------------------------------------------
    unit = read(out / "data" / "unitcell.xyz")
    model_calc = HedgeNetPhononCalculator(trained["model_file"], dtype="float64")
    print(f"3. phonons with the trained model ({n_phon}x{n_phon} supercell) ...", flush=True)
    model_relaxed, model_ph, model_bands = phonons_with(model_calc, unit, n_phon, npoints)
    model_ph.save(out / "phonopy_params_model.yaml")
    print(f"4. phonons with the reference force field ({n_phon}x{n_phon} supercell) ...", flush=True)
    ref_relaxed, ref_ph, ref_bands = phonons_with(ref_calc, unit, n_phon, npoints)
    ref_ph.save(out / "phonopy_params_reference.yaml")

    # 5. comparison -------------------------------------------------------------------------------
    band_err = model_bands.differences(ref_bands)
    rms = band_err["rms_THz"]
    ref_gamma = ref_ph.gamma_mode_table()
    model_gamma = model_ph.gamma_mode_table()
    print("5. Γ-point frequencies (THz; labels of the reference modes):")
    print(f"   {'mode':>10s} {'reference':>10s} {'model':>10s}")
    for r, m in zip(ref_gamma, model_gamma):
        print(f"   {r['label']:>10s} {r['frequency_THz']:10.3f} {m['frequency_THz']:10.3f}")
    print(f"   interlayer distance: reference {interlayer_distance(ref_relaxed):.4f} Å, "
          f"model {interlayer_distance(model_relaxed):.4f} Å")
    print(f"   band RMS difference over Γ–M–K–Γ: {rms:.3f} THz (max {band_err['max_abs_THz']:.3f} THz)")
    png = out / "phonon_bands_vs_reference.png"
    plot_phonon_bands([ref_bands, model_bands],
                      ["reference (REBO + KC)", f"tutorial HedgeNet-Phonon (RMS {rms:.2f} THz)"], png,
                      title=f"AB bilayer graphene, {n_phon}x{n_phon} supercell force constants; model trained "
                            f"{minutes:g} min on {n_train}x{n_train} cells")

    summary = {
        "quick": bool(quick),
        "dataset_counts": ds["counts"],
        "train_supercell": [n_train, n_train, 1],
        "phonon_supercell": [n_phon, n_phon, 1],
        "training": {"epochs": trained["epochs"], "stopped": trained["stopped"], "best_epoch": trained["best_epoch"],
                     "max_time_minutes": minutes, "metrics": trained["metrics"]},
        "band_path": ref_bands.labels,
        "band_distances": ref_bands.distances.tolist(),
        "reference_bands_THz": ref_bands.frequencies.tolist(),
        "model_bands_THz": model_bands.frequencies.tolist(),
        "band_rms_difference_THz": rms,
        "band_max_abs_difference_THz": band_err["max_abs_THz"],
        "reference_gamma_modes": ref_gamma,
        "model_gamma_modes": model_gamma,
        "reference_interlayer_distance_A": interlayer_distance(ref_relaxed),
        "model_interlayer_distance_A": interlayer_distance(model_relaxed),
        "wall_time_s": round(time.perf_counter() - t_start, 1),
    }
    tmp = out / "summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2, default=float))
    os.replace(tmp, out / "summary.json")
    print(f"done in {summary['wall_time_s']:.0f} s; wrote {png}, {out / 'summary.json'} and the model in {out / 'run'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
