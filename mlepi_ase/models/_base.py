"""What both HedgeNet models share as torch modules: dtype parsing and rebuilt constant tensors.

Both models hold constants that are not parameters (Wigner-3j / Clebsch–Gordan tensors, U matrices,
Bessel roots, block maps).  They are computed in float64 and must be rebuilt in the model's dtype
whenever the module is moved or cast, or loads a state dict: a plain cast would leave a float64
model with float32-accurate coefficients.
"""

from __future__ import annotations

import torch

__all__ = ["as_dtype", "ConstantsModule"]

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
        return out

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):  # type: ignore[override]
        """As torch's, then rebuild the constants in the model dtype."""
        result = super().load_state_dict(state_dict, strict=strict, assign=assign)
        self._refresh_constants()
        return result

    def _refresh_constants(self) -> None:
        raise NotImplementedError
