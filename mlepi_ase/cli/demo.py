"""``mlepi demo``: the README's main job on the embedded default.

Runs the end-to-end pipeline of ``data/configs/demo_ab_bilayer.yaml`` — AB bilayer graphene,
HedgeNet-Phonon force constants (6×6×1), thermal configurations at 0…500 K, HedgeNet-Electron
Hamiltonians, unfolded bands and the fitted Fermi velocity v_F(T) — and writes its figures and
``results.json`` to the output folder (default ``demo_output``).  ``--reference`` runs the same job on
the embedded reference models instead (REBO + Kolmogorov–Crespi forces, sp3 Slater–Koster H).
An interrupted demo resumes where it stopped.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

DEMO_CONFIG = Path(__file__).resolve().parents[2] / "data" / "configs" / "demo_ab_bilayer.yaml"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="main job: v_F(T) of AB bilayer graphene with the shipped models",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output", "-o", default="demo_output", help="output folder (default: demo_output)")
    p.add_argument("--reference", action="store_true", help="use the embedded reference models")
    p.add_argument("--config", default=str(DEMO_CONFIG), help="pipeline configuration (YAML)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import yaml

    from ..pipeline import PipelineConfig, run_pipeline

    with open(args.config) as f:
        data = yaml.safe_load(f) or {}
    if args.reference:
        data.update(force_calculator="reference", hamiltonian_calculator="sp3")
    data["output"] = args.output
    t0 = time.perf_counter()
    summary = run_pipeline(PipelineConfig.from_dict(data))
    print(f"demo finished in {time.perf_counter() - t0:.0f} s; figures in {args.output}/:")
    for png in sorted(Path(args.output).glob("*.png")):
        print(f"  {png.name}")
    vf = {t: v["v_F"] for t, v in summary["temperatures"].items() if "v_F" in v}
    for t, est in vf.items():
        print(f"  T = {t:>5} K   v_F = {est['mean']:.4f} ± {est['stderr']:.4f} eV·Å")
    return 0
