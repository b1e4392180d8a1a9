r"""Per-configuration electronic observables: band unfolding, band energies, Fermi velocity, gaps, A(k, E).

Every function here takes the tight-binding Hamiltonian of *one* configuration (pristine or thermally
displaced supercell, :class:`~mlepi_ase.tb.TBHamiltonian` with an orthogonal basis) and returns numbers
in eV, Å, 1/Å; :func:`evaluate_configuration` bundles them into the ``dict`` the Monte Carlo averager
(:mod:`mlepi_ase.averaging`) stores per sample.

Band unfolding (orthogonal local basis)
---------------------------------------
Let the primitive cell have lattice vectors ``a_m`` (rows of ``A_p``) and the supercell ``A_s = M A_p``
(rows; ``M`` an integer matrix, ``n_c = |det M|`` primitive cells per supercell; this is ASE's
``make_supercell(P)`` convention with ``M = P``, and ``M = S^T`` for a phonopy ``supercell_matrix`` S).
A primitive wave vector ``k`` (reduced coordinates of the primitive reciprocal lattice) folds onto the
supercell wave vector ``K = M k`` (reduced coordinates of the supercell reciprocal lattice), because
``k·R_s = 2π k·(n M) = 2π (M k)·n`` for every supercell translation ``R_s = n A_s``.

Each supercell orbital ``o`` (atom ``i``, orbital ``α``) belongs to the *orbital class* ``(p, α)`` of the
primitive atom ``p`` of which atom ``i`` is a lattice translate in the undisplaced reference
supercell: ``τ_i = τ_p + T_i``.  A supercell eigenstate in the lattice gauge of :mod:`mlepi_ase.tb`,

    |ψ_nK⟩ = N_s^{-1/2} Σ_{R_s} e^{iK·R_s} Σ_o c_{o,n} |φ_o(r − τ_o − R_s)⟩,

is projected on the primitive Bloch sums of the same (orthonormal) orbitals,

    |k, pα⟩ = N_p^{-1/2} Σ_T e^{ik·(τ_p + T)} |φ_pα(r − τ_p − T)⟩,   N_p = n_c N_s.

Every primitive-lattice orbital is exactly one supercell orbital ``o`` in one supercell ``R_s``
(``τ_p + T = τ_o + R_s``), hence

    ⟨k, pα | ψ_nK⟩ = (N_p N_s)^{-1/2} Σ_{R_s} e^{i(K−k)·R_s} Σ_{o ∈ (p,α)} e^{−ik·τ_o} c_{o,n}
                   = n_c^{-1/2} Σ_{o ∈ (p,α)} e^{−ik·τ_o} c_{o,n}        if M k ≡ K (mod 1), else 0

(the lattice sum gives ``N_s`` when ``k`` folds onto ``K`` and vanishes otherwise), and the spectral
weight (Popescu & Zunger, PRB 85, 085201 (2012); Ku, Berlijn & Lee, PRL 104, 216401
(2010), written for an orthogonal tight-binding basis) is

    W_n(k) = Σ_{p,α} |⟨k, pα | ψ_nK⟩|² = (1/n_c) Σ_{p,α} | Σ_{o ∈ (p,α)} e^{−ik·τ_o} c_{o,n} |².

Sum rules (tested): the ``n_c`` primitive ``k`` that fold onto one ``K`` give orthonormal Bloch sums
spanning the supercell space at ``K``, so ``Σ_{k→K} W_n(k) = 1`` for every state; and completeness of
the supercell states gives ``Σ_n W_n(k) = n_orb,prim`` (the number of primitive orbitals) at every k.
For an undisplaced supercell ``W_n(k)`` is 1 on the states that are primitive Bloch states at ``k`` and
0 otherwise (within a degenerate group only the summed weight is defined).

Displaced configurations keep the *reference* mapping: the phases use the lattice site ``τ_o`` of the
undisplaced reference supercell, in the periodic image that the Hamiltonian's (possibly re-wrapped)
atom position belongs to — ``τ_o = r_o − u_o`` with ``u_o`` the minimum-image displacement from the
reference — so wrapping an atom across the cell boundary does not change any weight.  The orbitals move
with their atoms; this is the usual choice for unfolding thermally displaced supercells
(Zacharias & Giustino, PRR 2, 013357 (2020)).

Band energies from the unfolded spectrum (partition + peak definition)
---------------------------------------------------------------------
At a primitive ``k`` the spectral weight of all supercell states adds up to ``n_orb,prim``, one unit per
primitive band.  Sort the states by energy and lay their weights end to end on the interval
``[0, n_orb,prim]``; band ``b`` (0-based, ascending) owns the unit interval ``[b, b + 1]``, i.e. the share

    w_nb = |[C_{n−1}, C_n] ∩ [b, b + 1]|,   C_n = Σ_{m ≤ n} W_m(k)      (Σ_n w_nb = 1)

of every state.  The band energy is the peak of the band's share broadened by a Gaussian of width Δ
(``smoothing``, default 0.1 eV), found by the mean-shift iteration

    E ← Σ_n w_nb g_n E_n / Σ_n w_nb g_n,   g_n = exp(−(E_n − E)² / 2Δ²),

started from the share's weighted median.  For a pristine supercell every share sits at one energy and
this is exactly the primitive band energy, whatever the degeneracies and the arbitrary mixing of
degenerate eigenvectors.  For a displaced configuration, where a band's weight is spread over many
supercell states and degeneracies split, it is the quasiparticle peak of that band, insensitive to the
small far-away tails of weight that disorder spreads over the whole spectrum (those tails move the plain
first moment a lot: in a 6×6 AB bilayer (p_z model) rattled with σ = 0.01 Å per component, the first
moment of the lower dimer band at K moves by 14 meV, its peak by 2 meV).  ``smoothing=None`` gives the plain first moment ``Σ_n w_nb E_n``.  The
Gaussian-weighted spread about the peak is returned as a width.  Two bands degenerate in the primitive
cell (the low-energy bilayer bands at K) split one peak into a lower and an upper half, so their energies
differ by about the disorder broadening.

With an energy ``window`` (needed when only states near an energy were computed, e.g. by shift-invert
for large cells), only states inside the window are used and their total weight is shared among
``n_bands`` bands (the rounded total unless given); a warning is raised when the total deviates from an
integer by more than 0.25, i.e. when the window cuts through a band's spectral weight.
Picking instead "the n states of largest weight" fails already for pristine supercells whenever a
degenerate supercell level mixes Bloch states of several folded k (weights 0.5/0.5, 1/3 each, …), and
jumps between states for displaced ones, so it is not offered.

Fermi velocity of monolayer and AB bilayer graphene
---------------------------------------------------
Near the Dirac point K the monolayer bands are ``E = E_0 ± ħv q`` and the AB (Bernal) bilayer's four
π bands are (McCann & Koshino, Rep. Prog. Phys. 76, 056503 (2013), γ3 = γ4 = 0)

    E = E_0 ± ½ [ √(γ1² + 4ħ²v²q²) ∓ γ1 ],

i.e. from the bottom: ``E_0 − ½(√ + γ1)``, ``E_0 − ½(√ − γ1)``, ``E_0 + ½(√ − γ1)``, ``E_0 + ½(√ + γ1)``;
at q = 0 the dimer states sit at ``E_0 ± γ1`` (so ``γ1`` here is half the dimer splitting, ``|γ1(K)|``
of the Bloch-summed dimer hopping, ≈ 0.338 eV for the embedded models).  :func:`fermi_velocity` takes
the unfolded band energies (partition + peak definition) of the bands around the Fermi level at
``k = K + q (cos φ, sin φ)`` for a few ``|q|`` (1/Å, Cartesian, 2π included) and in-plane directions φ,
plus K itself, and fits ``(v, γ1, E_0)`` (monolayer: ``(v, E_0)``) by least squares
(:func:`scipy.optimize.curve_fit`); the standard errors are the square roots of the diagonal of the
covariance, scaled by the residual variance.  Trigonal warping (γ3) makes the bands depend on
``cos 3φ``; directions in pairs ``φ, φ + 60°`` (the default: six directions 60° apart) cancel it to
first order.  ``v`` is reported in eV·Å (ħv) and in 10⁶ m/s.

Gap, spectral function
----------------------
:func:`band_gap` is the (indirect and direct) gap between the highest occupied and lowest unoccupied
eigenvalue over the k-points given, ``max(0, ·)`` — zero for a semimetal; the default filling is half
the orbitals (spin-degenerate), right for the embedded carbon models (4 electrons in s, p; 1 in p_z).
:func:`spectral_function` is ``A(k, E) = Σ_n W_n(k) (η/π) / ((E − E_n)² + η²)`` (1/eV; integrates to
the summed weight, ``n_orb,prim`` with all states).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

import numpy as np
import scipy.sparse as sp
from ase import Atoms
from ase import units as ase_units

from .tb import HamiltonianCalculator, TBHamiltonian, special_path

__all__ = [
    "HBAR_EVS",
    "UnfoldingMap",
    "UnfoldedSpectrum",
    "unfold",
    "partition_bands",
    "band_energies",
    "primitive_kpoint",
    "FermiVelocityFit",
    "fermi_velocity",
    "bilayer_bands_model",
    "band_gap",
    "spectral_function",
    "plot_spectral_function",
    "ObservableSpec",
    "evaluate_hamiltonian",
    "evaluate_configuration",
    "velocity_to_si",
]

HBAR_EVS = ase_units._hbar / ase_units._e
"""ħ in eV·s."""


def velocity_to_si(v_eva: float | np.ndarray) -> float | np.ndarray:
    """Convert ħv in eV·Å to v in 10⁶ m/s."""
    return np.asarray(v_eva) * 1e-10 / HBAR_EVS / 1e6


# ---------------------------------------------------------------------------------------------
# supercell -> primitive map
# ---------------------------------------------------------------------------------------------
@dataclass
class UnfoldingMap:
    """Map of a reference (undisplaced) supercell onto its primitive cell.

    Build it with :meth:`from_structures`.

    Attributes
    ----------
    primitive_cell : numpy.ndarray, shape (3, 3), float64, Å
        Primitive lattice vectors ``A_p`` (rows).
    primitive_positions : numpy.ndarray, shape (P, 3), float64, Å
    primitive_numbers : numpy.ndarray, shape (P,), int64
    supercell_cell : numpy.ndarray, shape (3, 3), float64, Å
        Supercell lattice vectors ``A_s = M A_p`` (rows).
    matrix : numpy.ndarray, shape (3, 3), int64
        ``M`` (ASE convention, rows); a primitive k (reduced) folds onto ``K = M k``.
    reference_positions : numpy.ndarray, shape (N, 3), float64, Å
        Undisplaced supercell positions.
    numbers : numpy.ndarray, shape (N,), int64
    primitive_index : numpy.ndarray, shape (N,), int64
        Primitive atom ``p`` of which supercell atom ``i`` is a lattice translate.
    primitive_layers : numpy.ndarray or None, shape (P,), int64
        Layer index of the primitive atoms when known.
    """

    primitive_cell: np.ndarray
    primitive_positions: np.ndarray
    primitive_numbers: np.ndarray
    supercell_cell: np.ndarray
    matrix: np.ndarray
    reference_positions: np.ndarray
    numbers: np.ndarray
    primitive_index: np.ndarray
    primitive_layers: np.ndarray | None = None
    primitive_info: dict = field(default_factory=dict)

    @property
    def n_cells(self) -> int:
        """Number of primitive cells in the supercell, ``|det M|``."""
        return int(round(abs(np.linalg.det(self.matrix))))

    @property
    def n_atoms(self) -> int:
        """Supercell atoms N."""
        return len(self.numbers)

    def primitive_atoms(self) -> Atoms:
        """The primitive cell as ``ase.Atoms`` (layer array and info kept)."""
        atoms = Atoms(numbers=self.primitive_numbers, positions=self.primitive_positions, cell=self.primitive_cell, pbc=True)
        if self.primitive_layers is not None:
            atoms.set_array("layer", np.asarray(self.primitive_layers, dtype=np.int64))
        atoms.info.update(self.primitive_info)
        return atoms

    def fold(self, kpts: np.ndarray) -> np.ndarray:
        """Supercell k ``K = M k`` (reduced) of primitive reduced k-points, shape (n_k, 3)."""
        k = np.atleast_2d(np.asarray(kpts, dtype=np.float64))
        return k @ self.matrix.T

    def cartesian_to_reduced(self, k_cart: np.ndarray) -> np.ndarray:
        """Primitive reduced coordinates of Cartesian k (1/Å, 2π included), shape (..., 3)."""
        return np.asarray(k_cart, dtype=np.float64) @ self.primitive_cell.T / (2.0 * np.pi)

    def reduced_to_cartesian(self, k_red: np.ndarray) -> np.ndarray:
        """Cartesian k (1/Å, 2π included) of primitive reduced k, shape (..., 3)."""
        return 2.0 * np.pi * np.asarray(k_red, dtype=np.float64) @ np.linalg.inv(self.primitive_cell).T

    @classmethod
    def from_structures(cls, primitive: Atoms, supercell: Atoms, tol: float = 1e-3) -> "UnfoldingMap":
        """Find ``M`` and the atom map for a supercell of ``primitive`` (``atoms.repeat``, ``make_supercell``).

        Parameters
        ----------
        primitive
            Primitive cell.
        supercell
            The *undisplaced* reference supercell (the map of displaced configurations is taken from it).
        tol
            Tolerance on integer matrix entries and on fractional coordinates (primitive units).

        Raises
        ------
        ValueError
            If the supercell lattice is not an integer combination of the primitive one, an atom is no
            lattice translate of a primitive atom of the same element, or the atom count is not
            ``n_cells`` per primitive atom.
        """
        a_p = np.asarray(primitive.cell, dtype=np.float64)
        a_s = np.asarray(supercell.cell, dtype=np.float64)
        if abs(np.linalg.det(a_p)) < 1e-9 or abs(np.linalg.det(a_s)) < 1e-9:
            raise ValueError("primitive and supercell need non-singular 3D cells (include the vacuum axis)")
        mf = a_s @ np.linalg.inv(a_p)
        m = np.rint(mf)
        if np.abs(mf - m).max() > tol:
            raise ValueError(
                f"the supercell cell is not an integer combination of the primitive cell (M = {np.round(mf, 4).tolist()})"
            )
        m = m.astype(np.int64)
        n_cells = int(round(abs(np.linalg.det(m))))
        if n_cells == 0:
            raise ValueError("singular supercell matrix")
        pnum = primitive.get_atomic_numbers()
        snum = supercell.get_atomic_numbers()
        if len(supercell) != n_cells * len(primitive):
            raise ValueError(
                f"the supercell has {len(supercell)} atoms, expected {n_cells} × {len(primitive)} for |det M| = {n_cells}"
            )
        f_s = supercell.get_positions() @ np.linalg.inv(a_p)
        f_p = primitive.get_positions() @ np.linalg.inv(a_p)
        diff = f_s[:, None, :] - f_p[None, :, :]
        dev = np.abs(diff - np.rint(diff)).max(axis=2)
        dev = np.where(snum[:, None] == pnum[None, :], dev, np.inf)
        p_index = np.argmin(dev, axis=1)
        worst = dev[np.arange(len(snum)), p_index]
        if np.any(worst > tol):
            bad = int(np.argmax(worst))
            raise ValueError(
                f"supercell atom {bad} ({supercell.get_chemical_symbols()[bad]}) is not a lattice translate of any "
                "primitive atom of the same element; pass the undisplaced reference supercell"
            )
        # each primitive atom must appear once per primitive cell of the supercell
        counts = np.bincount(p_index, minlength=len(primitive))
        if np.any(counts != n_cells):
            raise ValueError(f"primitive atoms appear {counts.tolist()} times in the supercell, expected {n_cells} each")
        translations = np.rint(diff[np.arange(len(snum)), p_index]).astype(np.int64)
        # distinct translations modulo the supercell lattice
        red = translations @ np.linalg.inv(m.astype(np.float64))
        red = np.rint((red - np.floor(red + 1e-9)) * 1e6).astype(np.int64)
        for p in range(len(primitive)):
            keys = {tuple(r) for r in red[p_index == p]}
            if len(keys) != n_cells:
                raise ValueError(f"primitive atom {p} has duplicate images in the supercell (atoms on top of each other?)")
        layers = np.asarray(primitive.arrays["layer"], dtype=np.int64) if "layer" in primitive.arrays else None
        info = {k: v for k, v in primitive.info.items() if isinstance(v, (str, int, float))}
        return cls(
            primitive_cell=a_p.copy(),
            primitive_positions=primitive.get_positions(),
            primitive_numbers=pnum.astype(np.int64),
            supercell_cell=a_s.copy(),
            matrix=m,
            reference_positions=supercell.get_positions(),
            numbers=snum.astype(np.int64),
            primitive_index=p_index.astype(np.int64),
            primitive_layers=layers,
            primitive_info=info,
        )


def primitive_kpoint(unfolding: UnfoldingMap, k: str | Sequence[float]) -> np.ndarray:
    """Reduced primitive k-point from a special-point letter (``"G"``/``"Γ"``, ``"K"``, ``"M"``) or coordinates.

    Returns
    -------
    numpy.ndarray, shape (3,), float64
    """
    if isinstance(k, str):
        name = "G" if k in ("Γ", "Gamma", "G") else k
        points = special_path(unfolding.primitive_cell, "GMKG", 3).special_points
        if name not in points:
            raise ValueError(f"unknown special point {k!r}; known: {sorted(points)}")
        return np.asarray(points[name], dtype=np.float64)
    arr = np.asarray(k, dtype=np.float64)
    if arr.shape != (3,):
        raise ValueError(f"a k-point must be a letter or 3 reduced coordinates, got shape {arr.shape}")
    return arr


# ---------------------------------------------------------------------------------------------
# unfolding
# ---------------------------------------------------------------------------------------------
@dataclass
class UnfoldedSpectrum:
    """Supercell states and their spectral weights at primitive k-points.

    Attributes
    ----------
    kpts : numpy.ndarray, shape (n_k, 3), float64
        Primitive reduced k.
    supercell_kpts : numpy.ndarray, shape (n_k, 3), float64
        ``K = M k`` folded into [0, 1).
    energies : numpy.ndarray, shape (n_k, n_states), float64, eV
        Supercell eigenvalues at ``K`` (ascending).
    weights : numpy.ndarray, shape (n_k, n_states), float64
        ``W_n(k)`` in [0, 1].
    complete : bool
        True when all supercell states were computed (dense), so ``Σ_n W_n(k) = n_orb,prim``.
    n_primitive_orbitals : int
    n_cells : int
    """

    kpts: np.ndarray
    supercell_kpts: np.ndarray
    energies: np.ndarray
    weights: np.ndarray
    complete: bool
    n_primitive_orbitals: int
    n_cells: int


def _orbital_classes(h: TBHamiltonian, unfolding: UnfoldingMap, max_displacement: float) -> tuple[np.ndarray, np.ndarray, int]:
    """Class index (n_orb,), primitive-fractional reference site of every orbital (n_orb, 3), class count."""
    if not h.is_orthogonal:
        raise ValueError("unfolding here is derived for an orthogonal basis; this Hamiltonian has an overlap")
    if h.n_atoms != unfolding.n_atoms:
        raise ValueError(f"the Hamiltonian has {h.n_atoms} atoms, the unfolding map {unfolding.n_atoms}")
    if not np.array_equal(h.numbers, unfolding.numbers):
        raise ValueError("the Hamiltonian's atoms differ in element or order from the unfolding map's reference supercell")
    if np.abs(h.cell - unfolding.supercell_cell).max() > 1e-6:
        raise ValueError("the Hamiltonian's cell differs from the reference supercell cell (strained or different cell?)")
    if h.layers is not None and unfolding.primitive_layers is not None:
        expected = unfolding.primitive_layers[unfolding.primitive_index]
        if not np.array_equal(np.asarray(h.layers), expected):
            bad = int(np.nonzero(np.asarray(h.layers) != expected)[0][0])
            raise ValueError(
                f"atom {bad} is in layer {int(h.layers[bad])} of the Hamiltonian but its primitive atom is in layer "
                f"{int(expected[bad])}; wrong 'layer' array on the configuration?"
            )
    inv_s = np.linalg.inv(unfolding.supercell_cell)
    du = (h.positions - unfolding.reference_positions) @ inv_s
    du -= np.rint(du)
    u = du @ unfolding.supercell_cell
    umax = float(np.linalg.norm(u, axis=1).max(initial=0.0))
    if umax > max_displacement:
        raise ValueError(
            f"an atom is {umax:.3f} Å from its reference site (> max_displacement={max_displacement} Å); "
            "atom order or reference supercell mismatch?"
        )
    sites = h.positions - u  # reference site in the image the Hamiltonian uses
    frac = sites @ np.linalg.inv(unfolding.primitive_cell)
    norb_p = h.basis.norb_per_atom(unfolding.primitive_numbers)
    if np.any(norb_p[unfolding.primitive_index] != h.norb_per_atom):
        raise ValueError("orbital counts of supercell atoms and their primitive atoms differ")
    poff = np.concatenate([[0], np.cumsum(norb_p)])
    atom_of_orb = np.repeat(np.arange(h.n_atoms), h.norb_per_atom)
    alpha = np.arange(h.n_orbitals) - h.offsets[atom_of_orb]
    cls = poff[unfolding.primitive_index[atom_of_orb]] + alpha
    return cls, frac[atom_of_orb], int(poff[-1])


def unfold(
    h: TBHamiltonian,
    unfolding: UnfoldingMap,
    kpts: np.ndarray | Sequence[Sequence[float]],
    *,
    sigma: float | None = None,
    n_states: int | None = None,
    max_displacement: float = 1.0,
) -> UnfoldedSpectrum:
    """Spectral weights ``W_n(k)`` of supercell states at primitive k (see the module docstring).

    k-points that fold onto the same supercell ``K`` share one diagonalisation.

    Parameters
    ----------
    h
        Supercell Hamiltonian (orthogonal basis) of the reference supercell or a displaced copy of it.
    unfolding
        Map from :meth:`UnfoldingMap.from_structures`.
    kpts
        Primitive reduced k, shape (n_k, 3) or (3,).
    sigma, n_states
        If both given, only the ``n_states`` states nearest ``sigma`` (eV) are computed with
        :meth:`TBHamiltonian.eigsh_near` (large cells); otherwise dense ``eigh`` (all states).
    max_displacement
        Largest accepted distance (Å) of an atom from its reference site.

    Returns
    -------
    UnfoldedSpectrum
    """
    k = np.atleast_2d(np.asarray(kpts, dtype=np.float64))
    if k.ndim != 2 or k.shape[1] != 3:
        raise ValueError(f"kpts must have shape (n_k, 3), got {np.shape(kpts)}")
    if (sigma is None) != (n_states is None):
        raise ValueError("give both sigma and n_states for the sparse solver, or neither for dense eigh")
    cls, frac, n_class = _orbital_classes(h, unfolding, max_displacement)
    big_k = unfolding.fold(k)
    big_k = big_k - np.floor(big_k + 1e-9)
    keys = np.rint(big_k * 1e8).astype(np.int64) % 100000000
    n_orb = h.n_orbitals
    ns = n_orb if sigma is None else int(n_states)
    energies = np.empty((len(k), ns))
    weights = np.empty((len(k), ns))
    cols = np.arange(n_orb)
    groups: dict[tuple, list[int]] = {}
    for i, key in enumerate(map(tuple, keys)):
        groups.setdefault(key, []).append(i)
    for idx in groups.values():
        kk = big_k[idx[0]]
        if sigma is None:
            e, c = h.eigh(kk, return_vectors=True)
            e, c = e[0], c[0]
        else:
            e, c = h.eigsh_near(kk, sigma, n_states=ns, return_vectors=True)
        for i in idx:
            phase = np.exp(-2j * np.pi * (frac @ k[i]))
            proj = sp.csr_matrix((phase, (cls, cols)), shape=(n_class, n_orb)) @ c
            energies[i] = e
            weights[i] = (np.abs(proj) ** 2).sum(axis=0) / unfolding.n_cells
    return UnfoldedSpectrum(
        kpts=k,
        supercell_kpts=big_k,
        energies=energies,
        weights=weights,
        complete=sigma is None,
        n_primitive_orbitals=n_class,
        n_cells=unfolding.n_cells,
    )


# ---------------------------------------------------------------------------------------------
# band energies
# ---------------------------------------------------------------------------------------------
def partition_bands(
    energies: np.ndarray, weights: np.ndarray, n_bands: int, smoothing: float | None = 0.1
) -> tuple[np.ndarray, np.ndarray]:
    """Partition-definition band energies of one k-point (see the module docstring).

    Parameters
    ----------
    energies, weights : numpy.ndarray, shape (n,)
        States (eV) and their spectral weights at one primitive k.
    n_bands
        Number of unit intervals the total weight is divided into (total is rescaled to ``n_bands``).
    smoothing
        Gaussian width Δ (eV) of the peak search; None gives the plain centroid of each band's share.

    Returns
    -------
    energies : numpy.ndarray, shape (n_bands,), eV
        Peak (or centroid) energy of every band.
    widths : numpy.ndarray, shape (n_bands,), eV
        Standard deviation of each band's share about it (Gaussian-weighted when ``smoothing``).
    """
    e = np.asarray(energies, dtype=np.float64)
    w = np.clip(np.asarray(weights, dtype=np.float64), 0.0, None)
    if e.shape != w.shape or e.ndim != 1:
        raise ValueError("energies and weights must be 1D arrays of equal length")
    total = w.sum()
    if n_bands < 1 or total <= 0:
        raise ValueError(f"need n_bands ≥ 1 and positive total weight (got {n_bands}, {total:.3g})")
    if smoothing is not None and not smoothing > 0:
        raise ValueError(f"smoothing must be a positive width in eV or None, got {smoothing!r}")
    order = np.argsort(e, kind="stable")
    e, w = e[order], w[order]
    c = np.concatenate([[0.0], np.cumsum(w) * (n_bands / total)])
    c[-1] = n_bands
    b = np.arange(n_bands, dtype=np.float64)
    share = np.clip(np.minimum(c[1:, None], b[None, :] + 1) - np.maximum(c[:-1, None], b[None, :]), 0.0, None)
    if smoothing is None:
        kernel = share
        centre = (kernel * e[:, None]).sum(axis=0) / kernel.sum(axis=0)
    else:
        # start at each share's weighted median (insensitive to far tails), then mean-shift to the peak
        centre = e[np.minimum(np.searchsorted(c[1:], b + 0.5), len(e) - 1)]
        for _ in range(500):
            kernel = share * np.exp(-0.5 * ((e[:, None] - centre[None, :]) / smoothing) ** 2)
            new = (kernel * e[:, None]).sum(axis=0) / kernel.sum(axis=0)
            done = np.abs(new - centre).max() < 1e-12
            centre = new
            if done:
                break
        kernel = share * np.exp(-0.5 * ((e[:, None] - centre[None, :]) / smoothing) ** 2)
    norm = kernel.sum(axis=0)
    width = np.sqrt(np.clip((kernel * (e[:, None] - centre) ** 2).sum(axis=0) / norm, 0.0, None))
    return centre, width


def band_energies(
    spectrum: UnfoldedSpectrum,
    bands: Sequence[int] | None = None,
    *,
    window: tuple[float, float] | None = None,
    n_bands: int | None = None,
    smoothing: float | None = 0.1,
    return_widths: bool = False,
):
    """Primitive band energies at every k of an unfolded spectrum.

    Parameters
    ----------
    spectrum
        From :func:`unfold`.
    bands
        Indices (0-based, ascending energy) of the bands to return among the partitioned ones; None = all.
    window
        ``(E_min, E_max)`` eV: use only the states inside; required when ``spectrum`` is incomplete (sparse
        solver), in which case ``None`` means all computed states.  Without a window all states are used
        and there are exactly ``n_orb,prim`` bands.
    n_bands
        Bands in the window (default: the rounded total weight inside it).
    smoothing
        Gaussian width Δ (eV) of the peak search (default 0.1 eV); None = plain centroids (first moments).
    return_widths
        Also return the widths of the bands' shares (see :func:`partition_bands`).

    Returns
    -------
    energies : numpy.ndarray, shape (n_k, n_selected), float64, eV
    widths : numpy.ndarray, shape (n_k, n_selected), float64, eV (with ``return_widths``)
    """
    n_k = len(spectrum.kpts)
    out_e, out_w = [], []
    for i in range(n_k):
        e, w = spectrum.energies[i], spectrum.weights[i]
        if window is not None:
            lo, hi = window
            if not lo < hi:
                raise ValueError(f"window must be (E_min, E_max) with E_min < E_max, got {window}")
            m = (e >= lo) & (e <= hi)
            e, w = e[m], w[m]
        if window is None and spectrum.complete:
            nb = spectrum.n_primitive_orbitals if n_bands is None else int(n_bands)
        else:
            total = w.sum()
            nb = int(round(total)) if n_bands is None else int(n_bands)
            if abs(total - round(total)) > 0.25 or (n_bands is not None and abs(total - n_bands) > 0.25):
                warnings.warn(
                    f"spectral weight {total:.3f} in the energy window at k = {np.round(spectrum.kpts[i], 4).tolist()} "
                    f"is not close to {nb} bands; the window cuts through bands",
                    RuntimeWarning,
                    stacklevel=2,
                )
            if nb < 1:
                raise ValueError(f"no band's weight in the window at k = {spectrum.kpts[i].tolist()}")
        cen, wid = partition_bands(e, w, nb, smoothing)
        sel = slice(None) if bands is None else np.asarray(bands, dtype=np.int64)
        if bands is not None and (sel.min() < -nb or sel.max() >= nb):
            raise ValueError(f"band indices {list(bands)} out of range for {nb} bands")
        out_e.append(cen[sel])
        out_w.append(wid[sel])
    energies = np.array(out_e)
    return (energies, np.array(out_w)) if return_widths else energies


# ---------------------------------------------------------------------------------------------
# Fermi velocity
# ---------------------------------------------------------------------------------------------
_BILAYER_S = np.array([-1.0, -1.0, 1.0, 1.0])
_BILAYER_T = np.array([1.0, -1.0, -1.0, 1.0])


def bilayer_bands_model(q: np.ndarray, v: float, gamma1: float, e0: float = 0.0) -> np.ndarray:
    """The four AB-bilayer bands ``E_0 ± ½[√(γ1² + 4v²q²) ∓ γ1]`` (ascending), shape (len(q), 4), eV.

    Parameters
    ----------
    q : array_like, shape (n,)
        ``|k − K|`` (1/Å).
    v
        ħv (eV·Å).
    gamma1
        eV.
    """
    q = np.asarray(q, dtype=np.float64)[:, None]
    root = np.sqrt(gamma1**2 + 4.0 * v**2 * q**2)
    return e0 + _BILAYER_S * 0.5 * (root + _BILAYER_T * gamma1)


def _bilayer_fit_fn(x, v, gamma1, e0):
    b = x[0].astype(np.int64)
    q = x[1]
    return e0 + _BILAYER_S[b] * 0.5 * (np.sqrt(gamma1**2 + 4.0 * v**2 * q**2) + _BILAYER_T[b] * gamma1)


def _monolayer_fit_fn(x, v, e0):
    b = x[0].astype(np.int64)
    return e0 + np.where(b == 0, -1.0, 1.0) * v * x[1]


@dataclass
class FermiVelocityFit:
    """Result of :func:`fermi_velocity`.

    Attributes
    ----------
    model : str
        ``"monolayer"`` or ``"bilayer"``.
    v, v_stderr : float
        ħv and its standard error (eV·Å).
    gamma1, gamma1_stderr : float
        Bilayer γ1 (eV); NaN for the monolayer.
    e0, e0_stderr : float
        Band-centre energy ``E_0`` (eV).
    q : numpy.ndarray, shape (n_points,)
        ``|k − K|`` of the fitted points (1/Å).
    directions : numpy.ndarray, shape (n_points,)
        In-plane direction φ (degrees) of each point (0 at K).
    energies : numpy.ndarray, shape (n_points, n_fit_bands)
        Unfolded band energies that were fitted (eV).
    rms_residual : float
        Root-mean-square residual of the fit (eV).
    """

    model: str
    v: float
    v_stderr: float
    gamma1: float
    gamma1_stderr: float
    e0: float
    e0_stderr: float
    q: np.ndarray
    directions: np.ndarray
    energies: np.ndarray
    rms_residual: float

    @property
    def v_si(self) -> float:
        """v in 10⁶ m/s."""
        return float(velocity_to_si(self.v))

    @property
    def v_si_stderr(self) -> float:
        """Standard error of v in 10⁶ m/s."""
        return float(velocity_to_si(self.v_stderr))

    def as_dict(self) -> dict[str, float]:
        """Scalars for the averager: ``v_F`` (eV·Å), ``v_F_si`` (10⁶ m/s), ``gamma1``, ``E_0`` and stderrs."""
        return {
            "v_F": self.v,
            "v_F_stderr": self.v_stderr,
            "v_F_si": self.v_si,
            "v_F_si_stderr": self.v_si_stderr,
            "gamma1": self.gamma1,
            "gamma1_stderr": self.gamma1_stderr,
            "E_0": self.e0,
            "E_0_stderr": self.e0_stderr,
            "fit_rms": self.rms_residual,
        }


def _detect_model(unfolding: UnfoldingMap) -> str:
    layers = unfolding.primitive_layers
    if layers is None:
        raise ValueError("the primitive cell has no 'layer' array; pass model='monolayer' or 'bilayer'")
    n_layers = len(np.unique(layers))
    if n_layers == 1:
        return "monolayer"
    if n_layers == 2:
        if unfolding.primitive_info.get("stacking", "AB") != "AB":
            raise ValueError(
                f"the bilayer fit model is for AB stacking, the primitive cell is {unfolding.primitive_info['stacking']}"
            )
        return "bilayer"
    raise ValueError(f"no Fermi-velocity model for {n_layers} layers")


def fermi_velocity(
    h: TBHamiltonian,
    unfolding: UnfoldingMap,
    model: Literal["auto", "monolayer", "bilayer"] = "auto",
    *,
    q: Sequence[float] = (0.01, 0.02, 0.03, 0.04),
    directions: Sequence[float] = (0.0, 60.0, 120.0, 180.0, 240.0, 300.0),
    k0: str | Sequence[float] = "K",
    n_occupied: int | None = None,
    include_k0: bool = True,
    sigma: float | None = None,
    n_states: int | None = None,
    smoothing: float | None = 0.1,
    spectrum: UnfoldedSpectrum | None = None,
) -> FermiVelocityFit:
    """Fit the Dirac (monolayer) or AB-bilayer band model to the unfolded bands near K.

    Parameters
    ----------
    h, unfolding
        Supercell Hamiltonian and its map (see :func:`unfold`).
    model
        ``"monolayer"``, ``"bilayer"`` or ``"auto"`` (from the primitive cell's layer count).
    q
        Distances ``|k − K|`` (1/Å, Cartesian with 2π), all > 0.
    directions
        In-plane directions φ (degrees from x); pairs φ, φ + 60° cancel trigonal warping to first order.
    k0
        The Dirac point: a special-point letter or reduced primitive coordinates.
    n_occupied
        Occupied primitive bands (default half the primitive orbitals, right for the carbon models); the
        fitted bands are ``n_occupied − 2 … n_occupied + 1`` (bilayer) or ``n_occupied − 1, n_occupied``.
    include_k0
        Also fit the energies at K itself (pins γ1 and E_0).
    sigma, n_states
        Sparse shift-invert solver for large cells (see :func:`unfold`); the ``n_states`` states must
        hold the fitted bands' spectral weight (a warning says when they do not).
    smoothing
        Peak-search width of the band energies (eV, see :func:`band_energies`).
    spectrum
        Precomputed :func:`unfold` result at exactly the fit k-points (K first when ``include_k0``,
        then direction by direction, |q| fastest); used by :func:`evaluate_hamiltonian`.

    Returns
    -------
    FermiVelocityFit
    """
    from scipy.optimize import curve_fit

    if model == "auto":
        model = _detect_model(unfolding)
    if model not in ("monolayer", "bilayer"):
        raise ValueError(f"model must be 'auto', 'monolayer' or 'bilayer', got {model!r}")
    kpts, qs, phis = _fermi_kpoints(unfolding, q, directions, k0, include_k0)
    if spectrum is None:
        spectrum = unfold(h, unfolding, kpts, sigma=sigma, n_states=n_states)
    elif not np.allclose(spectrum.kpts, kpts):
        raise ValueError("the precomputed spectrum is not at the Fermi-velocity k-points")
    n_fit = 4 if model == "bilayer" else 2
    if spectrum.complete:
        n_prim = spectrum.n_primitive_orbitals
        n_occ = n_prim // 2 if n_occupied is None else int(n_occupied)
        bands = np.arange(n_occ - n_fit // 2, n_occ + n_fit // 2)
        if bands.min() < 0 or bands.max() >= n_prim:
            raise ValueError(f"n_occupied={n_occ} leaves no {n_fit} bands around the Fermi level among {n_prim}")
        energies = band_energies(spectrum, bands, smoothing=smoothing)
    else:
        energies = band_energies(spectrum, None, n_bands=n_fit, smoothing=smoothing)
    x = np.stack([np.tile(np.arange(n_fit), len(qs)), np.repeat(qs, n_fit)]).astype(np.float64)
    y = energies.ravel()
    at_k0 = qs == 0
    e_k0 = energies[at_k0].mean(axis=0) if at_k0.any() else energies[np.argmin(qs)]
    e0_guess = float(e_k0.mean())
    if model == "bilayer":
        g_guess = max(0.5 * float(e_k0[3] - e_k0[0]), 1e-3)
        far = np.argmax(qs)
        d_out = 0.5 * float(energies[far, 3] - energies[far, 0])
        v_guess = np.sqrt(max((2 * d_out - g_guess) ** 2 - g_guess**2, 1e-6)) / (2 * qs[far]) if qs[far] > 0 else 5.0
        p0 = (v_guess, g_guess, e0_guess)
        popt, pcov = curve_fit(_bilayer_fit_fn, x, y, p0=p0, bounds=([0.0, 0.0, -np.inf], [np.inf, np.inf, np.inf]))
        fit = _bilayer_fit_fn(x, *popt)
    else:
        far = np.argmax(qs)
        v_guess = 0.5 * float(energies[far, 1] - energies[far, 0]) / qs[far] if qs[far] > 0 else 5.0
        popt, pcov = curve_fit(_monolayer_fit_fn, x, y, p0=(max(v_guess, 1e-3), e0_guess), bounds=([0.0, -np.inf], [np.inf, np.inf]))
        fit = _monolayer_fit_fn(x, *popt)
    err = np.sqrt(np.clip(np.diag(pcov), 0.0, None))
    if model == "bilayer":
        v, g, e0 = popt
        dv, dg, de0 = err
    else:
        (v, e0), (dv, de0) = popt, err
        g, dg = np.nan, np.nan
    return FermiVelocityFit(
        model=model,
        v=float(v),
        v_stderr=float(dv),
        gamma1=float(g),
        gamma1_stderr=float(dg),
        e0=float(e0),
        e0_stderr=float(de0),
        q=qs,
        directions=phis,
        energies=energies,
        rms_residual=float(np.sqrt(np.mean((y - fit) ** 2))),
    )


def _fermi_kpoints(unfolding, q, directions, k0, include_k0):
    qv = np.asarray(q, dtype=np.float64).ravel()
    phis = np.asarray(directions, dtype=np.float64).ravel()
    if len(qv) == 0 or np.any(qv <= 0) or not np.all(np.isfinite(qv)):
        raise ValueError(f"q must be positive distances from K in 1/Å, got {list(qv)}")
    if len(phis) == 0:
        raise ValueError("need at least one direction")
    kk = primitive_kpoint(unfolding, k0)
    rad = np.radians(phis)
    dirs = np.stack([np.cos(rad), np.sin(rad), np.zeros_like(rad)], axis=1)
    dq = (dirs[:, None, :] * qv[None, :, None]).reshape(-1, 3)
    qs = np.tile(qv, len(phis))
    ph = np.repeat(phis, len(qv))
    kpts = kk + unfolding.cartesian_to_reduced(dq)
    if include_k0:
        kpts = np.vstack([kk[None, :], kpts])
        qs = np.concatenate([[0.0], qs])
        ph = np.concatenate([[0.0], ph])
    return kpts, qs, ph


# ---------------------------------------------------------------------------------------------
# gap and spectral function
# ---------------------------------------------------------------------------------------------
def band_gap(energies: np.ndarray, n_occupied: int | None = None) -> dict[str, float]:
    """Band gap from eigenvalues at a set of k-points.

    Parameters
    ----------
    energies : numpy.ndarray, shape (n_k, n_bands)
        Eigenvalues (eV), ascending per k (all bands from the bottom).
    n_occupied
        Occupied bands per k (spin-degenerate); default half the bands (carbon models).

    Returns
    -------
    dict
        ``gap`` (indirect, ``max(0, CBM − VBM)``), ``direct_gap`` (``max(0, min_k(E_c − E_v))``),
        ``vbm``, ``cbm`` (eV), ``k_vbm``, ``k_cbm`` (indices into the k-points).
    """
    e = np.atleast_2d(np.asarray(energies, dtype=np.float64))
    n = e.shape[1] // 2 if n_occupied is None else int(n_occupied)
    if not 0 < n < e.shape[1]:
        raise ValueError(f"n_occupied must be between 1 and {e.shape[1] - 1}, got {n}")
    ev, ec = e[:, n - 1], e[:, n]
    return {
        "gap": float(max(0.0, ec.min() - ev.max())),
        "direct_gap": float(max(0.0, (ec - ev).min())),
        "vbm": float(ev.max()),
        "cbm": float(ec.min()),
        "k_vbm": int(np.argmax(ev)),
        "k_cbm": int(np.argmin(ec)),
    }


def spectral_function(
    spectrum: UnfoldedSpectrum, energies: np.ndarray | Sequence[float], broadening: float = 0.02
) -> np.ndarray:
    """Lorentzian-broadened unfolded spectral function ``A(k, E)``.

    Parameters
    ----------
    spectrum
        From :func:`unfold` (the path's k-points).
    energies : array_like, shape (n_E,)
        Energy grid (eV).
    broadening
        Lorentzian half-width η (eV), > 0.

    Returns
    -------
    numpy.ndarray, shape (n_k, n_E), float64, 1/eV
    """
    if not broadening > 0:
        raise ValueError(f"broadening must be positive (eV), got {broadening!r}")
    grid = np.asarray(energies, dtype=np.float64).ravel()
    out = np.empty((len(spectrum.kpts), len(grid)))
    for i in range(len(spectrum.kpts)):
        d = grid[None, :] - spectrum.energies[i][:, None]
        out[i] = (spectrum.weights[i][:, None] * (broadening / np.pi) / (d * d + broadening**2)).sum(axis=0)
    return out


def plot_spectral_function(
    spectral: np.ndarray,
    x: np.ndarray,
    energies: np.ndarray,
    filename: str | os.PathLike,
    *,
    reference_energy: float = 0.0,
    ticks: tuple[Sequence[float], Sequence[str]] | None = None,
    title: str | None = None,
    overlay: np.ndarray | None = None,
    xlabel: str = "k",
) -> None:
    """Save ``A(k, E)`` as a colour map (PNG).

    Parameters
    ----------
    spectral : numpy.ndarray, shape (n_k, n_E)
    x : numpy.ndarray, shape (n_k,)
        Horizontal coordinate (e.g. ``path.get_linear_kpoint_axis()[0]``).
    energies : numpy.ndarray, shape (n_E,), eV
    filename
        PNG path.
    reference_energy
        Subtracted from the energies (eV).
    ticks
        ``(positions, labels)`` of special points.
    overlay : numpy.ndarray, shape (n_k, n_bands), optional
        Bands (eV) drawn on top, e.g. the pristine primitive bands.
    """
    from .plotting import new_figure

    a = np.asarray(spectral, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    e = np.asarray(energies, dtype=np.float64) - reference_energy
    if a.shape != (len(x), len(e)):
        raise ValueError(f"spectral must have shape ({len(x)}, {len(e)}), got {a.shape}")
    fig, ax = new_figure(figsize=(5, 4))
    mesh = ax.pcolormesh(x, e, a.T, shading="auto", cmap="inferno")
    fig.colorbar(mesh, ax=ax, label="A(k, E) (1/eV)")
    if overlay is not None:
        ax.plot(x, np.asarray(overlay) - reference_energy, "--", color="c", lw=0.7)
    if ticks is not None:
        pos, lab = ticks
        for p in pos:
            ax.axvline(p, color="w", lw=0.5)
        ax.set_xticks(list(pos), ["Γ" if s == "G" else s for s in lab])
    else:
        ax.set_xlabel(xlabel)
    ax.set_xlim(x[0], x[-1])
    ax.set_ylim(e[0], e[-1])
    ax.set_ylabel("E − E_ref (eV)")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(filename, dpi=150)


# ---------------------------------------------------------------------------------------------
# one configuration -> dict of observables
# ---------------------------------------------------------------------------------------------
@dataclass
class ObservableSpec:
    """What to compute for every configuration (picklable; passed to workers).

    Attributes
    ----------
    unfolding : UnfoldingMap
        Map of the reference supercell onto the primitive cell.
    kpoints : tuple of str
        Special points at which band energies are stored as ``E_<name>`` (the bands around the Fermi
        level: ``n_occupied − n_bands_near … n_occupied + n_bands_near − 1``) with their partition widths
        ``width_<name>`` and the direct gap ``gap_<name>`` between bands ``n_occupied − 1`` and
        ``n_occupied`` there.
    n_bands_near : int
        Bands on each side of the Fermi level stored per k-point (2 = the four π bands of a bilayer).
    fermi_velocity : str or None
        ``"auto"``, ``"monolayer"``, ``"bilayer"`` or None (skip).
    q, directions : tuple of float
        Fit points of :func:`fermi_velocity` (1/Å, degrees).
    gap : bool
        Store the supercell ``gap``/``direct_gap`` over all supercell k diagonalised.
    spectral_kpts : numpy.ndarray or None, shape (n_k, 3)
        Primitive reduced k of a path for ``A_kE`` (n_k, n_E).
    spectral_energies : numpy.ndarray or None, shape (n_E,)
        Absolute energies (eV) of the ``A_kE`` grid.
    broadening : float
        Lorentzian η (eV).
    smoothing : float or None
        Peak-search width of the band energies (eV, see :func:`band_energies`).
    n_occupied : int or None
        Occupied primitive bands (default half the primitive orbitals).
    sigma, n_states : float, int or None
        Sparse shift-invert solver for large cells (see :func:`unfold`).
    """

    unfolding: UnfoldingMap
    kpoints: tuple[str, ...] = ("G", "K", "M")
    n_bands_near: int = 2
    fermi_velocity: str | None = "auto"
    q: tuple[float, ...] = (0.01, 0.02, 0.03, 0.04)
    directions: tuple[float, ...] = (0.0, 60.0, 120.0, 180.0, 240.0, 300.0)
    gap: bool = True
    spectral_kpts: np.ndarray | None = None
    spectral_energies: np.ndarray | None = None
    broadening: float = 0.02
    smoothing: float | None = 0.1
    n_occupied: int | None = None
    sigma: float | None = None
    n_states: int | None = None

    def __post_init__(self) -> None:
        if (self.spectral_kpts is None) != (self.spectral_energies is None):
            raise ValueError("give both spectral_kpts and spectral_energies, or neither")
        if self.spectral_kpts is not None:
            self.spectral_kpts = np.atleast_2d(np.asarray(self.spectral_kpts, dtype=np.float64))
            self.spectral_energies = np.asarray(self.spectral_energies, dtype=np.float64).ravel()
        if self.n_bands_near < 1:
            raise ValueError(f"n_bands_near must be ≥ 1, got {self.n_bands_near}")


def evaluate_hamiltonian(h: TBHamiltonian, spec: ObservableSpec) -> dict[str, Any]:
    """All observables of ``spec`` for one supercell Hamiltonian.

    All k-points (named, Fermi-velocity fit, spectral path) are unfolded in one call, so k-points
    folding onto the same supercell K share a diagonalisation.

    Returns
    -------
    dict
        ``E_<k>``, ``width_<k>`` (n_selected,) eV and ``gap_<k>`` (eV) per named k; the
        :meth:`FermiVelocityFit.as_dict` keys (``v_F`` eV·Å, ``v_F_si`` 10⁶ m/s, ``gamma1``, ``E_0``,
        stderrs, ``fit_rms``); ``gap``, ``direct_gap`` (eV); ``A_kE`` (n_k, n_E) 1/eV.
    """
    u = spec.unfolding
    named = [primitive_kpoint(u, k) for k in spec.kpoints]
    parts: list[np.ndarray] = [np.array(named).reshape(-1, 3)]
    fv_model = None
    if spec.fermi_velocity is not None:
        fv_model = _detect_model(u) if spec.fermi_velocity == "auto" else spec.fermi_velocity
        fk, _, _ = _fermi_kpoints(u, spec.q, spec.directions, "K", True)
        parts.append(fk)
    if spec.spectral_kpts is not None:
        parts.append(spec.spectral_kpts)
    sizes = [len(p) for p in parts]
    spectrum = unfold(h, u, np.vstack(parts), sigma=spec.sigma, n_states=spec.n_states)

    def piece(j: int) -> UnfoldedSpectrum:
        a = sum(sizes[:j])
        s = slice(a, a + sizes[j])
        return UnfoldedSpectrum(
            spectrum.kpts[s], spectrum.supercell_kpts[s], spectrum.energies[s], spectrum.weights[s],
            spectrum.complete, spectrum.n_primitive_orbitals, spectrum.n_cells,
        )

    out: dict[str, Any] = {}
    n_prim = spectrum.n_primitive_orbitals
    n_occ = n_prim // 2 if spec.n_occupied is None else int(spec.n_occupied)
    nb = spec.n_bands_near
    if named:
        sub = piece(0)
        if spectrum.complete:
            bands = np.arange(max(n_occ - nb, 0), min(n_occ + nb, n_prim))
            e, w = band_energies(sub, bands, smoothing=spec.smoothing, return_widths=True)
            lo = n_occ - 1 - bands[0]
        else:
            e, w = band_energies(sub, None, n_bands=2 * nb, smoothing=spec.smoothing, return_widths=True)
            lo = nb - 1
        for name, ek, wk in zip(spec.kpoints, e, w):
            key = "G" if name in ("Γ", "Gamma") else name
            out[f"E_{key}"] = ek
            out[f"width_{key}"] = wk
            out[f"gap_{key}"] = float(ek[lo + 1] - ek[lo])
    j = 1
    if fv_model is not None:
        fit = fermi_velocity(h, u, fv_model, q=spec.q, directions=spec.directions, n_occupied=spec.n_occupied,
                             smoothing=spec.smoothing, spectrum=piece(j))
        out.update(fit.as_dict())
        j += 1
    if spec.spectral_kpts is not None:
        out["A_kE"] = spectral_function(piece(j), spec.spectral_energies, spec.broadening)
    if spec.gap and spectrum.complete:
        out.update({k: v for k, v in band_gap(spectrum.energies, n_occ * spectrum.n_cells).items()
                    if k in ("gap", "direct_gap")})
    return out


def evaluate_configuration(atoms: Atoms, calculator: HamiltonianCalculator, spec: ObservableSpec) -> dict[str, Any]:
    """Observables of one configuration: ``calculator.get_hamiltonian(atoms)`` → :func:`evaluate_hamiltonian`.

    A picklable top-level function: use ``functools.partial(evaluate_configuration, calculator=calc,
    spec=spec)`` as the per-sample function of :func:`mlepi_ase.averaging.run_samples`.

    Parameters
    ----------
    atoms
        Configuration (a displaced copy of ``spec.unfolding``'s reference supercell, same atom order).
    calculator
        Any Hamiltonian calculator (reference Slater–Koster, HedgeNet-Electron, …).
    spec
        What to compute.

    Returns
    -------
    dict of str → float or numpy.ndarray
    """
    return evaluate_hamiltonian(calculator.get_hamiltonian(atoms), spec)

