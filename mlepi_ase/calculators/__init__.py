"""ASE calculators backed by the HedgeNet models."""

from .phonon import HedgeNetPhononCalculator

__all__ = [
    "HedgeNetPhononCalculator",
]
