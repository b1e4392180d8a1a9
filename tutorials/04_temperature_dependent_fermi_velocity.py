"""Tutorial 4 — temperature-dependent Fermi velocity of AB bilayer graphene (the paper's Fig. 4e/f).

Walk-through
------------
1. The same pipeline (:func:`mlepi_ase.pipeline.run_pipeline`) runs twice with the same seed:

   * **ML**: HedgeNet-Phonon force constants → thermal configurations → HedgeNet-Electron H;
   * **reference**: REBO + Kolmogorov–Crespi force constants → configurations → sp3 Slater–Koster H.

   Both runs draw with the same seed in the mass-weighted Cartesian basis (``--draw-basis cartesian``,
   the default here): the same Gaussian vector is projected on each run's own phonon modes, so the
   configurations of the two runs differ only as much as the thermal covariances of the two force
   models do (a few per cent), not through the order or basis of near-degenerate modes.
   ``--draw-basis modes`` gives mode ν the ν-th deviate instead (the pipeline's default, and this
   tutorial's before the option existed).
2. For every temperature, the Monte Carlo average of the fitted Fermi velocity
   v_F(T) = (1/N) Σ v_F(x_i) with its standard error (antithetic pairs averaged first).
3. The difference ML − reference from the per-configuration differences (common random numbers,
   :func:`mlepi_ase.pipeline.compare_runs`, ``mlepi compare``): its standard error is the spread of the differences,
   far smaller than √(SE_ML² + SE_ref²) when the two pipelines' per-configuration v_F correlate.
4. Figures: v_F(T) of both pipelines with error bars against the no-EPI values (Fig. 4f), the running
   mean / standard error vs N at the highest temperature with a 1/√N line (Fig. 4e), and the paired
   difference vs T (``paired_difference.png``).  JSON with all numbers, the agreement test
   |ML − ref| ≤ 2 √(SE_ML² + SE_ref²) per temperature (``agreement``) and the paired difference with
   its standard error, the per-configuration correlation and each pipeline's phonon renormalisation
   v_F(T) − v_F(no EPI) (``paired``).  ``--split-error`` adds a third run, HedgeNet-Phonon with the sp3
   reference Hamiltonian, and splits the difference into the phonon model's part (that run − reference)
   and the electron model's part (ML − that run) (``paired_split``).

Run::

    python tutorials/04_temperature_dependent_fermi_velocity.py            # 6×6, T = 0…500 K
    python tutorials/04_temperature_dependent_fermi_velocity.py --quick    # tiny (CI): 3×3, 2 T

The ML run needs the shipped models ``data/hedgenet_phonon/hedgenet_phonon.pt`` and
``data/hedgenet_electron/model.pt`` (or ``--phonon-model``/``--electron-model``); ``--reference-only``
skips it.  Both runs resume when restarted with the same output folder.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from mlepi_ase.pipeline import DEFAULT_ELECTRON_MODEL, DEFAULT_PHONON_MODEL, compare_runs, run_pipeline


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny setting for CI (also MLEPI_TUTORIAL_QUICK=1)")
    p.add_argument("--output", "-o", default="tutorial_output/04_fermi_velocity", help="output folder")
    p.add_argument("--n-samples", type=int, default=None, help="configurations per temperature (even)")
    p.add_argument("--supercell", type=int, default=None, help="n for the n×n×1 supercell")
    p.add_argument("--temperatures", type=float, nargs="*", default=None, help="K")
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--draw-basis", choices=("cartesian", "modes"), default="cartesian",
                   help="basis of the seed's deviates (default cartesian: pairs the two pipelines' draws)")
    p.add_argument("--reference-only", action="store_true", help="skip the ML pipeline")
    p.add_argument("--split-error", action="store_true",
                   help="also run HedgeNet-Phonon with the sp3 reference Hamiltonian, to split ML − reference into "
                        "the phonon model's and the electron model's parts")
    p.add_argument("--phonon-model", default=str(DEFAULT_PHONON_MODEL))
    p.add_argument("--electron-model", default=str(DEFAULT_ELECTRON_MODEL))
    args = p.parse_args()
    args.quick = args.quick or os.environ.get("MLEPI_TUTORIAL_QUICK", "") not in ("", "0")
    return args


def settings(args: argparse.Namespace) -> dict:
    n = args.supercell or (3 if args.quick else 6)
    return {
        "fc_supercell": [n, n, 1],
        "temperatures": args.temperatures or ([0.0, 300.0] if args.quick else [0.0, 100.0, 200.0, 300.0, 400.0, 500.0]),
        "n_samples": args.n_samples or (4 if args.quick else 16),
        "seed": args.seed,
        "draw_basis": args.draw_basis,
        "kpoints": ["K"],
        "fit_q": [0.02, 0.04],
        "fit_directions": [0.0, 60.0],
        "spectral_window": [] if args.quick else [-1.0, 1.0],
    }


def main() -> None:
    from mlepi_ase.averaging import SampleStore, plot_convergence
    from mlepi_ase.plotting import plot_paired_difference, plot_vf_temperature

    args = parse_args()
    out = Path(args.output)
    base = settings(args)
    labels = {"reference": "reference (REBO+KC, sp3 SK)", "ml": "ML (HedgeNet-Phonon, HedgeNet-Electron)",
              "ml_phonons": "HedgeNet-Phonon + sp3 SK"}
    runs = {"reference": {**base, "force_calculator": "reference", "hamiltonian_calculator": "sp3",
                          "output": str(out / "reference")}}
    if not args.reference_only:
        for path in (args.phonon_model, args.electron_model):
            if not Path(path).exists():
                raise SystemExit(f"model file {path} not found; train it or pass --reference-only")
        runs["ml"] = {**base, "force_calculator": "hedgenet", "hamiltonian_calculator": "hedgenet",
                      "force_model": args.phonon_model, "electron_model": args.electron_model, "output": str(out / "ml")}
        if args.split_error:
            runs["ml_phonons"] = {**base, "force_calculator": "hedgenet", "hamiltonian_calculator": "sp3",
                                  "force_model": args.phonon_model, "output": str(out / "ml_phonons_sp3")}
    summaries, times = {}, {}
    for key, cfg in runs.items():
        t = time.perf_counter()
        summaries[labels[key]] = run_pipeline(cfg)
        times[labels[key]] = time.perf_counter() - t

    series, pristine = {}, {}
    for label, s in summaries.items():
        temps = sorted(s["temperatures"], key=float)
        series[label] = ([float(t) for t in temps], [s["temperatures"][t]["v_F"]["mean"] for t in temps],
                         [s["temperatures"][t]["v_F"]["stderr"] for t in temps])
        pristine[label] = s["pristine"]["v_F"]
    plot_vf_temperature(series, out / "fermi_velocity_vs_T.png", pristine=pristine)
    first = labels["reference"]
    hottest = max(summaries[first]["convergence"], key=float)
    conv = summaries[first]["convergence"][hottest]
    values = SampleStore(Path(runs["reference"]["output"]) / f"samples_T{hottest}.h5").load()
    plot_convergence(values.running("v_F", antithetic=True), out / "convergence.png", label="v_F", unit="eV·Å",
                     reference=pristine[first], title=f"{first}: T = {hottest} K")
    report = {"settings": base, "seconds": times, "pristine_v_F": pristine, "v_F": {}, "n_atoms_supercell":
              summaries[first]["n_atoms_supercell"], "convergence_stderr_at_highest_T": conv["stderr"]}
    for label in summaries:
        report["v_F"][label] = {t: summaries[label]["temperatures"][t]["v_F"] for t in summaries[label]["temperatures"]}
    if "ml" in runs:
        a, b = (summaries[labels[k]]["temperatures"] for k in ("reference", "ml"))
        agree = {}
        for t in a:
            diff = a[t]["v_F"]["mean"] - b[t]["v_F"]["mean"]
            comb = float(np.hypot(a[t]["v_F"]["stderr"], b[t]["v_F"]["stderr"]))
            agree[t] = {"difference": diff, "combined_stderr": comb, "within_2_sigma": bool(abs(diff) <= 2 * comb)}
        report["agreement"] = agree  # "difference": reference − ML, independent-draw standard error
        temps = sorted(a, key=float)

        def paired(key_a: str, key_b: str) -> dict:
            """Paired difference run a − run b of v_F per temperature, with the two runs' renormalisations."""
            found = compare_runs(runs[key_a]["output"], runs[key_b]["output"], "v_F")
            return {"difference": f"{labels[key_a]} − {labels[key_b]}", "draw_basis": found["draw_basis"],
                    "temperatures": found["temperatures"]}

        report["paired"] = paired("ml", "reference")
        curves = {"ML − reference": report["paired"]["temperatures"]}
        if "ml_phonons" in runs:
            report["paired_split"] = {"phonon model": paired("ml_phonons", "reference"),
                                      "electron model": paired("ml", "ml_phonons")}
            curves["HedgeNet-Phonon alone (with sp3 SK) − reference"] = \
                report["paired_split"]["phonon model"]["temperatures"]
        plot_paired_difference([float(t) for t in temps],
                               {name: ([c[t]["mean"] for t in temps], [c[t]["stderr"] for t in temps])
                                for name, c in curves.items()},
                               [report["paired"]["temperatures"][t]["unpaired_stderr"] for t in temps],
                               out / "paired_difference.png")
    with open(out / "summary.json", "w") as f:
        json.dump(report, f, indent=2)
    print(json.dumps(report["v_F"], indent=1))
    pairs = {"ML − reference": report.get("paired")}
    for part, p in report.get("paired_split", {}).items():
        pairs[f"{part}: {p['difference']}"] = p
    for name, p in pairs.items():
        if p is None:
            continue
        print(name)
        for t, d in p["temperatures"].items():
            r = d["renormalization"]
            print(f"  T = {t} K: {d['mean']:+.4f} ± {d['stderr']:.4f} eV·Å (paired; independent draws "
                  f"±{d['unpaired_stderr']:.4f}), per-configuration correlation {d['correlation']:.4f}; "
                  f"renormalisation v_F − v_F(no EPI) {r['a']:+.4f} vs {r['b']:+.4f}")
    print(f"figures and summary.json in {out}")


if __name__ == "__main__":
    main()
