"""Harmonic phonons of any ASE calculator through phonopy.

Physics
-------
In the harmonic approximation the energy of a crystal whose atoms (supercell index ``i``, Cartesian
``α``) are displaced by ``u_iα`` from equilibrium is ``E = E0 + ½ Σ Φ_iα,jβ u_iα u_jβ``, with the
force constants ``Φ_iα,jβ = ∂²E/∂u_iα∂u_jβ = −∂F_jβ/∂u_iα`` (eV/Å²).  phonopy computes them by finite
differences: each symmetry-inequivalent atom of the supercell is displaced by a small distance ``h``
(by default ``±h``, central differences, so the error is O(h²)), an ASE calculator gives the forces of
every displaced supercell, and phonopy's solver spreads the result over all atoms with the space group.

Translational invariance (moving the whole crystal costs nothing) gives the *acoustic sum rule*
``Σ_j Φ_iα,jβ = 0``; finite differences and non-conservative numerics violate it slightly, so by default
the force constants are symmetrised (translation and index permutation, phonopy's
``symmetrize_force_constants``) and the violation before symmetrisation is kept in
:attr:`PhononResult.info`.

The dynamical matrix of the primitive cell (phonopy's convention, phases with atomic positions ``x``
in reduced coordinates of the primitive cell, ``q`` in reduced coordinates of its reciprocal cell)

    D_aα,bβ(q) = Σ_l Φ_aα,(bl)β / √(M_a M_b) · exp(2πi q·(x_bl − x_a))

has eigenvalues ``ω²`` whose square roots are the phonon frequencies; with ``Φ`` in eV/Å² and masses in
amu, ``ω/2π = √(eV/Å²/amu)/2π ≈ 15.633 THz × √λ``.  Imaginary frequencies (``λ < 0``) are returned as
negative numbers, as phonopy does, and reported (a warning and a list), never hidden.

Supercell Γ-point modes
-----------------------
The thermal sampler needs the normal modes of a *supercell* at its own Γ point.  Every q-point of the
primitive cell that is commensurate with a supercell (``exp(2πi q·L) = 1`` for all its lattice vectors
``L``) folds onto the supercell's Γ point, and the supercell dynamical matrix is the Fourier sum over
those ``N_q`` points,

    D^S_iα,jβ = (1/N_q) Σ_q Re[ D_{p(i)α,p(j)β}(q) · exp(−2πi q·(x_j − x_i)) ],

where ``p(i)`` is the primitive atom of supercell atom ``i``.  If all these q-points are commensurate with
the supercell in which the force constants were computed, ``D^S`` is exact (for the force-constant
supercell itself it equals ``Φ/√(M_i M_j)`` summed over periodic images); otherwise phonopy's
minimum-image interpolation of ``Φ`` enters, which :func:`supercell_modes` allows only on request.
``D^S`` is real symmetric, so its eigenvectors are real and orthonormal: column ``ν`` of
:attr:`SupercellModes.eigenvectors` (row index ``3 i + α``) is the *mass-weighted* polarisation ``e_ν``,
and the displacement of a mode coordinate ``x_ν`` (Å·√amu) is ``u_iα = e_iα,ν x_ν / √M_i``.

Eigenvectors are defined only up to a sign, and those of a degenerate eigenvalue (common in a symmetric
supercell) only up to an orthogonal rotation within their subspace; which basis LAPACK returns depends on
the library and its thread count.  Thermal samples drawn with a fixed seed would then differ between
machines.  :func:`canonical_mode_basis` therefore replaces every block ``E`` (3N×k) of (numerically)
degenerate eigenvectors by the orthonormal basis of the same subspace closest to a fixed reference
``R`` (3N×k, pseudo-random, the same everywhere): with the SVD ``EᵀR = U S Vᵀ`` it is ``E U Vᵀ``
(orthogonal Procrustes).  For any rotation ``Q`` of the block, ``(EQ)ᵀR = Qᵀ U S Vᵀ`` gives the same
``E U Vᵀ``, and for ``k = 1`` this is the sign that makes ``e·r > 0``.

Units: Å, eV, amu, THz (1 THz = 33.356 cm⁻¹).  Layer labels (``atoms.arrays["layer"]``) do not exist in
phonopy; this module keeps them by mapping every supercell atom to its unit-cell atom.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import yaml
from ase import Atoms
from ase.calculators.calculator import Calculator

from ._files import atomic_write, to_plain

__all__ = [
    "DEFAULT_DISTANCE",
    "DEFAULT_SYMPREC",
    "DEGENERACY_RTOL",
    "IMAGINARY_TOLERANCE",
    "THZ_TO_CM1",
    "ImaginaryModeWarning",
    "BandStructureData",
    "PhononResult",
    "SupercellModes",
    "ase_to_phonopy",
    "phonopy_to_ase",
    "supercell_layers",
    "relax_positions",
    "compute_force_constants",
    "load_phonons",
    "hexagonal_band_path",
    "supercell_modes",
    "canonical_mode_basis",
    "classify_layer_modes",
]

DEFAULT_DISTANCE = 0.01
"""Finite-displacement length (Å)."""
DEFAULT_SYMPREC = 1e-3
"""Symmetry tolerance (Å) handed to phonopy/spglib; keeps AB bilayer graphene P-3m1 (No. 164)."""
RESIDUAL_FORCE_WARNING = 1e-3
"""Residual forces (eV/Å) of the undisplaced supercell above which a warning says "relax first"."""
IMAGINARY_TOLERANCE = 0.01
"""Frequencies below ``-IMAGINARY_TOLERANCE`` THz are reported as imaginary."""
THZ_TO_CM1 = 1e12 / 2.99792458e10
"""Conversion factor THz → cm⁻¹ (≈ 33.356)."""

_METADATA_KEY = "mlepi_ase"


class ImaginaryModeWarning(UserWarning):
    """Imaginary phonon frequencies were found (dynamical instability or numerical noise)."""


# --------------------------------------------------------------------------------------------
# ASE <-> PhonopyAtoms
# --------------------------------------------------------------------------------------------
def ase_to_phonopy(atoms: Atoms) -> Any:
    """Convert an :class:`ase.Atoms` to :class:`phonopy.structure.atoms.PhonopyAtoms`.

    Symbols, cell, scaled positions and the atoms' masses (custom isotopes included) are kept.
    PhonopyAtoms has no free arrays: keep ``atoms.arrays["layer"]`` yourself and map it back with
    :func:`phonopy_to_ase` / :func:`supercell_layers`.

    Parameters
    ----------
    atoms
        Periodic structure with a non-singular cell (Å).

    Returns
    -------
    phonopy.structure.atoms.PhonopyAtoms

    Raises
    ------
    ValueError
        If ``atoms`` is empty or its cell is singular.
    """
    from phonopy.structure.atoms import PhonopyAtoms

    if len(atoms) == 0:
        raise ValueError("cannot convert an empty Atoms object to PhonopyAtoms")
    cell = np.asarray(atoms.cell[:], dtype=float)
    if abs(np.linalg.det(cell)) < 1e-9:
        raise ValueError(
            "phonopy needs a non-singular 3x3 cell; give layered structures a vacuum cell vector along z"
        )
    return PhonopyAtoms(
        symbols=atoms.get_chemical_symbols(),
        cell=cell,
        scaled_positions=atoms.get_scaled_positions(wrap=False),
        masses=atoms.get_masses(),
    )


def phonopy_to_ase(cell: Any, layer: np.ndarray | Sequence[int] | None = None) -> Atoms:
    """Convert a PhonopyAtoms (or Supercell/Primitive) to a periodic :class:`ase.Atoms`.

    Parameters
    ----------
    cell
        PhonopyAtoms-like object.
    layer
        Optional ``(N,)`` int layer index, stored as ``atoms.arrays["layer"]``.

    Returns
    -------
    ase.Atoms
        pbc in all directions, masses from ``cell.masses`` (amu).
    """
    atoms = Atoms(
        symbols=list(cell.symbols),
        cell=np.asarray(cell.cell, dtype=float),
        scaled_positions=np.asarray(cell.scaled_positions, dtype=float),
        pbc=True,
    )
    if cell.masses is not None:
        atoms.set_masses(np.asarray(cell.masses, dtype=float))
    if layer is not None:
        layer = np.asarray(layer, dtype=np.int64)
        if layer.shape != (len(atoms),):
            raise ValueError(f"layer must have shape ({len(atoms)},), got {layer.shape}")
        atoms.set_array("layer", layer)
    return atoms


def supercell_layers(unitcell_layers: np.ndarray | None, supercell: Any) -> np.ndarray | None:
    """Layer index of every atom of a phonopy ``Supercell`` from the unit cell's layers.

    Parameters
    ----------
    unitcell_layers
        ``(n_unit,)`` int, or None.
    supercell
        :class:`phonopy.structure.cells.Supercell` built from that unit cell (it carries ``s2u_map``,
        supercell → representative supercell atom, and ``u2u_map``, representative → unit-cell index).

    Returns
    -------
    numpy.ndarray, shape (N,), int64, or None
    """
    if unitcell_layers is None:
        return None
    u2u = supercell.u2u_map
    unit_index = np.array([u2u[s] for s in supercell.s2u_map], dtype=np.int64)
    return np.asarray(unitcell_layers, dtype=np.int64)[unit_index]


def _unitcell_layers(atoms: Atoms) -> np.ndarray | None:
    if "layer" in atoms.arrays:
        return np.asarray(atoms.arrays["layer"], dtype=np.int64).copy()
    return None


def _as_supercell_matrix(matrix: Any, name: str = "supercell_matrix") -> np.ndarray:
    """Validate a phonopy-convention supercell matrix: 3 ints, or a 3x3 int matrix with det > 0."""
    arr = np.asarray(matrix)
    if arr.shape == (3,):
        arr = np.diag(arr)
    if arr.shape != (3, 3):
        raise ValueError(f"{name} must be 3 integers or a 3x3 integer matrix, got shape {arr.shape}")
    if not np.all(np.isfinite(arr.astype(float))) or np.any(np.abs(arr - np.rint(arr)) > 1e-8):
        raise ValueError(f"{name} must contain integers, got {arr.tolist()}")
    arr = np.rint(arr).astype(np.int64)
    det = int(round(np.linalg.det(arr)))
    if det <= 0:
        raise ValueError(f"{name} must have a positive determinant, got det = {det} for {arr.tolist()}")
    return arr


# --------------------------------------------------------------------------------------------
# Data objects
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BandStructureData:
    """Phonon band structure along a path.

    Attributes
    ----------
    distances : numpy.ndarray, shape (n_q,), float64
        Cumulative path length (2π/Å, phonopy's reciprocal-length units without the 2π) of each q.
    frequencies : numpy.ndarray, shape (n_q, n_bands), float64
        Frequencies (THz); imaginary ones negative.
    qpoints : numpy.ndarray, shape (n_q, 3), float64
        q in reduced coordinates of the primitive reciprocal cell.
    labels : list of str
        High-symmetry labels, e.g. ``["Γ", "M", "K", "Γ"]``.
    label_distances : numpy.ndarray, shape (len(labels),), float64
        Path position of each label.
    """

    distances: np.ndarray
    frequencies: np.ndarray
    qpoints: np.ndarray
    labels: list[str]
    label_distances: np.ndarray

    def differences(self, reference: "BandStructureData") -> dict[str, Any]:
        """Frequency errors (THz) against ``reference`` on the same q-points, bands sorted at every q.

        Returns ``rms_THz``, ``max_abs_THz`` (floats) and ``rms_by_branch_THz`` (list, one per sorted band).
        """
        if self.frequencies.shape != reference.frequencies.shape or not np.allclose(self.qpoints, reference.qpoints):
            raise ValueError("the band structures are not on the same q-points")
        diff = np.sort(self.frequencies, axis=1) - np.sort(reference.frequencies, axis=1)
        return {"rms_THz": float(np.sqrt((diff ** 2).mean())), "max_abs_THz": float(np.abs(diff).max()),
                "rms_by_branch_THz": np.sqrt((diff ** 2).mean(axis=0)).tolist()}

    def imaginary(self, tolerance: float = IMAGINARY_TOLERANCE) -> list[tuple[np.ndarray, float]]:
        """``(q, frequency)`` of every band below ``-tolerance`` THz (lowest band per q)."""
        out = []
        for q, f in zip(self.qpoints, self.frequencies):
            if f.min() < -tolerance:
                out.append((q.copy(), float(f.min())))
        return out


@dataclass(frozen=True)
class SupercellModes:
    """Normal modes of a supercell at its Γ point (real, mass-weighted).

    Attributes
    ----------
    atoms : ase.Atoms
        Undisplaced supercell with N atoms (``arrays["layer"]`` when the unit cell had it).
    frequencies : numpy.ndarray, shape (3N,), float64
        ``ω_ν/2π`` in THz, ascending; imaginary modes are negative (``sign(λ)√|λ|``).
    eigenvectors : numpy.ndarray, shape (3N, 3N), float64
        Orthonormal mass-weighted eigenvectors of the supercell dynamical matrix; column ``ν`` is mode
        ``ν``, row ``3 i + α`` is atom ``i``, Cartesian ``α``.  Signs and degenerate subspaces in the
        canonical basis of :func:`canonical_mode_basis`.  Displacement ``u_iα = e_iα,ν x_ν / √M_i``.
    masses : numpy.ndarray, shape (N,), float64
        Atomic masses (amu).
    acoustic : numpy.ndarray, shape (3N,), bool
        The three modes spanning the uniform translations (largest projection on them).
    supercell_matrix : numpy.ndarray, shape (3, 3), int64
        Supercell matrix with respect to the unit cell (phonopy convention).
    qpoints : numpy.ndarray, shape (N_q, 3), float64
        Commensurate q-points (reduced coordinates of the primitive reciprocal cell) folded to Γ.
    primitive_index : numpy.ndarray, shape (N,), int64
        Primitive-cell atom of which each supercell atom is a lattice translate.
    interpolated : bool
        True if some q-points were not commensurate with the force-constant supercell.
    """

    atoms: Atoms
    frequencies: np.ndarray
    eigenvectors: np.ndarray
    masses: np.ndarray
    acoustic: np.ndarray
    supercell_matrix: np.ndarray
    qpoints: np.ndarray
    primitive_index: np.ndarray
    interpolated: bool = False

    def __post_init__(self) -> None:
        n = len(self.atoms)
        if self.frequencies.shape != (3 * n,):
            raise ValueError(f"frequencies must have shape ({3 * n},), got {self.frequencies.shape}")
        if self.eigenvectors.shape != (3 * n, 3 * n):
            raise ValueError(
                f"eigenvectors must have shape ({3 * n}, {3 * n}), got {self.eigenvectors.shape}"
            )
        if self.masses.shape != (n,) or np.any(self.masses <= 0):
            raise ValueError(f"masses must be ({n},) positive amu")
        if self.acoustic.shape != (3 * n,) or self.acoustic.dtype != bool:
            raise ValueError(f"acoustic must be a ({3 * n},) bool mask")
        if self.primitive_index.shape != (n,):
            raise ValueError(f"primitive_index must have shape ({n},)")

    @property
    def natoms(self) -> int:
        """Number of atoms N of the supercell."""
        return len(self.atoms)

    @property
    def nmodes(self) -> int:
        """Number of modes 3N."""
        return 3 * len(self.atoms)

    def imaginary(self, tolerance: float = IMAGINARY_TOLERANCE) -> np.ndarray:
        """Indices of non-acoustic modes with frequency below ``-tolerance`` THz, shape (k,), int."""
        return np.flatnonzero((self.frequencies < -tolerance) & ~self.acoustic)

    def displacements(self, amplitudes: np.ndarray) -> np.ndarray:
        """Cartesian displacements of mode amplitudes.

        Parameters
        ----------
        amplitudes
            ``(..., 3N)`` mode coordinates ``x_ν`` (Å·√amu).

        Returns
        -------
        numpy.ndarray, shape (..., N, 3), float64, Å
            ``u_iα = Σ_ν e_iα,ν x_ν / √M_i``.
        """
        x = np.asarray(amplitudes, dtype=float)
        if x.shape[-1] != self.nmodes:
            raise ValueError(f"amplitudes must end in {self.nmodes} modes, got shape {x.shape}")
        u = x @ self.eigenvectors.T
        u = u.reshape(x.shape[:-1] + (self.natoms, 3))
        return u / np.sqrt(self.masses)[:, None]


class PhononResult:
    """A phonopy calculation with force constants plus the layer labels phonopy cannot hold.

    Parameters
    ----------
    phonon
        :class:`phonopy.Phonopy` whose force constants are set.
    unitcell_layers
        ``(n_unit,)`` int layer index of the unit cell, or None.
    info
        Free-form numbers about how the force constants were made (kept in the yaml file).

    Raises
    ------
    ValueError
        If ``phonon`` has no force constants.
    """

    def __init__(
        self, phonon: Any, unitcell_layers: np.ndarray | None = None, info: dict | None = None
    ) -> None:
        if phonon.force_constants is None:
            raise ValueError(
                "the phonopy object has no force constants: compute them (compute_force_constants) or "
                "load a file that contains force constants or displacement forces"
            )
        self.phonopy = phonon
        n_unit = len(phonon.unitcell)
        if unitcell_layers is not None:
            unitcell_layers = np.asarray(unitcell_layers, dtype=np.int64)
            if unitcell_layers.shape != (n_unit,):
                raise ValueError(
                    f"unitcell_layers must have shape ({n_unit},), got {unitcell_layers.shape}"
                )
        self.unitcell_layers = unitcell_layers
        self.info: dict = dict(info or {})

    # -- structures -------------------------------------------------------------------------
    @property
    def unitcell(self) -> Atoms:
        """Unit cell as ASE Atoms (with ``layer`` when known)."""
        return phonopy_to_ase(self.phonopy.unitcell, self.unitcell_layers)

    @property
    def supercell(self) -> Atoms:
        """Force-constant supercell as ASE Atoms, in phonopy's atom order (with ``layer``)."""
        sc = self.phonopy.supercell
        return phonopy_to_ase(sc, supercell_layers(self.unitcell_layers, sc))

    @property
    def supercell_matrix(self) -> np.ndarray:
        """(3, 3) int supercell matrix of the force constants (phonopy convention)."""
        return np.asarray(self.phonopy.supercell_matrix, dtype=np.int64)

    @property
    def force_constants(self) -> np.ndarray:
        """Force constants (eV/Å²): compact ``(n_prim, N, 3, 3)`` or full ``(N, N, 3, 3)``."""
        return np.asarray(self.phonopy.force_constants)

    def full_force_constants(self) -> np.ndarray:
        """Force constants of the whole supercell, shape (N, N, 3, 3), float64, eV/Å²."""
        fc = self.force_constants
        if fc.shape[0] == fc.shape[1]:
            return fc.copy()
        from phonopy.harmonic.force_constants import compact_fc_to_full_fc

        return compact_fc_to_full_fc(self.phonopy.primitive, fc)

    def acoustic_sum_rule_residual(self) -> float:
        """``max |Σ_j Φ_iα,jβ|`` over rows of the force constants (eV/Å²); 0 for perfect ASR."""
        return float(np.abs(self.force_constants.sum(axis=1)).max())

    # -- phonons ----------------------------------------------------------------------------
    def frequencies_at(self, qpoints: np.ndarray) -> np.ndarray:
        """Frequencies (THz) at q-points, shape (n_q, 3 n_prim); q reduced, shape (n_q, 3)."""
        q = np.atleast_2d(np.asarray(qpoints, dtype=float))
        return np.array(self.phonopy.run_qpoints(q).frequencies, dtype=float)

    def modes_at(self, q: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
        """Frequencies (3n,) THz and eigenvectors (3n, 3n) complex (columns) at one q (reduced)."""
        qp = self.phonopy.run_qpoints([list(q)], with_eigenvectors=True)
        return np.array(qp.frequencies[0]), np.array(qp.eigenvectors[0])

    def gamma_mode_table(self) -> list[dict]:
        """Γ-point modes of the primitive cell with a layered-material label.

        Returns
        -------
        list of dict
            One entry per mode: ``frequency_THz``, ``frequency_cm1``, ``label`` (see
            :func:`classify_layer_modes`).

        Raises
        ------
        ValueError
            If the unit cell has no layer labels.
        """
        if self.unitcell_layers is None:
            raise ValueError("the unit cell has no layer labels; Γ modes cannot be classified by layer")
        prim = self.phonopy.primitive
        freqs, vecs = self.modes_at([0.0, 0.0, 0.0])
        layers = supercell_layers(self.unitcell_layers, self.phonopy.supercell)[prim.p2s_map]
        labels = classify_layer_modes(vecs, np.asarray(prim.masses), layers)
        return [
            {"frequency_THz": float(f), "frequency_cm1": float(f * THZ_TO_CM1), "label": lab}
            for f, lab in zip(freqs, labels)
        ]

    def band_structure(self, npoints: int = 101, path: Sequence[str] = ("Γ", "M", "K", "Γ")) -> BandStructureData:
        """Band structure along the hexagonal path (default Γ–M–K–Γ).

        Parameters
        ----------
        npoints
            q-points per segment (≥ 2).
        path
            Labels from :func:`hexagonal_band_path` (``Γ``, ``M``, ``K``).

        Returns
        -------
        BandStructureData

        Warns
        -----
        ImaginaryModeWarning
            If frequencies below ``-IMAGINARY_TOLERANCE`` THz appear.
        """
        from phonopy.phonon.band_structure import get_band_qpoints_and_path_connections

        if npoints < 2:
            raise ValueError(f"npoints must be >= 2, got {npoints}")
        points = hexagonal_band_path(np.asarray(self.phonopy.primitive.cell))
        try:
            ends = [points[label] for label in path]
        except KeyError as exc:
            raise ValueError(f"unknown high-symmetry label {exc}; known: {sorted(points)}") from None
        qpaths, connections = get_band_qpoints_and_path_connections([ends], npoints=npoints)
        self.phonopy.run_band_structure(qpaths, path_connections=connections, labels=list(path))
        bs = self.phonopy.band_structure
        distances = np.concatenate(bs.distances)
        label_d = [bs.distances[0][0]] + [d[-1] for d in bs.distances]
        data = BandStructureData(
            distances=distances,
            frequencies=np.concatenate(bs.frequencies),
            qpoints=np.concatenate(bs.qpoints),
            labels=list(path),
            label_distances=np.array(label_d),
        )
        imag = data.imaginary()
        if imag:
            worst = min(f for _, f in imag)
            warnings.warn(
                f"{len(imag)} of {len(distances)} band-path q-points have imaginary frequencies "
                f"(lowest {worst:.3f} THz)",
                ImaginaryModeWarning,
                stacklevel=2,
            )
        return data

    def dos(
        self, mesh: Sequence[int] = (36, 36, 1), sigma: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Total phonon DOS on a Γ-centred mesh.

        Parameters
        ----------
        mesh
            Mesh numbers (use 1 along the vacuum direction of layered cells).
        sigma
            Gaussian smearing (THz); None for the tetrahedron method.

        Returns
        -------
        frequencies : numpy.ndarray, shape (n,), THz
        dos : numpy.ndarray, shape (n,), states/THz per primitive cell
        """
        mesh = [int(m) for m in mesh]
        if len(mesh) != 3 or min(mesh) < 1:
            raise ValueError(f"mesh must be three positive integers, got {mesh}")
        self.phonopy.run_mesh(mesh, is_gamma_center=True)
        self.phonopy.run_total_dos(sigma=sigma)
        td = self.phonopy.total_dos
        return np.array(td.frequency_points), np.array(td.dos)

    def supercell_modes(
        self, supercell_matrix: Any = None, *, allow_interpolation: bool = False
    ) -> SupercellModes:
        """Γ-point modes of a supercell; see :func:`supercell_modes`."""
        return supercell_modes(self, supercell_matrix, allow_interpolation=allow_interpolation)

    # -- output -----------------------------------------------------------------------------
    def save(self, filename: str | os.PathLike = "phonopy_params.yaml") -> Path:
        """Write a ``phonopy_params.yaml``-style file with force constants (atomic write).

        phonopy's own ``save`` writes structures, displacements, forces and force constants; an extra
        top-level ``mlepi_ase`` block holds the unit-cell layer labels and :attr:`info` (phonopy ignores
        it when loading).

        Returns
        -------
        pathlib.Path
        """
        path = Path(filename)
        meta: dict[str, Any] = {"info": to_plain(self.info)}
        if self.unitcell_layers is not None:
            meta["unitcell_layers"] = [int(v) for v in self.unitcell_layers]

        def write(tmp: Path) -> None:
            self.phonopy.save(str(tmp), settings={"force_constants": True})
            with open(tmp, "a") as fh:
                fh.write("\n")
                yaml.safe_dump({_METADATA_KEY: meta}, fh, default_flow_style=None, sort_keys=False)

        atomic_write(path, write)
        return path

    def plot_bands(
        self,
        filename: str | os.PathLike,
        npoints: int = 101,
        with_dos: bool = True,
        dos_mesh: Sequence[int] = (36, 36, 1),
        title: str | None = None,
    ) -> Path:
        """Plot the Γ–M–K–Γ band structure (and DOS) to a PNG (matplotlib).

        Returns
        -------
        pathlib.Path
        """
        from .plotting import draw_phonon_bands, new_figure

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ImaginaryModeWarning)
            bands = self.band_structure(npoints=npoints)
        for w in caught:
            warnings.warn(w.message, w.category, stacklevel=2)
        if with_dos:
            fig, (ax, axd) = new_figure(
                1, 2, figsize=(7.0, 4.5), sharey=True, gridspec_kw={"width_ratios": [3, 1]}
            )
        else:
            fig, ax = new_figure(figsize=(5.5, 4.5))
        draw_phonon_bands(ax, [bands], [dict(color="C0", lw=1.0)])
        if title:
            ax.set_title(title)
        right = axd if with_dos else ax
        if with_dos:
            fr, dos = self.dos(mesh=dos_mesh)
            axd.plot(dos, fr, color="C1", lw=1.0)
            axd.set_xlabel("DOS (1/THz)")
            axd.set_xlim(left=0.0)
        sec = right.secondary_yaxis("right", functions=(lambda f: f * THZ_TO_CM1, lambda c: c / THZ_TO_CM1))
        sec.set_ylabel("Frequency (cm$^{-1}$)")
        fig.tight_layout()
        path = Path(filename)
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
        return path


# --------------------------------------------------------------------------------------------
# Force constants
# --------------------------------------------------------------------------------------------
def relax_positions(
    atoms: Atoms, calculator: Calculator, fmax: float = 1e-4, steps: int = 500
) -> Atoms:
    """Relax atomic positions at fixed cell (ASE BFGS) before finite-difference phonons.

    Harmonic phonons are defined at a force-free configuration; e.g. the REBO + Kolmogorov–Crespi
    AB bilayer at the builder's 3.35 Å spacing has 0.055 eV/Å residual forces.

    Parameters
    ----------
    atoms
        Structure (not modified).
    calculator
        ASE calculator.
    fmax
        Force convergence (eV/Å).
    steps
        Maximum optimiser steps.

    Returns
    -------
    ase.Atoms
        Relaxed copy without calculator; ``info["relax_max_force"]`` holds the final max |F| (eV/Å).

    Warns
    -----
    UserWarning
        If ``fmax`` is not reached within ``steps``.
    """
    from ase.optimize import BFGS

    if fmax <= 0 or steps < 0:
        raise ValueError(f"fmax must be > 0 and steps >= 0, got fmax={fmax}, steps={steps}")
    work = atoms.copy()
    work.calc = calculator
    BFGS(work, logfile=None).run(fmax=fmax, steps=steps)
    fmax_final = float(np.linalg.norm(work.get_forces(), axis=1).max())
    if fmax_final > fmax:
        warnings.warn(
            f"relaxation stopped after {steps} steps with max |F| = {fmax_final:.2e} eV/Å > {fmax}",
            stacklevel=2,
        )
    out = work.copy()
    out.calc = None
    out.info["relax_max_force"] = fmax_final
    return out


def compute_force_constants(
    unitcell: Atoms,
    calculator: Calculator,
    supercell_matrix: Any,
    *,
    distance: float = DEFAULT_DISTANCE,
    symprec: float = DEFAULT_SYMPREC,
    is_symmetry: bool = True,
    is_plusminus: bool | Literal["auto"] = True,
    primitive_matrix: Any = "P",
    symmetrize: bool = True,
    compact: bool = True,
    progress: bool = True,
) -> PhononResult:
    """Finite-difference force constants of ``unitcell`` with any ASE calculator.

    phonopy generates the symmetry-reduced displaced supercells (``generate_displacements``), the
    calculator gives their forces, and phonopy solves for the force constants
    (``produce_force_constants``).

    Parameters
    ----------
    unitcell
        Unit cell (Å); its ``layer`` array is passed on to every displaced supercell (force fields such
        as the reference REBO + Kolmogorov–Crespi need it).
    calculator
        Any ASE calculator giving ``forces`` (eV/Å).
    supercell_matrix
        Three integers or a 3x3 integer matrix (phonopy convention) with positive determinant.
    distance
        Displacement length (Å).
    symprec
        Symmetry tolerance (Å).
    is_symmetry
        Use the space group to reduce the displacements (default True).
    is_plusminus
        Displace by ``+h`` and ``−h`` (central differences, default True), or ``"auto"`` (phonopy's:
        ``−h`` only where symmetry does not generate it).
    primitive_matrix
        phonopy's primitive matrix; ``"P"`` (default) takes the unit cell as primitive.
    symmetrize
        Impose translational invariance and index permutation symmetry on the result (default True);
        the residual before that is kept in ``info["asr_residual_raw"]``.
    compact
        Store compact ``(n_prim, N, 3, 3)`` force constants (smaller files; default True).
    progress
        Show a tqdm bar over displaced supercells.

    Returns
    -------
    PhononResult

    Raises
    ------
    ValueError
        Bad supercell matrix, non-positive distance, or a calculator that returns forces of the wrong
        shape or non-finite values.

    Warns
    -----
    UserWarning
        If the undisplaced supercell has forces above ``RESIDUAL_FORCE_WARNING`` (not at equilibrium;
        see :func:`relax_positions`); the value is kept in ``info["max_residual_force"]``.

    Notes
    -----
    ``info`` records ``n_displacements``, ``distance``, ``symprec``, ``space_group``,
    ``max_force_drift`` (largest |Σ_i F_i| of a displaced supercell, eV/Å), ``max_residual_force``,
    ``asr_residual_raw`` (:meth:`PhononResult.acoustic_sum_rule_residual` before symmetrisation) and
    ``symmetrized``.
    """
    from phonopy import Phonopy
    from tqdm.auto import tqdm

    if not isinstance(unitcell, Atoms):
        raise TypeError(f"unitcell must be an ase.Atoms, got {type(unitcell).__name__}")
    smat = _as_supercell_matrix(supercell_matrix)
    if not np.isfinite(distance) or distance <= 0:
        raise ValueError(f"distance must be a positive length in Å, got {distance!r}")
    if not np.isfinite(symprec) or symprec <= 0:
        raise ValueError(f"symprec must be positive, got {symprec!r}")
    if calculator is None:
        raise ValueError("a calculator is required to compute forces")
    layers = _unitcell_layers(unitcell)
    phonon = Phonopy(
        ase_to_phonopy(unitcell),
        supercell_matrix=smat,
        primitive_matrix=primitive_matrix,
        symprec=symprec,
        is_symmetry=is_symmetry,
    )
    phonon.generate_displacements(distance=distance, is_plusminus=is_plusminus)
    sc_layers = supercell_layers(layers, phonon.supercell)
    cells = phonon.supercells_with_displacements
    n_atoms = len(phonon.supercell)
    perfect = phonopy_to_ase(phonon.supercell, sc_layers)
    perfect.calc = calculator
    residual = float(np.linalg.norm(perfect.get_forces(), axis=1).max())
    if residual > RESIDUAL_FORCE_WARNING:
        warnings.warn(
            f"the undisplaced supercell has residual forces up to {residual:.2e} eV/Å: the structure is "
            "not at equilibrium (relax it first, e.g. relax_positions)",
            stacklevel=2,
        )
    forces = []
    drift = 0.0
    for cell in tqdm(cells, desc="displacements", disable=not progress, leave=False):
        atoms = phonopy_to_ase(cell, sc_layers)
        atoms.calc = calculator
        f = np.asarray(atoms.get_forces(), dtype=float)
        if f.shape != (n_atoms, 3) or not np.all(np.isfinite(f)):
            raise ValueError(
                f"calculator returned forces of shape {f.shape} (expected ({n_atoms}, 3)) or non-finite values"
            )
        drift = max(drift, float(np.abs(f.sum(axis=0)).max()))
        forces.append(f)
    phonon.forces = np.array(forces)
    phonon.produce_force_constants(calculate_full_force_constants=not compact, show_drift=False)
    info: dict[str, Any] = {
        "n_displacements": len(cells),
        "distance": float(distance),
        "symprec": float(symprec),
        "is_symmetry": bool(is_symmetry),
        "space_group": phonon.symmetry.get_international_table(),
        "max_force_drift": drift,
        "max_residual_force": residual,
        "calculator": type(calculator).__name__,
    }
    result = PhononResult(phonon, layers, info)
    info["asr_residual_raw"] = result.acoustic_sum_rule_residual()
    if symmetrize:
        phonon.symmetrize_force_constants(show_drift=False)
    info["symmetrized"] = bool(symmetrize)
    result.info = info
    return result


def load_phonons(filename: str | os.PathLike, symprec: float | None = None) -> PhononResult:
    """Load a ``phonopy_params.yaml``-style file written by :meth:`PhononResult.save` (or phonopy).

    Force constants are taken from the file; if it has only displacements and forces, phonopy
    produces them.  Layer labels come from the ``mlepi_ase`` block, else they are detected with
    :func:`mlepi_ase.structures.get_layers` when possible.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If the file holds neither force constants nor forces.
    """
    import phonopy

    path = Path(filename)
    if not path.is_file():
        raise FileNotFoundError(f"phonopy yaml file not found: {path}")
    with open(path) as fh:
        raw = yaml.safe_load(fh)
    if not isinstance(raw, dict) or "unit_cell" not in raw:
        raise ValueError(f"{path} is not a phonopy yaml file (no 'unit_cell' block)")
    meta = raw.get(_METADATA_KEY) or {}
    info = dict(meta.get("info") or {})
    if symprec is None:
        symprec = float(info.get("symprec", DEFAULT_SYMPREC))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        phonon = phonopy.load(
            str(path), produce_fc=True, symmetrize_fc=False, is_compact_fc=True, symprec=symprec,
            log_level=0,
        )
    if phonon.force_constants is None:
        raise ValueError(f"{path} contains no force constants and no displacement forces")
    layers = meta.get("unitcell_layers")
    if layers is None:
        try:
            from .structures import get_layers

            layers = get_layers(phonopy_to_ase(phonon.unitcell))
        except Exception:  # noqa: BLE001  (layer labels are optional)
            layers = None
    return PhononResult(phonon, None if layers is None else np.asarray(layers), info)


# --------------------------------------------------------------------------------------------
# Band path
# --------------------------------------------------------------------------------------------
def hexagonal_band_path(cell: np.ndarray, tol: float = 1e-3) -> dict[str, np.ndarray]:
    """High-symmetry points Γ, M, K of a hexagonal cell in reduced reciprocal coordinates.

    The in-plane vectors ``a1``, ``a2`` must have equal length and an angle of 60° or 120°, and ``a3``
    must be perpendicular to them.  K is the point with ``|K| = 4π/(3a)`` (2π included), M the
    midpoint ``b1/2`` with ``|M| = 2π/(√3 a)``.

    Parameters
    ----------
    cell
        (3, 3) lattice vectors as rows (Å).

    Returns
    -------
    dict
        ``{"Γ": (0,0,0), "M": ..., "K": ...}`` in reduced coordinates of the reciprocal cell.

    Raises
    ------
    ValueError
        If the cell is not hexagonal in this sense.
    """
    cell = np.asarray(cell, dtype=float)
    a1, a2, a3 = cell
    la, lb = np.linalg.norm(a1), np.linalg.norm(a2)
    if abs(la - lb) > tol * la:
        raise ValueError(f"not a hexagonal cell: |a1| = {la:.5f} Å differs from |a2| = {lb:.5f} Å")
    cos = a1 @ a2 / (la * lb)
    if min(abs(cos - 0.5), abs(cos + 0.5)) > tol:
        raise ValueError(
            f"not a hexagonal cell: angle(a1, a2) = {np.degrees(np.arccos(cos)):.3f}°, need 60° or 120°"
        )
    if max(abs(a3 @ a1), abs(a3 @ a2)) > tol * la * np.linalg.norm(a3):
        raise ValueError("not a hexagonal cell: a3 is not perpendicular to a1 and a2")
    rec = 2 * np.pi * np.linalg.inv(cell).T
    k_len = 4 * np.pi / (3 * la)
    candidates = [np.array(v) for v in ((1 / 3, 1 / 3, 0), (2 / 3, 1 / 3, 0), (1 / 3, 2 / 3, 0), (2 / 3, -1 / 3, 0))]
    for k in candidates:
        if abs(np.linalg.norm(k @ rec) - k_len) < 1e-6 * k_len:
            break
    else:  # pragma: no cover  (unreachable for a valid hexagonal cell)
        raise ValueError("could not locate the K point")
    return {"Γ": np.zeros(3), "M": np.array([0.5, 0.0, 0.0]), "K": k}


# --------------------------------------------------------------------------------------------
# Supercell modes
# --------------------------------------------------------------------------------------------
def _map_to_primitive(
    positions: np.ndarray, prim_cell: np.ndarray, prim_positions: np.ndarray, tol: float = 1e-4
) -> tuple[np.ndarray, np.ndarray]:
    """Primitive atom index and reduced primitive coordinates of every supercell atom."""
    inv = np.linalg.inv(prim_cell)
    x = positions @ inv
    xp = prim_positions @ inv
    diff = x[:, None, :] - xp[None, :, :]
    dev = np.abs(diff - np.rint(diff)).max(axis=2)
    p = np.argmin(dev, axis=1)
    if np.any(dev[np.arange(len(x)), p] > tol):
        bad = int(np.argmax(dev[np.arange(len(x)), p]))
        raise ValueError(
            f"supercell atom {bad} is not a lattice translate of any primitive-cell atom; the supercell "
            "does not match the force constants' primitive cell"
        )
    return p, x


def supercell_modes(
    result: PhononResult, supercell_matrix: Any = None, *, allow_interpolation: bool = False
) -> SupercellModes:
    """Real Γ-point normal modes of a supercell from the force constants.

    Supported: any supercell of the unit cell (phonopy-convention matrix, positive determinant) whose
    commensurate q-points are commensurate with the force-constant supercell — the force-constant
    supercell itself (default) or any supercell it contains (e.g. 3×3 from 6×6 force constants).
    Supercells with other q-points need phonopy's Fourier interpolation of the force constants and are
    accepted only with ``allow_interpolation=True`` (``SupercellModes.interpolated`` is then True).

    The supercell dynamical matrix is assembled from phonopy's dynamical matrices at the commensurate
    q-points (see the module docstring) and diagonalised with ``numpy.linalg.eigh``; cost O((3N)³).
    The eigenvectors are put into the solver-independent basis of :func:`canonical_mode_basis`, so the
    same force constants give the same modes (and seeded samples) on any machine and thread count.

    Parameters
    ----------
    result
        Force constants.
    supercell_matrix
        Supercell with respect to the unit cell; None = the force-constant supercell.
    allow_interpolation
        Accept q-points not commensurate with the force-constant supercell.

    Returns
    -------
    SupercellModes

    Raises
    ------
    ValueError
        Bad or mismatched supercell matrix.

    Warns
    -----
    ImaginaryModeWarning
        If non-acoustic modes have frequencies below ``-IMAGINARY_TOLERANCE`` THz.
    """
    from phonopy.harmonic.dynmat_to_fc import get_commensurate_points
    from phonopy.structure.cells import get_supercell

    if not isinstance(result, PhononResult):
        raise TypeError(f"result must be a PhononResult, got {type(result).__name__}")
    phonon = result.phonopy
    smat = result.supercell_matrix if supercell_matrix is None else _as_supercell_matrix(supercell_matrix)
    prim = phonon.primitive
    prim_cell = np.asarray(prim.cell, dtype=float)
    unit = phonon.unitcell
    target = get_supercell(unit, smat)
    target_cell = np.asarray(target.cell, dtype=float)
    # Supercell matrix with respect to the primitive cell, phonopy's column convention.
    m_prim = (target_cell @ np.linalg.inv(prim_cell)).T
    if np.abs(m_prim - np.rint(m_prim)).max() > 1e-5:
        raise ValueError(
            f"supercell_matrix {smat.tolist()} is not a supercell of the primitive cell of the force "
            "constants"
        )
    qpoints = np.asarray(get_commensurate_points(np.rint(m_prim).astype(np.int64)), dtype=float)
    fc_frac = np.asarray(phonon.supercell.cell, dtype=float) @ np.linalg.inv(prim_cell)
    off = fc_frac @ qpoints.T
    interpolated = bool(np.abs(off - np.rint(off)).max() > 1e-6)
    if interpolated and not allow_interpolation:
        raise ValueError(
            f"supercell_matrix {smat.tolist()} has q-points that are not commensurate with the "
            f"force-constant supercell {result.supercell_matrix.tolist()}; its modes would be Fourier "
            "interpolated (pass allow_interpolation=True to accept that)"
        )
    p_index, x = _map_to_primitive(
        np.asarray(target.positions), prim_cell, np.asarray(prim.positions)
    )
    n = len(target)
    idx = (3 * p_index[:, None] + np.arange(3)[None, :]).ravel()
    qp = phonon.run_qpoints(qpoints, with_dynamical_matrices=True)
    dyn = np.asarray(qp.dynamical_matrices)
    dmat = np.zeros((3 * n, 3 * n))
    for q, dq in zip(qpoints, dyn):
        phase = np.repeat(np.exp(2j * np.pi * (x @ q)), 3)
        dmat += (dq[np.ix_(idx, idx)] * phase[:, None] * phase.conj()[None, :]).real
    dmat /= len(qpoints)
    dmat = 0.5 * (dmat + dmat.T)
    eigvals, eigvecs = np.linalg.eigh(dmat)
    eigvecs = canonical_mode_basis(eigvals, eigvecs)
    freqs = np.sign(eigvals) * np.sqrt(np.abs(eigvals)) * float(phonon.unit_conversion_factor)
    masses = np.asarray(target.masses, dtype=float)
    trans = np.zeros((3 * n, 3))
    for a in range(3):
        trans[a::3, a] = np.sqrt(masses)
    trans /= np.linalg.norm(trans, axis=0)
    overlap = ((trans.T @ eigvecs) ** 2).sum(axis=0)
    acoustic = np.zeros(3 * n, dtype=bool)
    acoustic[np.argsort(-overlap, kind="stable")[:3]] = True
    layers = supercell_layers(result.unitcell_layers, target)
    modes = SupercellModes(
        atoms=phonopy_to_ase(target, layers),
        frequencies=freqs,
        eigenvectors=eigvecs,
        masses=masses,
        acoustic=acoustic,
        supercell_matrix=smat,
        qpoints=qpoints,
        primitive_index=p_index.astype(np.int64),
        interpolated=interpolated,
    )
    imag = modes.imaginary()
    if len(imag):
        warnings.warn(
            f"{len(imag)} non-acoustic supercell mode(s) are imaginary: "
            + ", ".join(f"{f:.3f}" for f in freqs[imag][:10])
            + " THz",
            ImaginaryModeWarning,
            stacklevel=2,
        )
    return modes


DEGENERACY_RTOL = 1e-9
"""Eigenvalues closer than this times the largest ``|λ|`` count as degenerate (:func:`canonical_mode_basis`)."""


def _reference_vectors(n_rows: int, n_cols: int) -> np.ndarray:
    """Fixed pseudo-random matrix in [−½, ½), shape (n_rows, n_cols), identical on every machine.

    Element ``(r, c)`` is the splitmix64 hash of ``(r, c)`` mapped to a float; unlike a seeded numpy
    generator it does not depend on the numpy version.
    """
    with np.errstate(over="ignore"):
        z = np.arange(n_rows, dtype=np.uint64)[:, None] * np.uint64(0x9E3779B97F4A7C15) + (
            np.arange(n_cols, dtype=np.uint64)[None, :] + np.uint64(1)
        ) * np.uint64(0xD1B54A32D192ED03)
        z ^= z >> np.uint64(30)
        z *= np.uint64(0xBF58476D1CE4E5B9)
        z ^= z >> np.uint64(27)
        z *= np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53 - 0.5


def canonical_mode_basis(
    eigenvalues: np.ndarray, eigenvectors: np.ndarray, rtol: float = DEGENERACY_RTOL
) -> np.ndarray:
    """Put eigenvectors into a basis that does not depend on the eigensolver.

    Consecutive eigenvalues closer than ``rtol · max|λ|`` form a degenerate block; each block ``E`` is
    replaced by ``E U Vᵀ`` with ``EᵀR = U S Vᵀ`` for a fixed reference ``R`` (see the module docstring),
    which fixes both the rotation within the block and, for single modes, the sign.  The result spans the
    same subspaces, so it diagonalises the same matrix to within the degeneracy tolerance.

    Parameters
    ----------
    eigenvalues
        (M,) ascending, as returned by ``numpy.linalg.eigh`` (any unit).
    eigenvectors
        (D, M) orthonormal columns.
    rtol
        Relative degeneracy tolerance.

    Returns
    -------
    numpy.ndarray
        (D, M) float64, orthonormal columns, a new array.
    """
    lam = np.asarray(eigenvalues, dtype=float)
    vec = np.array(eigenvectors, dtype=float)
    if lam.ndim != 1 or vec.ndim != 2 or vec.shape[1] != len(lam):
        raise ValueError(f"need (M,) eigenvalues and (D, M) eigenvectors, got {lam.shape} and {vec.shape}")
    if len(lam) == 0:
        return vec
    if np.any(np.diff(lam) < 0):
        raise ValueError("eigenvalues must be in ascending order")
    scale = float(np.abs(lam).max()) or 1.0
    cuts = np.flatnonzero(np.diff(lam) > rtol * scale) + 1
    starts, stops = np.r_[0, cuts], np.r_[cuts, len(lam)]
    ref = _reference_vectors(vec.shape[0], int((stops - starts).max()))
    for a, b in zip(starts, stops):
        block = vec[:, a:b]
        u, _, vt = np.linalg.svd(block.T @ ref[:, : b - a])
        vec[:, a:b] = block @ (u @ vt)
    return vec


# --------------------------------------------------------------------------------------------
# Mode classification for layered materials
# --------------------------------------------------------------------------------------------
def classify_layer_modes(
    eigenvectors: np.ndarray, masses: np.ndarray, layers: np.ndarray, threshold: float = 0.9
) -> list[str]:
    """Label Γ-point modes of a layered cell by how the layers move.

    For each mode the mass-weighted eigenvector is projected on the rigid translations of every
    layer.  A mode whose weight there exceeds ``threshold`` is a rigid-layer mode: ``"acoustic"`` if
    its projection on the uniform translation of the whole cell also exceeds ``threshold``, else
    ``"shear"`` (in-plane) or ``"breathing"`` (out-of-plane, along z) interlayer mode.  A mode with
    less than ``1 − threshold`` of rigid-layer weight is an intralayer optical mode, ``"ZO"`` if its
    displacements are along z, ``"G"`` (in-plane optical, LO/TO; E2g-like in graphene) if in-plane.
    Anything else is ``"mixed"``.

    Parameters
    ----------
    eigenvectors
        (3n, 3n) complex or real, columns are modes (phonopy's convention), row ``3 i + α``.
    masses
        (n,) amu.
    layers
        (n,) int layer index.
    threshold
        Weight fraction for the classification.

    Returns
    -------
    list of str, length 3n
    """
    e = np.asarray(eigenvectors)
    masses = np.asarray(masses, dtype=float)
    layers = np.asarray(layers)
    n = len(masses)
    if e.shape != (3 * n, 3 * n) or layers.shape != (n,):
        raise ValueError("eigenvectors must be (3n, 3n) and layers (n,) for n atoms")
    basis = []
    for lay in np.unique(layers):
        for a in range(3):
            v = np.zeros(3 * n)
            v[3 * np.flatnonzero(layers == lay) + a] = np.sqrt(masses[layers == lay])
            basis.append(v / np.linalg.norm(v))
    rigid = np.array(basis).T  # (3n, 3 n_layers), orthonormal (disjoint supports)
    uniform = np.zeros((3 * n, 3))
    for a in range(3):
        uniform[a::3, a] = np.sqrt(masses)
    uniform /= np.linalg.norm(uniform, axis=0)
    labels = []
    for nu in range(3 * n):
        v = e[:, nu] / np.linalg.norm(e[:, nu])
        w_rigid = float((np.abs(rigid.T @ v) ** 2).sum())
        w_uniform = float((np.abs(uniform.T @ v) ** 2).sum())
        w_z = float((np.abs(v[2::3]) ** 2).sum())
        if w_rigid > threshold:
            if w_uniform > threshold:
                labels.append("acoustic")
            elif w_z > threshold:
                labels.append("breathing")
            elif w_z < 1 - threshold:
                labels.append("shear")
            else:
                labels.append("mixed")
        elif w_rigid < 1 - threshold:
            if w_z > threshold:
                labels.append("ZO")
            elif w_z < 1 - threshold:
                labels.append("G")
            else:
                labels.append("mixed")
        else:
            labels.append("mixed")
    return labels
