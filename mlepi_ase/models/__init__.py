"""Machine-learned models: HedgeNet-Phonon (forces) and HedgeNet-Electron (Hamiltonians)."""

from .phonon import (
    DEFAULT_PHONON_CONFIG,
    HedgeNetPhonon,
    ModelFileError,
    load_phonon_model,
    normalize_phonon_config,
    save_phonon_model,
)
from .phonon_widen import widen_phonon_model

__all__ = [
    "DEFAULT_PHONON_CONFIG",
    "HedgeNetPhonon",
    "ModelFileError",
    "load_phonon_model",
    "normalize_phonon_config",
    "save_phonon_model",
    "widen_phonon_model",
]
