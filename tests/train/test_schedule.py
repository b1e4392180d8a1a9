"""The cosine_time schedule shared by the trainers: the anneal over the budget and where a run stops."""

from __future__ import annotations

import numpy as np
import pytest

from mlepi_ase.train.schedule import cosine_lr, cosine_time_finished, cosine_time_lr, last_epoch_seconds


def test_cosine_time_lr_anneals_over_the_budget():
    lr, lo, budget = 1e-2, 1e-5, 600.0
    assert cosine_time_lr(0.0, budget, lr, lo) == pytest.approx(lr)
    assert cosine_time_lr(budget / 2, budget, lr, lo) == pytest.approx(0.5 * (lr + lo))
    assert cosine_time_lr(budget / 4, budget, lr, lo) == pytest.approx(lo + 0.5 * (lr - lo) * (1 + np.sqrt(0.5)))
    assert cosine_time_lr(budget, budget, lr, lo) == pytest.approx(lo)
    assert cosine_time_lr(3 * budget, budget, lr, lo) == pytest.approx(lo)  # past the budget: stays at min_lr
    rates = [cosine_time_lr(t, budget, lr, lo) for t in np.linspace(0, budget, 50)]
    assert np.all(np.diff(rates) < 0)


def test_cosine_time_stops_at_the_epoch_boundary_nearest_the_budget_end():
    """A 62-minute budget: 20-minute epochs stop after three (60 min, the next would run 18 of its 20 minutes at the
    floor rate), 11.7-minute epochs after five (58.5 min, 3.5 min early rather than 8.2 min late), 15-minute ones
    after four (60 min); an epoch of unknown length (0 s) stops only once the budget is spent."""
    budget = 62 * 60.0
    for epoch_min, n_epochs in [(20.0, 3), (11.7, 5), (15.0, 4), (2.0, 31)]:
        ends = [cosine_time_finished(k * epoch_min * 60, epoch_min * 60, budget) for k in range(1, n_epochs + 1)]
        assert ends == [False] * (n_epochs - 1) + [True], epoch_min
    assert not cosine_time_finished(budget - 1.0, 0.0, budget) and cosine_time_finished(budget, 0.0, budget)
    assert cosine_time_finished(budget - 299.0, 600.0, budget) and not cosine_time_finished(budget - 301.0, 600.0,
                                                                                              budget)


def test_cosine_lr_over_steps_is_the_same_anneal():
    """HedgeNet-Electron's plain ``cosine`` schedule: rate lr0 (f + (1 - f)(1 + cos(pi s/S))/2) at step s of S,
    with f = lr_min_factor, held at lr0 f past the last step; the time schedule is the same function of t/T."""
    lr0, f, total = 3e-3, 0.01, 40
    for step in [0, 1, 10, 20, 39, 40, 55]:
        x = min(step / total, 1.0)
        expected = lr0 * (f + (1.0 - f) * 0.5 * (1.0 + np.cos(np.pi * x)))
        assert cosine_lr(step, total, lr0, lr0 * f) == pytest.approx(expected, rel=1e-12)
        assert cosine_time_lr(7.5 * step, 7.5 * total, lr0, lr0 * f) == pytest.approx(expected, rel=1e-12)


def test_last_epoch_seconds_reads_the_history():
    assert last_epoch_seconds([]) == 0.0
    assert last_epoch_seconds([{"epoch": 0}]) == 0.0  # a checkpoint from before epoch_s was recorded
    assert last_epoch_seconds([{"epoch_s": 12.5}, {"epoch_s": 9.0}]) == 9.0
