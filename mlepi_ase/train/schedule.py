r"""The ``cosine_time`` learning-rate schedule shared by the trainers: a cosine anneal over wall-clock time.

A run given a time budget :math:`T` (seconds) sets the rate of every step from the training time :math:`t`
spent so far (the whole run's, resumes included),

.. math::

    \eta(t) = \eta_\min + \tfrac12 (\eta_0 - \eta_\min)\big(1 + \cos(\pi \min(t/T, 1))\big),

so it reaches the end of its anneal when its time is up on any machine, without guessing the number of
epochs beforehand (:func:`cosine_time_lr`).  Runs stop only at epoch boundaries, where the model is validated
and checkpointed.  Checking the budget only after each epoch would let an epoch ending just before
:math:`T` be followed by a whole further epoch at :math:`\eta_\min`; instead the run stops at the epoch
boundary nearest :math:`T` (:func:`cosine_time_finished`), taking the next epoch to last as long as the last
one.  The same anneal over optimizer steps instead of seconds (:func:`cosine_lr`) is HedgeNet-Electron's plain
``cosine`` schedule.
"""

from __future__ import annotations

import math

__all__ = ["cosine_lr", "cosine_time_lr", "cosine_time_finished", "last_epoch_seconds"]


def cosine_lr(done: float, total: float, lr: float, min_lr: float) -> float:
    r"""Learning rate of a cosine anneal from ``lr`` to ``min_lr`` after ``done`` of ``total`` (steps or seconds).

    Parameters
    ----------
    done, total
        Progress so far and at the end of the anneal, in the same unit (``total`` > 0); ``done`` is clipped to
        ``[0, total]``.
    lr, min_lr
        Rates at the start and at (and after) the end.

    Returns
    -------
    float
        :math:`\eta_\min + \frac12(\eta_0 - \eta_\min)(1 + \cos(\pi \min(\mathrm{done}/\mathrm{total}, 1)))`.
    """
    frac = min(max(done / total, 0.0), 1.0)
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * frac))


def cosine_time_lr(elapsed_s: float, budget_s: float, lr: float, min_lr: float) -> float:
    r"""Learning rate of the ``cosine_time`` schedule after ``elapsed_s`` of a ``budget_s`` training budget.

    Parameters
    ----------
    elapsed_s, budget_s
        Training time so far and the whole budget, seconds (``budget_s`` > 0).
    lr, min_lr
        Rates at the start and at (and after) the end of the budget.

    Returns
    -------
    float
        :math:`\eta_\min + \frac12(\eta_0 - \eta_\min)(1 + \cos(\pi \min(t/T, 1)))`.
    """
    return cosine_lr(elapsed_s, budget_s, lr, min_lr)


def cosine_time_finished(elapsed_s: float, epoch_s: float, budget_s: float) -> bool:
    r"""Whether a ``cosine_time`` run stops at this epoch boundary.

    The next epoch is taken to last as long as the one just finished; the run stops when that epoch would end
    more than half an epoch past the budget, i.e. when more than half its steps would run after the end of the
    anneal, at ``min_lr`` (:func:`cosine_time_lr`).  So the run ends at the epoch boundary nearest the end of
    its budget: at most about half an epoch late, or at most half an epoch early, where the rate of the last
    step is within :math:`(\eta_0 - \eta_\min)(1 - \cos(\pi r))/2` of the floor, :math:`r \le` ``epoch_s`` /
    (2 ``budget_s``) (0.067 of the span for three epochs in the budget, 0.006 for ten).

    Parameters
    ----------
    elapsed_s
        Training time of the whole run so far (resumes included), seconds.
    epoch_s
        Duration of the epoch just finished, training and validation, seconds (0 when unknown: the run then
        stops only once the budget is spent).
    budget_s
        The run's time budget, seconds (HedgeNet-Phonon's ``max_time_minutes`` × 60, HedgeNet-Electron's
        ``time_limit_s``).

    Returns
    -------
    bool
        True when no further epoch should start.
    """
    return elapsed_s + 0.5 * max(epoch_s, 0.0) >= budget_s


def last_epoch_seconds(history: list[dict]) -> float:
    """Duration (s) of the last epoch in a trainer's history (records with ``epoch_s``); 0 when unknown.

    A resumed ``cosine_time`` run passes it to :func:`cosine_time_finished` to decide whether its checkpoint's run
    already ended at its budget's nearest epoch boundary.
    """
    return float(history[-1].get("epoch_s", 0.0)) if history else 0.0
