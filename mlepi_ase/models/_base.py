"""What both HedgeNet models share: dtype parsing, rebuilt constant tensors, reading model files.

Both models hold constants that are not parameters (Wigner-3j / Clebsch–Gordan tensors, U matrices,
Bessel roots, block maps).  They are computed in float64 and must be rebuilt in the model's dtype
whenever the module is moved or cast, or loads a state dict: a plain cast would leave a float64
model with float32-accurate coefficients.  The coefficients of the fused edge tensor products
(:class:`~mlepi_ase.models.edge_tensor_product.FusedEdgeTensorProduct`, not in the state dict) are rebuilt
here for every model after each move or cast.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch

from .edge_tensor_product import FusedEdgeTensorProduct

__all__ = ["as_dtype", "ConstantsModule", "ModelFileError", "read_model_payload"]

_DTYPES = {"float32": torch.float32, "float64": torch.float64, "float": torch.float32, "double": torch.float64}


def as_dtype(dtype: torch.dtype | str) -> torch.dtype:
    """``"float32"``/``"float64"`` (also ``"float"``, ``"double"``, ``"torch.float64"``) or a torch dtype →
    ``torch.float32``/``torch.float64``; anything else raises ``ValueError``."""
    out = dtype if isinstance(dtype, torch.dtype) else _DTYPES.get(str(dtype).replace("torch.", ""))
    if out not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
    return out


class ConstantsModule(torch.nn.Module):
    """A module whose subclass rebuilds its constants in :meth:`_refresh_constants` after every
    ``.to()``/``.double()``/``.cuda()`` and :meth:`load_state_dict`."""

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def _apply(self, fn, *args, **kwargs):  # noqa: D401 - torch hook
        """Move/cast as torch does, then rebuild the constant tensors in the new dtype."""
        out = super()._apply(fn, *args, **kwargs)
        self._refresh_constants()
        for module in self.modules():
            if isinstance(module, FusedEdgeTensorProduct):
                module.refresh_constants()
        return out

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):  # type: ignore[override]
        """As torch's, then rebuild the constants in the model dtype."""
        result = super().load_state_dict(state_dict, strict=strict, assign=assign)
        self._refresh_constants()
        return result

    def _refresh_constants(self) -> None:
        raise NotImplementedError


class ModelFileError(ValueError):
    """A model file is corrupt, of the wrong kind, newer than this package, or unsafe to load."""


def read_model_payload(path: str | os.PathLike, file_format: str, max_version: int, label: str,
                       error: type[ModelFileError] = ModelFileError) -> dict[str, Any]:
    """Load a model file's dict with ``torch.load(weights_only=True)`` and check its header.

    Parameters
    ----------
    path
        The model file.
    file_format, max_version
        Expected ``payload["format"]`` and the newest ``payload["format_version"]`` this package reads.
    label
        Model name for messages, e.g. ``"HedgeNet-Phonon"``.
    error
        The :class:`ModelFileError` subclass to raise.

    Returns
    -------
    dict
        The payload, with dict entries ``config``, ``state_dict`` and ``metadata``.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ModelFileError
        (``error``) If the file is not a plain weights file (e.g. a pickle that would run code), cannot be
        read, is another format, is newer than ``max_version`` or lacks one of the three entries.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file {str(path)!r} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise error(
            f"refusing to load {str(path)!r}: it is not a plain weights file (weights_only=True "
            f"unpickling failed: {str(exc).splitlines()[0]})"
        ) from exc
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise error(f"cannot read {label} model file {str(path)!r}: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != file_format:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise error(f"{str(path)!r} is not a {label} model file (format {found!r}, expected {file_format!r})")
    if int(payload.get("format_version", -1)) > max_version:
        raise error(f"{str(path)!r} has format version {payload.get('format_version')}, newer than supported "
                    f"({max_version}); upgrade mlepi_ase")
    for key in ("config", "state_dict", "metadata"):
        if not isinstance(payload.get(key), dict):
            raise error(f"model file {str(path)!r} lacks a {key!r} dict")
    return payload
