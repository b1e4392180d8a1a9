"""Embedded reference models (DESIGN.md §4): published stand-ins for DFT forces and Hamiltonians.

* :class:`ReferenceForceField` — REBO + Kolmogorov–Crespi (LAMMPS) ASE calculator.
* :class:`SlaterKosterSP3` — sp3 Slater–Koster carbon Hamiltonian (Xu et al. 1992 + Moon–Koshino 2012).
* :class:`MoonKoshinoPz` — its π-only (p_z) variant.

LAMMPS itself is imported only when a calculation runs, so importing this package is cheap.
"""

from .force_field import ReferenceForceField
from .slater_koster import MoonKoshinoPz, SlaterKosterSP3

__all__ = [
    "ReferenceForceField",
    "SlaterKosterSP3",
    "MoonKoshinoPz",
]
