"""Force error of HedgeNet-Phonon models on a held-out set no decision has seen, with its standard error.

The three held-out 6×6×1 draws of ``benchmarks/eval_phonon_heldout.py`` chose the shipped model among the
candidates of most stages since stage 11, so the MAE on them may be biased low by that selection.  This script
evaluates on a set drawn afterwards (``dataset.yaml`` here).  All configurations have the same number of atoms,
so the MAE over all force components is the mean of the per-configuration MAEs m_c, and its standard error over
thermal draws is

.. math::

    \\mathrm{SE} = s_m / \\sqrt{N_c},

with s_m the sample standard deviation of the m_c (configurations are independent draws; atoms within one are
not).  The per-16-configuration block MAEs show the draw-to-draw scatter that one held-out draw has.

Usage::

    OMP_NUM_THREADS=2 python data/hedgenet_phonon/experiments/untouched_draw/evaluate.py \\
        --model stage34=data/hedgenet_phonon/hedgenet_phonon.pt --data out/phonon_dataset_untouched/test_6x6.xyz \\
        --output data/hedgenet_phonon/experiments/untouched_draw/results.json
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", required=True, metavar="NAME=PATH")
    parser.add_argument("--data", required=True, help="extended XYZ file with REF_forces (the untouched draw)")
    parser.add_argument("--output", required=True, help="JSON file to write")
    args = parser.parse_args()

    from mlepi_ase._files import atomic_json
    from mlepi_ase.calculators.phonon import HedgeNetPhononCalculator
    from mlepi_ase.phonon_dataset import REF_FORCES, read_phonon_dataset

    configs = read_phonon_dataset(args.data)
    sizes = {len(a) for a in configs}
    if len(sizes) != 1:
        raise SystemExit(f"configurations of different sizes {sorted(sizes)}: the per-configuration mean is not "
                         "the pooled MAE")
    out: dict = {"data": args.data, "n_atoms_per_config": sizes.pop(), "models": {}}
    for spec in args.model:
        name, _, path = spec.partition("=")
        calc = HedgeNetPhononCalculator(path, dtype="float64")
        per_config = []
        for atoms in configs:
            ref = atoms.arrays[REF_FORCES]
            probe = atoms.copy()
            probe.calc = calc
            per_config.append(1e3 * float(np.abs(probe.get_forces() - ref).mean()))
        res = mae_with_standard_error(np.array(per_config))
        out["models"][name] = {"file": os.path.relpath(Path(path).absolute()), **res,
                               "per_config_mae_meV_per_A": per_config}
        print(f"{name}: {res['forces_mae_meV_per_A']:.2f} ± {res['standard_error_meV_per_A']:.2f} meV/Å over "
              f"{res['n_configs']} configurations; blocks of 16: "
              + " / ".join(f"{b:.2f}" for b in res["block_mae_meV_per_A"]), flush=True)
    print(f"wrote {atomic_json(args.output, out, indent=1)}")


if __name__ == "__main__":
    main()
