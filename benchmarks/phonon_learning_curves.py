"""Learning curves of HedgeNet-Phonon trainings, side by side (validation force MAE per epoch).

Reads the ``history.json`` (or ``training_history*.json``) that ``mlepi train-phonon`` writes for each run
and compares the runs epoch by epoch: the validation force MAE (meV/Å, EMA weights) after every epoch,
the epochs at which a run first reaches given MAE levels, and the wall time per epoch.  Runs trained on
the same data with the same optimiser settings differ only by their model, so equal epochs compare
architectures at equal numbers of gradient steps (wall times depend on the machine and are reported,
not compared).

Writes ``<output>/learning_curves.json`` and ``<output>/learning_curves.png``.

Usage::

    python benchmarks/phonon_learning_curves.py \\
        --run "l=2, L=1 (shipped stage 1)=data/hedgenet_phonon/training_history_stage1.json" \\
        --run "l=3, L=1=data/hedgenet_phonon/experiments/angular_basis/ell3_L1/history.json" \\
        --output data/hedgenet_phonon/experiments/angular_basis
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

LEVELS_MEV_PER_A = (40.0, 30.0, 25.0, 20.0)


def read_history(path: str | Path) -> list[dict]:
    """Per-epoch records of one run (a list of dicts with ``epoch``, ``valid_forces_mae_meV_per_A``, …)."""
    records = json.loads(Path(path).read_text())
    if not isinstance(records, list) or not records or "valid_forces_mae_meV_per_A" not in records[0]:
        raise ValueError(f"{path} is not a train-phonon history (list of per-epoch records)")
    return records


def summarize(records: list[dict]) -> dict:
    """Epochs, validation force MAE (meV/Å), train loss, seconds per epoch and first epochs below levels."""
    epochs = np.array([r["epoch"] for r in records])
    mae = np.array([r["valid_forces_mae_meV_per_A"] for r in records])
    elapsed = np.array([r["elapsed_s"] for r in records])
    first = {}
    for level in LEVELS_MEV_PER_A:
        hit = np.nonzero(mae <= level)[0]
        first[f"{level:g}"] = int(epochs[hit[0]]) if hit.size else None
    return {
        "epochs": epochs.tolist(),
        "valid_forces_mae_meV_per_A": [round(float(x), 2) for x in mae],
        "train_loss": [float(r["train_loss"]) for r in records],
        "median_s_per_epoch": float(np.median(np.diff(np.concatenate([[0.0], elapsed])))),
        "last_epoch": int(epochs[-1]),
        "last_valid_forces_mae_meV_per_A": round(float(mae[-1]), 2),
        "best_valid_forces_mae_meV_per_A": round(float(mae.min()), 2),
        "first_epoch_at_or_below_meV_per_A": first,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", action="append", required=True, metavar="LABEL=HISTORY_JSON",
                   help="a run to compare (repeat); LABEL may contain '=' except in its last part")
    p.add_argument("--output", required=True, help="folder for learning_curves.json / .png")
    p.add_argument("--title", default="HedgeNet-Phonon learning curves")
    args = p.parse_args(argv)

    runs: dict[str, dict] = {}
    for spec in args.run:
        label, sep, path = spec.rpartition("=")
        if not sep or not label:
            p.error(f"--run needs LABEL=HISTORY_JSON, got {spec!r}")
        runs[label] = {"history_file": path, **summarize(read_history(path))}

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    common = min(r["last_epoch"] for r in runs.values())
    table = {}
    for label, r in runs.items():
        marks = sorted({e for e in r["epochs"] if e % 5 == 0} | {r["last_epoch"]} | ({common} & set(r["epochs"])))
        table[label] = {str(e): r["valid_forces_mae_meV_per_A"][r["epochs"].index(e)] for e in marks}
    result = {"description": "validation force MAE (meV/Å, EMA weights) per epoch of train-phonon runs",
              "levels_meV_per_A": list(LEVELS_MEV_PER_A), "last_common_epoch": common,
              "valid_forces_mae_at_epoch": table, "runs": runs}
    (out / "learning_curves.json").write_text(json.dumps(result, indent=1) + "\n")

    import matplotlib.ticker

    from mlepi_ase.plotting import new_figure

    fig, ax = new_figure(figsize=(6.0, 4.0))
    for label, r in runs.items():
        ax.plot(r["epochs"], r["valid_forces_mae_meV_per_A"], marker="o", ms=3, label=label)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.yaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation force MAE (meV/Å)")
    ax.set_title(args.title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "learning_curves.png", dpi=130)
    for label, row in table.items():
        print(f"{label:40s} " + "  ".join(f"ep{e}: {v:.1f}" for e, v in row.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
