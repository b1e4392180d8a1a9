"""Force errors of HedgeNet-Phonon models on every held-out set at once, and pooled over the 6×6×1 draws.

Three independent draws of 16 thermal 6×6×1 AB-bilayer configurations at 300 K (144 atoms each) are never
trained on: ``test_6x6.xyz`` of ``out/phonon_dataset_large``, ``out/phonon_dataset_thermal_extra`` and
``out/phonon_dataset_thermal_extra2`` (README commands).  One draw's MAE moves by ~0.5 meV/Å between
draws, so model comparisons quote the pooled MAE (all force components of the 48 configurations) beside
each draw.  These draws have chosen among candidate models for many stages; for an error no choice has seen, use
``data/hedgenet_phonon/experiments/untouched_draw/``.  The 4×4×1 test and valid splits and the layer-slide test are
evaluated too.  Models are evaluated in float64 on the CPU (the same numbers as the training log's float32
evaluation to ~0.01 meV/Å).

Writes ``<output>`` (JSON): per model and set ``forces_mae_meV_per_A``, ``forces_rmse_meV_per_A``,
``energy_mae_meV_per_atom``, ``n_configs``; per model ``6x6_300K_pooled``.

Usage::

    OMP_NUM_THREADS=2 python benchmarks/eval_phonon_heldout.py \\
        --model shipped=data/hedgenet_phonon/hedgenet_phonon.pt \\
        --model ablation=data/hedgenet_phonon/ablation_homogeneous/hedgenet_phonon.pt \\
        --output out/heldout_draws.json
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DRAWS = {
    "6x6_300K_draw_large": "out/phonon_dataset_large/test_6x6.xyz",
    "6x6_300K_draw_thermal_extra": "out/phonon_dataset_thermal_extra/test_6x6.xyz",
    "6x6_300K_draw_thermal_extra2": "out/phonon_dataset_thermal_extra2/test_6x6.xyz",
}
OTHER_SETS = {
    "4x4_test": "out/phonon_dataset_large/test.xyz",
    "4x4_valid": "out/phonon_dataset_large/valid.xyz",
    "slide_test": "out/phonon_dataset_slides/test.xyz",
}


def pooled(results: dict[str, dict[str, float]], n_components: dict[str, int]) -> dict[str, float]:
    """MAE / RMSE over all force components of several sets, from the per-set values.

    Parameters
    ----------
    results
        Per set: ``forces_mae_meV_per_A``, ``forces_rmse_meV_per_A``, ``n_configs``.
    n_components
        Per set: its number of force components (3 × its atoms summed over configurations).
    """
    n = {k: n_components[k] for k in results}
    total = sum(n.values())
    mae = sum(r["forces_mae_meV_per_A"] * n[k] for k, r in results.items()) / total
    mse = sum(r["forces_rmse_meV_per_A"] ** 2 * n[k] for k, r in results.items()) / total
    return {"forces_mae_meV_per_A": mae, "forces_rmse_meV_per_A": float(np.sqrt(mse)),
            "n_configs": sum(r["n_configs"] for r in results.values()), "sets": sorted(results)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", required=True, metavar="NAME=PATH")
    parser.add_argument("--output", required=True, help="JSON file to write")
    parser.add_argument("--root", default=str(ROOT), help="folder holding out/ (default: the repository)")
    args = parser.parse_args()

    import torch

    from mlepi_ase.models import load_phonon_model
    from mlepi_ase.models.phonon import graph_settings
    from mlepi_ase.train.phonon import PhononDataset, evaluate

    root = Path(args.root)
    sets = {**DRAWS, **OTHER_SETS}
    missing = [p for p in sets.values() if not (root / p).is_file()]
    if missing:
        parser.error(f"missing held-out files (make them with the README's make-dataset commands): {missing}")
    out: dict = {"description": "force errors (float64 evaluation) on the held-out sets; 6x6_300K_pooled = all "
                                "force components of the three 6x6x1 300 K draws (48 configurations)",
                 "files": sets, "models": {}}
    graphs: dict[tuple[str, str], PhononDataset] = {}   # models with the same graph settings share graphs
    for spec in args.model:
        name, _, path = spec.partition("=")
        model = load_phonon_model(path, dtype=torch.float64)
        res, n_components = {}, {}
        for key, rel in sets.items():
            cache_key = (graph_settings(model.config), key)
            if cache_key not in graphs:
                graphs[cache_key] = PhononDataset.from_file(root / rel, model.config)
            data = graphs[cache_key]
            m = evaluate(model, data)
            res[key] = {k: m[k] for k in ("n_configs", "forces_mae_meV_per_A", "forces_rmse_meV_per_A",
                                          "energy_mae_meV_per_atom")}
            n_components[key] = 3 * int(data.n_atoms.sum())
        res["6x6_300K_pooled"] = pooled({k: res[k] for k in DRAWS}, n_components)
        out["models"][name] = {"file": os.path.relpath(Path(path).resolve(), root), **res}
        print(f"{name}: draws " + " / ".join(f"{res[k]['forces_mae_meV_per_A']:.2f}" for k in DRAWS)
              + f", pooled {res['6x6_300K_pooled']['forces_mae_meV_per_A']:.2f} meV/Å; 4x4 test "
              f"{res['4x4_test']['forces_mae_meV_per_A']:.2f}, slides {res['slide_test']['forces_mae_meV_per_A']:.3f}",
              flush=True)
    dest = Path(args.output)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(out, indent=1))
    print(f"wrote {dest}")


if __name__ == "__main__":
    main()
