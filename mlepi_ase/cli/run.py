"""``mlepi run config.yaml``: the end-to-end MLEPI pipeline (see :mod:`mlepi_ase.pipeline`)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="end-to-end pipeline: phonons -> thermal samples -> Hamiltonians -> O(T)",
        description="Run the MLEPI pipeline from a YAML configuration (keys: see mlepi_ase.pipeline.PipelineConfig). "
        "An interrupted run resumes where it stopped when started again with the same configuration.",
    )
    p.add_argument("config", nargs="?", help="YAML configuration file (omit to use the defaults)")
    p.add_argument("--output", "-o", help="override the output folder")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="override settings, values parsed as YAML (e.g. n_samples=16 temperatures=[0,300])")
    p.add_argument("--reference", action="store_true",
                   help="use the embedded reference models (REBO+KC forces, sp3 Slater-Koster H) instead of the "
                        "learned models")
    p.set_defaults(func=run)


def parse_overrides(items: list[str]) -> dict:
    """``["a=1", "b=[1,2]"]`` → ``{"a": 1, "b": [1, 2]}`` (values parsed as YAML)."""
    import yaml

    out = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(value)
    return out


def run(args: argparse.Namespace) -> int:
    import yaml

    from ..pipeline import PipelineConfig, run_pipeline

    data = {}
    if args.config:
        with open(args.config) as f:
            data = yaml.safe_load(f) or {}
    if args.reference:
        data.update(force_calculator="reference", hamiltonian_calculator="sp3")
    data.update(parse_overrides(args.set))
    if args.output:
        data["output"] = args.output
    run_pipeline(PipelineConfig.from_dict(data))
    return 0
