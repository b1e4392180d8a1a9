"""Force error of HedgeNet-Phonon models on a held-out set no decision has seen, with its standard error.

The three held-out 6×6×1 draws of ``benchmarks/eval_phonon_heldout.py`` chose the shipped model among the
candidates of most stages since stage 11, so the MAE on them may be biased low by that selection.  This script
evaluates on a set drawn afterwards (``dataset.yaml`` here).  All configurations have the same number of atoms,
so the MAE over all force components is the mean of the per-configuration MAEs m_c, and its standard error over
thermal draws is

.. math::

    \\mathrm{SE} = s_m / \\sqrt{N_c},

with s_m the sample standard deviation of the m_c (configurations are independent draws; atoms within one are
not).  The per-16-configuration block MAEs show the draw-to-draw scatter that one held-out draw has.  Two models
evaluated on the same configurations are compared by the paired difference of their per-configuration MAEs
(``--pair A-B``, :func:`paired_difference`), whose standard error is far smaller than either model's.  Each
entry records the SHA-256 of its model file; ``--reuse`` takes from the existing output file the entries whose
name and SHA-256 match (same data file), so adding a model to the table evaluates only that model.

Usage::

    OMP_NUM_THREADS=2 python data/hedgenet_phonon/experiments/untouched_draw/evaluate.py \\
        --model stage34=data/hedgenet_phonon/hedgenet_phonon.pt --data out/phonon_dataset_untouched/test_6x6.xyz \\
        --output data/hedgenet_phonon/experiments/untouched_draw/results.json
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np


def mae_with_standard_error(per_config_mae: np.ndarray, block: int = 16) -> dict:
    """Pooled MAE of equal-size configurations, its standard error and the MAEs of consecutive blocks.

    Parameters
    ----------
    per_config_mae
        (N_c,) float: mean absolute force-component error of each configuration, meV/Å.
    block
        Configurations per block (one held-out draw holds 16).

    Returns
    -------
    dict
        ``forces_mae_meV_per_A`` (mean), ``standard_error_meV_per_A`` (s / √N_c, s with N_c − 1 degrees of
        freedom), ``n_configs``, ``block_mae_meV_per_A`` (one entry per complete block).
    """
    m = np.asarray(per_config_mae, dtype=float)
    if m.ndim != 1 or len(m) < 2:
        raise ValueError(f"need a 1-D array of at least two per-configuration MAEs, got shape {m.shape}")
    n_blocks = len(m) // block
    return {"forces_mae_meV_per_A": float(m.mean()),
            "standard_error_meV_per_A": float(m.std(ddof=1) / np.sqrt(len(m))),
            "n_configs": int(len(m)),
            "block_mae_meV_per_A": [float(m[k * block:(k + 1) * block].mean()) for k in range(n_blocks)]}


def paired_difference(per_config_a: np.ndarray, per_config_b: np.ndarray) -> dict:
    """Paired difference of two models' per-configuration MAEs on the same configurations.

    The configuration-to-configuration spread (about 1 meV/Å) is common to both models and cancels in
    d_c = a_c − b_c, so the standard error of the mean difference, s_d / √N_c, resolves gains far smaller than
    either model's own standard error.

    Parameters
    ----------
    per_config_a, per_config_b
        (N_c,) float: the two models' MAEs on the same configurations in the same order, meV/Å.

    Returns
    -------
    dict
        ``mean_meV_per_A`` (mean of a − b; negative: a is better), ``standard_error_meV_per_A`` (s_d / √N_c),
        ``n_configs``, ``n_a_lower`` (configurations on which a has the smaller MAE).
    """
    a, b = np.asarray(per_config_a, dtype=float), np.asarray(per_config_b, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise ValueError(f"need two 1-D arrays of equal length >= 2, got shapes {a.shape} and {b.shape}")
    d = a - b
    return {"mean_meV_per_A": float(d.mean()), "standard_error_meV_per_A": float(d.std(ddof=1) / np.sqrt(len(d))),
            "n_configs": int(len(d)), "n_a_lower": int((d < 0).sum())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", required=True, metavar="NAME=PATH")
    parser.add_argument("--data", required=True, help="extended XYZ file with REF_forces (the untouched draw)")
    parser.add_argument("--output", required=True, help="JSON file to write")
    parser.add_argument("--pair", action="append", default=[], metavar="A-B",
                        help="report the paired difference A − B of two --model names (repeatable)")
    parser.add_argument("--reuse", action="store_true",
                        help="take the entries of the existing --output file whose model name and file SHA-256 match")
    args = parser.parse_args()

    from mlepi_ase._files import atomic_json, file_sha256
    from mlepi_ase.calculators.phonon import HedgeNetPhononCalculator
    from mlepi_ase.phonon_dataset import REF_FORCES, read_phonon_dataset

    names = [spec.partition("=")[0] for spec in args.model]
    pairs = [pair.split("-") for pair in args.pair]
    for pair in pairs:
        if len(pair) != 2 or not set(pair) <= set(names):
            raise SystemExit(f"--pair takes A-B with A and B among the --model names {names}, got {'-'.join(pair)!r}")
    configs = read_phonon_dataset(args.data)
    sizes = {len(a) for a in configs}
    if len(sizes) != 1:
        raise SystemExit(f"configurations of different sizes {sorted(sizes)}: the per-configuration mean is not "
                         "the pooled MAE")
    out: dict = {"data": args.data, "n_atoms_per_config": sizes.pop(), "models": {}}
    previous = {}
    if args.reuse and Path(args.output).exists():
        old = json.loads(Path(args.output).read_text())
        if old.get("data") == args.data:
            previous = old["models"]
    for spec in args.model:
        name, _, path = spec.partition("=")
        file, sha256 = os.path.relpath(Path(path).absolute()), file_sha256(path)
        kept = previous.get(name)
        if kept is not None and kept.get("sha256") == sha256:
            out["models"][name] = {**kept, "file": file}
            print(f"{name}: {kept['forces_mae_meV_per_A']:.2f} ± {kept['standard_error_meV_per_A']:.2f} meV/Å "
                  f"(kept from {args.output}: same file content)", flush=True)
            continue
        calc = HedgeNetPhononCalculator(path, dtype="float64")
        per_config = []
        for atoms in configs:
            ref = atoms.arrays[REF_FORCES]
            probe = atoms.copy()
            probe.calc = calc
            per_config.append(1e3 * float(np.abs(probe.get_forces() - ref).mean()))
        res = mae_with_standard_error(np.array(per_config))
        out["models"][name] = {"file": file, "sha256": sha256, **res,
                               "per_config_mae_meV_per_A": per_config}
        print(f"{name}: {res['forces_mae_meV_per_A']:.2f} ± {res['standard_error_meV_per_A']:.2f} meV/Å over "
              f"{res['n_configs']} configurations; blocks of 16: "
              + " / ".join(f"{b:.2f}" for b in res["block_mae_meV_per_A"]), flush=True)
    if pairs:
        out["paired"] = {}
        for a, b in pairs:
            res = paired_difference(out["models"][a]["per_config_mae_meV_per_A"],
                                    out["models"][b]["per_config_mae_meV_per_A"])
            out["paired"][f"{a}-{b}"] = res
            print(f"{a} − {b}: {res['mean_meV_per_A']:+.3f} ± {res['standard_error_meV_per_A']:.3f} meV/Å, {a} lower "
                  f"on {res['n_a_lower']} of {res['n_configs']}", flush=True)
    print(f"wrote {atomic_json(args.output, out, indent=1)}")


if __name__ == "__main__":
    main()
