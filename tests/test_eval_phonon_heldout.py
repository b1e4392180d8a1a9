"""The held-out evaluation script pools force errors over draws as if they were one set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "eval_phonon_heldout.py"


def test_pooled_errors_equal_those_of_the_concatenated_sets(rng, load_script):
    pooled = load_script(SCRIPT).pooled
    # two "sets" of different sizes and error scales: force-error components (meV/Å) per configuration
    sizes = {"a": (16, 144), "b": (5, 64)}  # (configurations, atoms per configuration)
    errors = {k: rng.normal(scale=10.0 * (i + 1), size=(n, atoms, 3))
              for i, (k, (n, atoms)) in enumerate(sizes.items())}
    per_set = {k: {"forces_mae_meV_per_A": float(np.abs(e).mean()),
                   "forces_rmse_meV_per_A": float(np.sqrt((e ** 2).mean())), "n_configs": e.shape[0]}
               for k, e in errors.items()}
    result = pooled(per_set, {k: e.size for k, e in errors.items()})
    everything = np.concatenate([e.ravel() for e in errors.values()])
    assert result["forces_mae_meV_per_A"] == pytest.approx(np.abs(everything).mean(), rel=1e-12)
    assert result["forces_rmse_meV_per_A"] == pytest.approx(np.sqrt((everything ** 2).mean()), rel=1e-12)
    assert result["n_configs"] == 21 and result["sets"] == ["a", "b"]
    # not the plain mean of the two MAEs (the sets differ in size)
    assert abs(result["forces_mae_meV_per_A"] - np.mean([r["forces_mae_meV_per_A"] for r in per_set.values()])) > 1.0

