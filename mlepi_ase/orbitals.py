"""Orbital bases and conversions between real-harmonic orderings.

Convention of the package
-------------------------
An orbital basis gives, per element, a list of *shells*.  A shell is an angular momentum ``l``
(``2l + 1`` orbitals whose components are ordered and signed as e3nn's real basis, the basis on
which ``o3.Irreps(f"{l}{'eo'[l % 2]}").D_from_matrix(R)`` acts), or the string ``"pz"`` (a single p_z
orbital, used by the π-only models; not a rotation-closed shell).

Checked with e3nn 0.4.4: ``D^1(R) = R`` and ``spherical_harmonics(1, r̂) ∝ r̂``, so an e3nn p shell is
ordered (x, y, z).  e3nn takes y as the polar axis, so its l = 2 components are, up to one common
normalisation, (√3 xz, √3 xy, (3y² − r²)/2, √3 yz, √3 (z² − x²)/2).

Other conventions, as Cartesian polynomials (one common normalisation per l):

* ``"openmx"`` (DeepH folders): p = (x, y, z); d = (3z² − r², x² − y², xy, xz, yz) with the
  normalisations ((3z² − r²)/2, √3 (x² − y²)/2, √3 xy, √3 xz, √3 yz).
* ``"spherical"`` (textbook real harmonics, m = −l … l, as in GPAW/SIESTA): p = (y, z, x);
  d = (xy, yz, 3z² − r², xz, x² − y²) with the same normalisations.

The conversion matrix ``U`` with ``f_e3nn = U f_other`` is found by evaluating both sets of
functions at random points and solving the least-squares problem; it is orthogonal (a permutation
with signs for p, a permutation plus a rotation of the (3z² − r², x² − y²) pair for d).  A block
transforms as ``H_e3nn = U_l1 H_other U_l2^T``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Mapping, Sequence, Union

import numpy as np
from ase.data import atomic_numbers, chemical_symbols

__all__ = [
    "Shell",
    "OrbitalBasis",
    "shell_size",
    "conversion_matrix",
    "block_to_e3nn",
    "block_from_e3nn",
    "CONVENTIONS",
]

Shell = Union[int, str]
CONVENTIONS = ("e3nn", "openmx", "spherical")


def shell_size(shell: Shell) -> int:
    """Number of orbitals in a shell: ``2l + 1`` for an integer ``l``, 1 for ``"pz"``."""
    if shell == "pz":
        return 1
    if isinstance(shell, (int, np.integer)) and shell >= 0:
        return 2 * int(shell) + 1
    raise ValueError(f"unknown shell {shell!r}: expected a non-negative integer l or 'pz'")


def _cartesian_functions(convention: str, l: int, r: np.ndarray) -> np.ndarray:
    """Real harmonics of degree ``l`` (unnormalised common factor) at unit vectors ``r`` (P, 3) → (P, 2l+1)."""
    x, y, z = r[:, 0], r[:, 1], r[:, 2]
    s3 = np.sqrt(3.0)
    if l == 0:
        return np.ones((len(r), 1))
    if l == 1:
        order = {"e3nn": (x, y, z), "openmx": (x, y, z), "spherical": (y, z, x)}[convention]
        return np.stack(order, axis=1)
    if l == 2:
        xy, yz, xz = s3 * x * y, s3 * y * z, s3 * x * z
        z2 = (3 * z * z - 1.0) / 2.0
        x2y2 = s3 * (x * x - y * y) / 2.0
        if convention == "e3nn":
            cols = (xz, xy, (3 * y * y - 1.0) / 2.0, yz, s3 * (z * z - x * x) / 2.0)
        elif convention == "openmx":
            cols = (z2, x2y2, xy, xz, yz)
        else:
            cols = (xy, yz, z2, xz, x2y2)
        return np.stack(cols, axis=1)
    raise NotImplementedError(
        f"orbital conversion is implemented for l ≤ 2 (s, p, d); got l = {l} in convention {convention!r}"
    )


@lru_cache(maxsize=None)
def conversion_matrix(convention: str, l: int) -> np.ndarray:
    """Orthogonal ``U`` (2l+1, 2l+1) with ``f_e3nn = U f_convention`` for one shell.

    Parameters
    ----------
    convention
        One of :data:`CONVENTIONS`.
    l
        Angular momentum (0, 1 or 2).
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown orbital convention {convention!r}; expected one of {CONVENTIONS}")
    if convention == "e3nn":
        return np.eye(2 * l + 1)
    points = np.random.default_rng(1234).normal(size=(64, 3))
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    f_e3nn = _cartesian_functions("e3nn", l, points)
    f_other = _cartesian_functions(convention, l, points)
    # f_e3nn (P, n) = f_other (P, n) @ U^T
    ut, *_ = np.linalg.lstsq(f_other, f_e3nn, rcond=None)
    u = ut.T
    # snap to the exact values (0, ±1/2, ±√3/2, ±1) so that permutations convert blocks bit-exactly
    exact = np.array([0.0, 0.5, np.sqrt(3.0) / 2.0, 1.0])
    nearest = exact[np.argmin(np.abs(np.abs(u)[..., None] - exact), axis=-1)]
    if np.allclose(np.abs(u), nearest, atol=1e-10):
        u = np.sign(u) * nearest
    if not np.allclose(u @ u.T, np.eye(2 * l + 1), atol=1e-10):  # pragma: no cover - definitions fixed
        raise RuntimeError(f"conversion matrix for {convention!r} l={l} is not orthogonal")
    return u


def _shells_matrix(convention: str, shells: Sequence[Shell]) -> np.ndarray:
    mats = []
    for shell in shells:
        if shell == "pz":
            mats.append(np.eye(1))
        else:
            mats.append(conversion_matrix(convention, int(shell)))
    n = sum(m.shape[0] for m in mats)
    out = np.zeros((n, n))
    o = 0
    for m in mats:
        out[o : o + m.shape[0], o : o + m.shape[0]] = m
        o += m.shape[0]
    return out


def block_to_e3nn(
    block: np.ndarray, shells_i: Sequence[Shell], shells_j: Sequence[Shell], convention: str
) -> np.ndarray:
    """Convert a block ``H_ij`` (n_i, n_j) or a stack (B, n_i, n_j) from ``convention`` to e3nn order."""
    ui = _shells_matrix(convention, shells_i)
    uj = _shells_matrix(convention, shells_j)
    return ui @ block @ uj.T


def block_from_e3nn(
    block: np.ndarray, shells_i: Sequence[Shell], shells_j: Sequence[Shell], convention: str
) -> np.ndarray:
    """Inverse of :func:`block_to_e3nn`."""
    ui = _shells_matrix(convention, shells_i)
    uj = _shells_matrix(convention, shells_j)
    return ui.T @ block @ uj


@dataclass(frozen=True)
class OrbitalBasis:
    """Orbital shells per element, components in e3nn order.

    Parameters
    ----------
    shells
        ``{atomic number: (shell, ...)}``; a shell is ``l`` (int) or ``"pz"``.

    Examples
    --------
    >>> OrbitalBasis.from_dict({"C": [0, 1]}).norb(6)
    4
    """

    shells: Mapping[int, tuple[Shell, ...]]

    @classmethod
    def from_dict(cls, spec: Mapping[Union[str, int], Sequence[Shell]]) -> "OrbitalBasis":
        """Build from ``{symbol or Z: [shells]}``; validates every shell."""
        out: dict[int, tuple[Shell, ...]] = {}
        for key, shells in spec.items():
            z = _to_number(key)
            shells = tuple(s if s == "pz" else int(s) for s in shells)
            for s in shells:
                shell_size(s)
            if not shells:
                raise ValueError(f"element {chemical_symbols[z]} has an empty orbital basis")
            out[z] = shells
        return cls(shells=out)

    def to_dict(self) -> dict[str, list[Shell]]:
        """``{symbol: [shells]}``, JSON-serialisable."""
        return {chemical_symbols[z]: list(s) for z, s in sorted(self.shells.items())}

    def shells_of(self, z: int) -> tuple[Shell, ...]:
        """The shells of element ``z``; clear error for elements outside the basis."""
        try:
            return self.shells[int(z)]
        except KeyError:
            known = ", ".join(chemical_symbols[k] for k in sorted(self.shells))
            raise ValueError(
                f"element {chemical_symbols[int(z)]} is not in the orbital basis (known: {known})"
            ) from None

    def norb(self, z: int) -> int:
        """Number of orbitals of element ``z``."""
        return sum(shell_size(s) for s in self.shells_of(z))

    def norb_per_atom(self, numbers: Sequence[int]) -> np.ndarray:
        """Orbitals per atom, shape (N,), int64."""
        table = {z: self.norb(z) for z in self.shells}
        try:
            return np.array([table[int(z)] for z in numbers], dtype=np.int64)
        except KeyError as exc:
            self.shells_of(int(exc.args[0]))
            raise

    @property
    def max_norb(self) -> int:
        """Largest number of orbitals of any element."""
        return max(self.norb(z) for z in self.shells)

    @property
    def equivariant(self) -> bool:
        """True when every shell is a full ``l`` shell (no ``"pz"``)."""
        return all(s != "pz" for shells in self.shells.values() for s in shells)


def _to_number(key: Union[str, int]) -> int:
    if isinstance(key, (int, np.integer)):
        if not 0 < int(key) < len(chemical_symbols):
            raise ValueError(f"unknown atomic number {key!r}")
        return int(key)
    if key not in atomic_numbers:
        raise ValueError(f"unknown element symbol {key!r}")
    return atomic_numbers[key]
