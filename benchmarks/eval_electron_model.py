"""Metrics of a trained HedgeNet-Electron model on held-out data (writes the shipped model's metrics).

On the held-out split of an electron dataset (default ``test_6x6``: thermal configurations of the 6×6×1
AB bilayer at 300 K, never seen in training) this script computes

* the block mean absolute error per relation (on-site, intra-layer, inter-layer) and overall, meV;
* the band-energy errors within ±1 eV of the Fermi level at the supercell's Γ, M and K
  (:func:`mlepi_ase.train.electron.band_energy_errors`), meV;
* an overlay plot of model vs reference bands along Γ–M–K–Γ of the supercell for one displaced
  configuration (the paper's Fig. 4d),

and writes ``metrics.json`` and ``bands_6x6.png`` into ``--out``.

Run::

    mlepi make-dataset electron -o electron_dataset --seed 0
    .venv/bin/python benchmarks/eval_electron_model.py --dataset electron_dataset/electron_dataset.h5
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(ROOT / "data" / "hedgenet_electron" / "model.pt"))
    p.add_argument("--dataset", required=True, help="HDF5 dataset of mlepi make-dataset electron")
    p.add_argument("--split", default="test_6x6")
    p.add_argument("--valid-split", default="valid", help="also report block MAE on this split ('' to skip)")
    p.add_argument("--window", type=float, default=1.0, help="band window around E_F (eV)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(ROOT / "data" / "hedgenet_electron"))
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from mlepi_ase.models.electron import load_electron_model
    from mlepi_ase.models.electron_data import read_electron_dataset
    from mlepi_ase.tb import special_path
    from mlepi_ase.train.electron import band_energy_errors, evaluate_model, prepare_samples

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = load_electron_model(args.model, dtype="float64")
    t0 = time.perf_counter()
    items = read_electron_dataset(args.dataset, args.split)
    samples = prepare_samples([h for h, _ in items], model.config)
    metrics: dict = {"model": os.path.relpath(args.model, ROOT), "dataset_split": args.split,
                     "n_structures": len(items), "n_atoms": int(items[0][0].n_atoms),
                     "temperatures_K": sorted({float(info.get("temperature", float("nan"))) for _, info in items}),
                     "reference": "SlaterKosterSP3 (cutoff 6.5 Å)", "units": "meV"}
    metrics["block_mae"] = evaluate_model(model, samples)
    metrics["blocks_outside_model_cutoffs"] = int(sum(s.n_dropped for s in samples))
    if args.valid_split:
        valid = read_electron_dataset(args.dataset, args.valid_split)
        metrics["block_mae_valid_4x4"] = evaluate_model(model, prepare_samples([h for h, _ in valid], model.config))
    bands = []
    preds = []
    for h, _ in items:
        pred = model.predict_hamiltonian(h.to_atoms())
        preds.append(pred)
        bands.append(band_energy_errors(h, pred, args.window, ("G", "M", "K")))
    per_k = {k: max(b["per_k"][k]["max_abs_meV"] for b in bands) for k in ("G", "M", "K")}
    metrics["band_errors"] = {
        "window_eV": args.window, "kpoints": ["G", "M", "K"],
        "max_abs_meV": max(b["max_abs_meV"] for b in bands),
        "mean_abs_meV": float(np.mean([b["mean_abs_meV"] for b in bands])),
        "max_abs_meV_per_k": per_k,
        "per_structure": bands,
    }
    metrics["goals"] = {"block_mae_per_relation_meV": 1.0, "band_error_meV": 5.0}
    metrics["meets_goals"] = {
        "block_mae": bool(max(metrics["block_mae"][f"mae_{r}_meV"] for r in ("onsite", "intra", "inter")) <= 1.0),
        "bands": bool(metrics["band_errors"]["max_abs_meV"] <= 5.0),
    }
    metrics["model_metadata"] = {k: v for k, v in getattr(model, "metadata", {}).items() if k != "training"}
    training = getattr(model, "metadata", {}).get("training", {})
    metrics["training"] = {"epoch": training.get("epoch"), "n_train": training.get("n_train"),
                           "valid_at_best": training.get("valid")}

    # band overlay for the first held-out configuration
    h_ref, h_mod = items[0][0], preds[0]
    path = special_path(h_ref.to_atoms(), "GMKG", 90)
    x, xt, labels = path.get_linear_kpoint_axis()
    e_ref, e_mod = h_ref.eigh(path.kpts), h_mod.eigh(path.kpts)
    ef = bands[0]["fermi_level"]
    win = np.abs(e_ref - ef) <= args.window
    metrics["band_path_max_abs_meV_first_structure"] = float(1e3 * np.abs(e_ref - e_mod)[win].max())
    metrics["eval_time_s"] = round(time.perf_counter() - t0, 1)

    from mlepi_ase.plotting import new_figure

    fig, (ax, ax2) = new_figure(1, 2, figsize=(9, 4.2), gridspec_kw={"width_ratios": [3, 2]})
    for n in range(e_ref.shape[1]):
        ax.plot(x, e_ref[:, n] - ef, color="k", lw=1.6, label="SlaterKosterSP3" if n == 0 else None)
        ax.plot(x, e_mod[:, n] - ef, color="C3", lw=0.9, ls="--", label="HedgeNet-Electron" if n == 0 else None)
    for t in xt:
        ax.axvline(t, color="0.8", lw=0.6)
    ax.set_xticks(xt, [lab.replace("G", "Γ") for lab in labels])
    ax.set_xlim(x[0], x[-1])
    ax.set_ylim(-2.0, 2.0)
    ax.set_ylabel("E − E_F (eV)")
    ax.legend(fontsize=8, loc="upper right")
    ax.set_title(f"6×6 AB bilayer, 300 K configuration ({h_ref.n_atoms} atoms)", fontsize=9)
    d = 1e3 * (e_mod - e_ref)
    for n in range(e_ref.shape[1]):
        sel = win[:, n]
        if sel.any():
            ax2.plot(x[sel], d[sel, n], ".", ms=2, color="C0")
    for t in xt:
        ax2.axvline(t, color="0.8", lw=0.6)
    ax2.set_xticks(xt, [lab.replace("G", "Γ") for lab in labels])
    ax2.set_xlim(x[0], x[-1])
    ax2.set_ylabel("E_model − E_ref (meV), |E − E_F| ≤ 1 eV")
    ax2.set_title(f"max |ΔE| = {metrics['band_path_max_abs_meV_first_structure']:.2f} meV", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "bands_6x6.png", dpi=130)

    tmp = out / "metrics.json.tmp"
    with open(tmp, "w") as fh:
        json.dump(metrics, fh, indent=2, default=float)
    os.replace(tmp, out / "metrics.json")
    bm = metrics["block_mae"]
    print(f"{args.split}: block MAE {bm['mae_meV']:.3f} meV (on-site {bm['mae_onsite_meV']:.3f}, intra "
          f"{bm['mae_intra_meV']:.3f}, inter {bm['mae_inter_meV']:.3f}); band errors within ±{args.window} eV at "
          f"Γ, M, K: max {metrics['band_errors']['max_abs_meV']:.2f} meV, mean {metrics['band_errors']['mean_abs_meV']:.2f} "
          f"meV; along the path (first structure) max {metrics['band_path_max_abs_meV_first_structure']:.2f} meV")
    return 0


if __name__ == "__main__":
    sys.exit(main())
