"""How far does a HedgeNet-Phonon model move v_F(T)?  Paired draws against the reference pipeline.

For every model given, the pipeline runs with that model's force constants and the sp3 reference Hamiltonian,
with the settings and seed of an existing reference run (``results.json`` of a tutorial-04 run's ``reference``
folder, drawn in the Cartesian basis), so the two runs evaluate paired configurations.  Per temperature the script
reports the paired difference v_F(model + sp3) − v_F(reference) with its standard error
(:func:`mlepi_ase.pipeline.compare_runs`), the per-pair correlation, and the same difference on the phonon
renormalisation v_F(T) − v_F(no EPI) relative to the reference's.  Only the phonon model differs between the two
runs, so this is the phonon model's whole effect on the observable.  With several models, each is also paired
directly with the first one given (``against_first_model``).

Usage (one pipeline run per model: the 6×6×1 force constants, then 96 samples at ~3 s each on one thread)::

    python tutorials/04_temperature_dependent_fermi_velocity.py -o out/validation18_cart
    python benchmarks/phonon_model_vf_error.py out/validation18_cart/reference \\
        --model homogeneous=data/hedgenet_phonon/ablation_homogeneous/hedgenet_phonon.pt \\
        --model cpu_1h=data/hedgenet_phonon/cpu_1h/hedgenet_phonon.pt \\
        --output-root out/phonon_model_vf_error \\
        --json benchmarks/results/pipeline_validation/phonon_model_vf_error.json

Runs resume (the pipeline's own resumability): a restarted script reuses finished force constants and samples.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from mlepi_ase._files import file_sha256

PAIRING_BASIS = "cartesian"


def model_run_config(reference_config: dict, model: str, output: str | Path) -> dict:
    """The reference run's settings with HedgeNet-Phonon ``model`` as force calculator and the sp3 Hamiltonian."""
    if reference_config.get("force_calculator") != "reference" or reference_config.get("hamiltonian_calculator") != "sp3":
        raise ValueError("the reference run must use force_calculator 'reference' and hamiltonian_calculator 'sp3', got "
                         f"{reference_config.get('force_calculator')!r} / {reference_config.get('hamiltonian_calculator')!r}")
    if reference_config.get("draw_basis", "modes") != PAIRING_BASIS:
        raise ValueError("the reference run drew in the mode-index basis, which pairs the draws of two force models "
                         "poorly; rerun it with draw_basis 'cartesian' (tutorial 04's default)")
    return {**reference_config, "force_calculator": "hedgenet", "force_model": str(model),
            "hamiltonian_calculator": "sp3", "output": str(output), "reference_comparison": False}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("reference_run", help="folder of a reference pipeline run (results.json, samples_T*.h5)")
    parser.add_argument("--model", action="append", required=True, metavar="NAME=PATH",
                        help="HedgeNet-Phonon model file (repeatable)")
    parser.add_argument("--output-root", default="out/phonon_model_vf_error", help="one pipeline folder per model")
    parser.add_argument("--json", required=True, help="output JSON")
    parser.add_argument("--plot", default=None, help="PNG of the paired differences (default: next to the JSON)")
    args = parser.parse_args()

    from mlepi_ase.pipeline import compare_runs, run_pipeline
    from mlepi_ase.plotting import plot_paired_difference

    reference_dir = Path(args.reference_run)
    results_file = reference_dir / "results.json"
    if not results_file.is_file():
        raise SystemExit(f"{results_file} not found: give the reference folder of a finished pipeline run")
    reference = json.loads(results_file.read_text())
    models = {}
    for item in args.model:
        name, sep, path = item.partition("=")
        if not sep or not name or not Path(path).is_file():
            raise SystemExit(f"--model wants NAME=PATH with an existing file, got {item!r}")
        models[name] = Path(path)

    report = {"reference_run": str(reference_dir), "settings": {k: reference["config"][k] for k in (
        "fc_supercell", "temperatures", "n_samples", "antithetic", "seed", "draw_basis", "fit_q", "fit_directions")},
        "reference_pristine_v_F": reference["pristine"]["v_F"], "models": {}}
    for name, path in models.items():
        run_dir = Path(args.output_root) / name
        cfg = model_run_config(reference["config"], path, run_dir)
        t0 = time.perf_counter()
        run = run_pipeline(cfg)
        report["models"][name] = {"model_file": str(path), "sha256": file_sha256(path),
                                  "seconds": time.perf_counter() - t0, "pristine_v_F": run["pristine"]["v_F"],
                                  "gamma_modes": run["gamma_modes"],
                                  "temperatures": compare_runs(run_dir, reference_dir)["temperatures"]}
        for t, d in report["models"][name]["temperatures"].items():
            r = d["renormalization"]
            print(f"{name} T = {t} K: {d['mean']:+.4f} ± {d['stderr']:.4f} eV·Å (correlation {d['correlation']:.4f}); "
                  f"renormalisation {r['a']:+.4f} vs {r['b']:+.4f} ({100 * r['relative_difference']:+.1f} %)")
    names = list(report["models"])
    if len(names) > 1:  # the models against the first one, paired directly (no reference noise in between)
        root = Path(args.output_root)
        report["against_first_model"] = {"first": names[0], "models": {}}
        for name in names[1:]:
            rows = compare_runs(root / name, root / names[0])["temperatures"]
            report["against_first_model"]["models"][name] = rows
            print(f"{name} − {names[0]}: " + ", ".join(f"{t} K {d['mean']:+.4f} ± {d['stderr']:.4f}" for t, d in rows.items()))
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    temps = sorted(reference["temperatures"], key=float)
    first = next(iter(report["models"].values()))["temperatures"]
    plot_paired_difference([float(t) for t in temps],
                           {f"{name} + sp3 − reference": ([m["temperatures"][t]["mean"] for t in temps],
                                                          [m["temperatures"][t]["stderr"] for t in temps])
                            for name, m in report["models"].items()},
                           [first[t]["unpaired_stderr"] for t in temps],
                           args.plot or out.with_suffix(".png"))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
