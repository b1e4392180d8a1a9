"""``mlepi compare RUN_A RUN_B``: paired difference of two pipeline runs that drew with the same seed.

Two runs of ``mlepi run`` with the same sampling settings (seed, ``n_samples``, antithetic pairs, draw basis,
supercells) but other models — the learned models and ``--reference``, or two phonon models — evaluated the
same draws; this command pairs their stored per-sample values and prints, per temperature, the difference
``O_a − O_b`` with its paired standard error, the standard error independent draws would give, the
per-configuration correlation and each run's phonon renormalisation ``O(T) − O(no EPI)``
(:func:`mlepi_ase.pipeline.compare_runs`).  Draw with ``draw_basis: cartesian`` (``--set draw_basis=cartesian``)
so that runs with different force models get paired configurations.

Example::

    mlepi run --set draw_basis=cartesian -o run_ml
    mlepi run --reference --set draw_basis=cartesian -o run_ref
    mlepi compare run_ml run_ref -o compare.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="paired difference of two pipeline runs with the same seed",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_a", help="output folder of the first run")
    p.add_argument("run_b", help="output folder of the second run (the difference is a − b)")
    p.add_argument("--observable", default="v_F", help="scalar observable (default v_F)")
    p.add_argument("--output", "-o", default=None, help="write the numbers to this JSON file (and a PNG beside it)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..pipeline import compare_runs
    from ..plotting import plot_paired_difference

    report = compare_runs(args.run_a, args.run_b, args.observable)
    rows = report["temperatures"]
    if report["draw_basis"] != "cartesian":
        print("note: the runs drew in the mode-index basis; with different force models their configurations pair "
              "poorly (see the correlation); draw with draw_basis=cartesian to pair them")
    print(f"{args.observable}: {args.run_a} − {args.run_b}")
    for t, d in rows.items():
        line = (f"  T = {t} K: {d['mean']:+.5f} ± {d['stderr']:.5f} (paired; independent draws ±{d['unpaired_stderr']:.5f}), "
                f"correlation {d['correlation']:.4f}")
        if "renormalization" in d:
            r = d["renormalization"]
            line += f"; O(T) − O(no EPI): {r['a']:+.5f} vs {r['b']:+.5f}"
        print(line)
    if args.output:
        out = Path(args.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2))
        temps = list(rows)
        plot_paired_difference([float(t) for t in temps],
                               {f"{Path(args.run_a).name} − {Path(args.run_b).name}":
                                ([rows[t]["mean"] for t in temps], [rows[t]["stderr"] for t in temps])},
                               [rows[t]["unpaired_stderr"] for t in temps], out.with_suffix(".png"),
                               unit="eV·Å" if args.observable == "v_F" else "", label_y=f"Δ{args.observable}")
        print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0
