"""Training of the HedgeNet models (one module per model: :mod:`mlepi_ase.train.phonon`)."""

from typing import Any


def check_num_threads(value: Any, name: str = "num_threads") -> int | None:
    """A training config's CPU thread count: ``None`` (leave torch's default) or a positive ``int``.

    Raises
    ------
    ValueError
        Anything else (0, negatives, floats, strings, booleans), naming ``name``.
    """
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{name} must be a positive integer (or null for torch's default), got {value!r}")
    return value
