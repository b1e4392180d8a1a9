"""Training of the HedgeNet models (one module per model: :mod:`mlepi_ase.train.phonon`)."""

from typing import Any


def check_positive_int(value: Any, name: str, null_means: str | None = None) -> int | None:
    """A positive ``int`` from a config (booleans refused); ``None`` is allowed when ``null_means`` says
    what it stands for.

    Raises
    ------
    ValueError
        Anything else (0, negatives, floats, strings, booleans), naming ``name``.
    """
    if value is None and null_means is not None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        alternative = f" (or null for {null_means})" if null_means is not None else ""
        raise ValueError(f"{name} must be a positive integer{alternative}, got {value!r}")
    return value


def check_num_threads(value: Any, name: str = "num_threads") -> int | None:
    """A training config's CPU thread count: ``None`` (leave torch's default) or a positive ``int``."""
    return check_positive_int(value, name, "torch's default")
