"""Real-space tight-binding Hamiltonians: blocks H_ij(R), H(k), eigen-solvers, band structures.

Convention
----------
``H_ij(R) = <φ_i(r − τ_i) | H | φ_j(r − τ_j − R·cell)>`` for atoms ``i, j`` and an integer lattice
translation ``R`` (the edge vector is ``r_j + R·cell − r_i``).  Stored blocks always come in pairs
with ``H_ji(−R) = H_ij(R)^†`` (checked by :meth:`TBHamiltonian.hermiticity_error`); on-site blocks are
the pairs ``(i, i, 0)``.

Bloch sums, for k in *reduced* coordinates of the reciprocal lattice (``k·b`` with ``a_m·b_n = 2π δ_mn``):

* lattice gauge (default):  ``H(k) = Σ_R e^{2πi k·R} H(R)``
* atomic gauge:             ``H_ij(k) = Σ_R e^{2πi k·(R + f_j − f_i)} H_ij(R)``  (f = fractional positions)

Both give the same eigenvalues; eigenvectors differ by the diagonal phases ``e^{2πi k·f_i}``.  With an
overlap ``S(R)`` the generalised problem ``H(k) c = E S(k) c`` is solved.

Storage: ``pairs`` (B, 2), ``shifts`` (B, 3) and ``blocks`` (B, n_max, n_max) padded with zeros
beyond each atom's orbital count (exactly one species → no padding).  Orbitals of atom ``i`` occupy
rows ``offsets[i] : offsets[i + 1]`` of H(k), in the shell order of the :class:`OrbitalBasis`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from ase import Atoms

from .orbitals import OrbitalBasis

__all__ = ["TBHamiltonian", "HamiltonianCalculator", "special_path"]


class HamiltonianCalculator:
    """Interface of every Hamiltonian calculator (reference models, HedgeNet-Electron, DFT readers).

    Subclasses implement :meth:`get_hamiltonian` and set :attr:`basis`.
    """

    basis: OrbitalBasis

    def get_hamiltonian(self, atoms: Atoms) -> "TBHamiltonian":  # pragma: no cover - interface
        """Tight-binding Hamiltonian of ``atoms`` (eV)."""
        raise NotImplementedError


def _as_kpts(kpts: np.ndarray | Sequence[float]) -> np.ndarray:
    k = np.asarray(kpts, dtype=np.float64)
    if k.ndim == 1:
        k = k[None, :]
    if k.ndim != 2 or k.shape[1] != 3:
        raise ValueError(f"k-points must have shape (3,) or (K, 3), got {np.shape(kpts)}")
    return k


@dataclass
class TBHamiltonian:
    """Sparse real-space tight-binding Hamiltonian (optionally with overlap).

    Attributes
    ----------
    cell : numpy.ndarray, shape (3, 3), float64, Å
        Lattice vectors as rows.
    positions : numpy.ndarray, shape (N, 3), float64, Å
    numbers : numpy.ndarray, shape (N,), int64
        Atomic numbers.
    basis : OrbitalBasis
        Shells per element, e3nn order within a shell.
    pairs : numpy.ndarray, shape (B, 2), int64
        Atom pairs ``(i, j)`` of the blocks.
    shifts : numpy.ndarray, shape (B, 3), int64
        Lattice translation ``R`` of atom ``j``.
    blocks : numpy.ndarray, shape (B, n_max, n_max), float64 or complex128, eV
        ``H_ij(R)``, zero-padded.
    overlaps : numpy.ndarray or None, shape (B, n_max, n_max)
        ``S_ij(R)`` on the same pairs, or None for an orthogonal basis.
    pbc : numpy.ndarray, shape (3,), bool
    fermi_level : float or None, eV
    layers : numpy.ndarray or None, shape (N,), int64
    """

    cell: np.ndarray
    positions: np.ndarray
    numbers: np.ndarray
    basis: OrbitalBasis
    pairs: np.ndarray
    shifts: np.ndarray
    blocks: np.ndarray
    overlaps: np.ndarray | None = None
    pbc: np.ndarray = field(default_factory=lambda: np.ones(3, dtype=bool))
    fermi_level: float | None = None
    layers: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.cell = np.asarray(self.cell, dtype=np.float64).reshape(3, 3)
        self.positions = np.asarray(self.positions, dtype=np.float64)
        self.numbers = np.asarray(self.numbers, dtype=np.int64)
        self.pairs = np.asarray(self.pairs, dtype=np.int64).reshape(-1, 2)
        self.shifts = np.asarray(self.shifts, dtype=np.int64).reshape(-1, 3)
        self.blocks = np.asarray(self.blocks)
        self.pbc = np.asarray(self.pbc, dtype=bool).reshape(3)
        n = len(self.numbers)
        if self.positions.shape != (n, 3):
            raise ValueError(f"positions must have shape ({n}, 3), got {self.positions.shape}")
        if not np.all(np.isfinite(self.positions)):
            raise ValueError("positions contain NaN or inf")
        nb = len(self.pairs)
        if len(self.shifts) != nb:
            raise ValueError(f"{nb} pairs but {len(self.shifts)} shifts")
        nmax = self.basis.max_norb
        if self.blocks.shape != (nb, nmax, nmax):
            raise ValueError(f"blocks must have shape ({nb}, {nmax}, {nmax}) for this basis, got {self.blocks.shape}")
        if self.overlaps is not None:
            self.overlaps = np.asarray(self.overlaps)
            if self.overlaps.shape != self.blocks.shape:
                raise ValueError(f"overlaps shape {self.overlaps.shape} differs from blocks shape {self.blocks.shape}")
        if nb and (self.pairs.min() < 0 or self.pairs.max() >= n):
            raise ValueError(f"pair indices out of range for {n} atoms")
        self._norb = self.basis.norb_per_atom(self.numbers)
        self._structure: dict | None = None
        self._realspace: dict | None = None

    # ------------------------------------------------------------------ sizes
    @property
    def n_atoms(self) -> int:
        """Number of atoms N."""
        return len(self.numbers)

    @property
    def norb_per_atom(self) -> np.ndarray:
        """Orbitals per atom, shape (N,), int64."""
        return self._norb

    @property
    def offsets(self) -> np.ndarray:
        """First orbital of every atom, shape (N + 1,), int64 (last entry = n_orbitals)."""
        return np.concatenate([[0], np.cumsum(self._norb)])

    @property
    def n_orbitals(self) -> int:
        """Size of H(k)."""
        return int(self._norb.sum())

    @property
    def n_blocks(self) -> int:
        """Number of stored blocks B."""
        return len(self.pairs)

    @property
    def is_orthogonal(self) -> bool:
        """True when no overlap is stored."""
        return self.overlaps is None

    def reduced_positions(self) -> np.ndarray:
        """Fractional coordinates of the atoms, shape (N, 3)."""
        return np.linalg.solve(self.cell.T, self.positions.T).T

    def block(self, i: int, j: int, shift: Sequence[int] = (0, 0, 0), overlap: bool = False) -> np.ndarray:
        """The block ``H_ij(R)`` (n_i, n_j); zeros if not stored."""
        shift = np.asarray(shift, dtype=np.int64)
        hit = np.nonzero((self.pairs[:, 0] == i) & (self.pairs[:, 1] == j) & np.all(self.shifts == shift, axis=1))[0]
        data = self.overlaps if overlap else self.blocks
        ni, nj = self._norb[i], self._norb[j]
        if len(hit) == 0:
            return np.zeros((ni, nj), dtype=self.blocks.dtype)
        return data[hit[0], :ni, :nj].copy()

    # ------------------------------------------------------------- checking
    def reverse_index(self) -> np.ndarray:
        """Index of the block ``(j, i, −R)`` of every block, shape (B,), int64.

        Raises
        ------
        ValueError
            If some block has no partner.
        """
        from .graph import _edge_keys

        fwd = _edge_keys(self.pairs[:, 0], self.pairs[:, 1], self.shifts)
        rev = _edge_keys(self.pairs[:, 1], self.pairs[:, 0], -self.shifts)
        order = np.argsort(fwd, kind="stable")
        pos = np.clip(np.searchsorted(fwd[order], rev), 0, max(len(order) - 1, 0))
        idx = order[pos] if len(order) else order
        if len(idx) and not np.array_equal(fwd[idx], rev):
            missing = np.nonzero(fwd[idx] != rev)[0][:5]
            raise ValueError(
                f"blocks {missing.tolist()} have no (j, i, -R) partner; store both halves of every pair"
            )
        return idx

    def hermiticity_error(self) -> float:
        """``max |H_ij(R) − H_ji(−R)^†|`` over all blocks (and overlaps), eV."""
        rev = self.reverse_index()
        err = float(np.max(np.abs(self.blocks - np.conj(self.blocks[rev]).transpose(0, 2, 1)), initial=0.0))
        if self.overlaps is not None:
            err = max(err, float(np.max(np.abs(self.overlaps - np.conj(self.overlaps[rev]).transpose(0, 2, 1)), initial=0.0)))
        return err

    # ----------------------------------------------------------- Bloch sums
    def _coo_structure(self) -> dict:
        """Orbital-level (row, col) of every stored matrix element, cached."""
        if self._structure is None:
            nmax = self.blocks.shape[1]
            a = np.arange(nmax)
            ni = self._norb[self.pairs[:, 0]]
            nj = self._norb[self.pairs[:, 1]]
            valid = (a[None, :, None] < ni[:, None, None]) & (a[None, None, :] < nj[:, None, None])
            b_idx, ra, cb = np.nonzero(valid)
            off = self.offsets
            rows = off[self.pairs[b_idx, 0]] + ra
            cols = off[self.pairs[b_idx, 1]] + cb
            self._structure = {"valid": valid, "block": b_idx, "rows": rows, "cols": cols}
        return self._structure

    def _phases(self, k: np.ndarray, gauge: str, cartesian: bool) -> np.ndarray:
        if cartesian:
            k = k @ self.cell.T / (2.0 * np.pi)
        if gauge == "lattice":
            arg = self.shifts @ k
        elif gauge == "atomic":
            frac = self.reduced_positions()
            d = self.shifts + frac[self.pairs[:, 1]] - frac[self.pairs[:, 0]]
            arg = d @ k
        else:
            raise ValueError(f"gauge must be 'lattice' or 'atomic', got {gauge!r}")
        return np.exp(2j * np.pi * arg)

    def _bloch(self, data: np.ndarray, k, sparse: bool, gauge: str, cartesian: bool):
        k = _as_kpts(k)
        if len(k) != 1:
            raise ValueError("hk/sk take one k-point; loop over k for several")
        st = self._coo_structure()
        phase = self._phases(k[0], gauge, cartesian)
        values = data[st["valid"]] * phase[st["block"]]
        n = self.n_orbitals
        mat = sp.csr_matrix((values, (st["rows"], st["cols"])), shape=(n, n))
        return mat if sparse else mat.toarray()

    def hk(self, k, sparse: bool = False, gauge: str = "lattice", cartesian: bool = False):
        """Bloch Hamiltonian H(k), eV.

        Parameters
        ----------
        k : array_like, shape (3,)
            Reduced coordinates (units of the reciprocal vectors), or Cartesian 1/Å (including 2π) if
            ``cartesian``.
        sparse
            Return a ``scipy.sparse.csr_matrix`` instead of a dense array.
        gauge
            ``"lattice"`` or ``"atomic"`` (see module docstring).

        Returns
        -------
        numpy.ndarray or scipy.sparse.csr_matrix, shape (n_orbitals, n_orbitals), complex128
        """
        return self._bloch(self.blocks, k, sparse, gauge, cartesian)

    def sk(self, k, sparse: bool = False, gauge: str = "lattice", cartesian: bool = False):
        """Bloch overlap S(k) (identity for an orthogonal basis); same arguments as :meth:`hk`."""
        if self.overlaps is None:
            eye = sp.identity(self.n_orbitals, dtype=np.complex128, format="csr")
            return eye if sparse else eye.toarray()
        return self._bloch(self.overlaps, k, sparse, gauge, cartesian)

    def to_dense(self, k=(0.0, 0.0, 0.0), **kwargs) -> np.ndarray:
        """Dense H(k) (see :meth:`hk`)."""
        return self.hk(k, sparse=False, **kwargs)

    def to_scipy(self, k=(0.0, 0.0, 0.0), **kwargs) -> sp.csr_matrix:
        """Sparse H(k) as ``scipy.sparse.csr_matrix`` (see :meth:`hk`)."""
        return self.hk(k, sparse=True, **kwargs)

    def realspace(self, overlap: bool = False) -> dict[tuple[int, int, int], sp.csr_matrix]:
        """``{R: H(R)}`` as sparse (n_orbitals, n_orbitals) matrices, eV."""
        data = self.overlaps if overlap else self.blocks
        if data is None:
            raise ValueError("this Hamiltonian has no overlap")
        st = self._coo_structure()
        out = {}
        keys = [tuple(s) for s in self.shifts]
        n = self.n_orbitals
        values = data[st["valid"]]
        rshift = self.shifts[st["block"]]
        for R in sorted(set(keys)):
            m = np.all(rshift == np.array(R), axis=1)
            out[R] = sp.csr_matrix((values[m], (st["rows"][m], st["cols"][m])), shape=(n, n))
        return out

    # -------------------------------------------------------------- solvers
    def eigh(self, kpts, return_vectors: bool = False, gauge: str = "lattice", cartesian: bool = False):
        """Dense diagonalisation at a list of k-points.

        Parameters
        ----------
        kpts : array_like, shape (K, 3) or (3,)
            Reduced (or Cartesian, 1/Å) k-points.
        return_vectors
            Also return eigenvectors.

        Returns
        -------
        energies : numpy.ndarray, shape (K, n_orbitals), float64, eV (ascending)
        vectors : numpy.ndarray, shape (K, n_orbitals, n_orbitals), complex128
            Only with ``return_vectors``; column ``n`` of ``vectors[k]`` is state ``n``.
        """
        kpts = _as_kpts(kpts)
        energies = np.empty((len(kpts), self.n_orbitals))
        vectors = np.empty((len(kpts), self.n_orbitals, self.n_orbitals), dtype=np.complex128) if return_vectors else None
        for n, k in enumerate(kpts):
            h = self.hk(k, gauge=gauge, cartesian=cartesian)
            s = None if self.overlaps is None else self.sk(k, gauge=gauge, cartesian=cartesian)
            if return_vectors:
                energies[n], vectors[n] = scipy.linalg.eigh(h, s)
            else:
                energies[n] = scipy.linalg.eigh(h, s, eigvals_only=True)
        return (energies, vectors) if return_vectors else energies

    def eigsh_near(
        self,
        k,
        sigma: float,
        n_states: int = 8,
        return_vectors: bool = False,
        solver: str = "auto",
        gauge: str = "lattice",
        cartesian: bool = False,
        tol: float = 0.0,
    ):
        """The ``n_states`` eigenvalues closest to ``sigma`` by sparse shift-invert Lanczos.

        The factorisation of ``H(k) − σ S(k)`` is done once: with MKL PARDISO (``pypardiso``) when it
        is installed and H(k) is real, else SuperLU with the symmetric ``MMD_AT_PLUS_A`` ordering
        (several times faster than SciPy's default for these Hamiltonians).

        Parameters
        ----------
        k : array_like, shape (3,)
        sigma
            Target energy (eV).
        n_states
            Number of states.
        return_vectors
            Also return eigenvectors (n_orbitals, n_states).
        solver
            ``"auto"``, ``"pardiso"`` or ``"superlu"``.

        Returns
        -------
        energies : numpy.ndarray, shape (n_states,), float64, eV, ascending
        vectors : numpy.ndarray, shape (n_orbitals, n_states), complex128 (with ``return_vectors``)
        """
        from scipy.sparse.linalg import LinearOperator, eigsh, splu

        n = self.n_orbitals
        if not 0 < n_states < n - 1:
            raise ValueError(f"n_states must be between 1 and {n - 2} for {n} orbitals, got {n_states}")
        h = self.hk(k, sparse=True, gauge=gauge, cartesian=cartesian)
        s = None if self.overlaps is None else self.sk(k, sparse=True, gauge=gauge, cartesian=cartesian)
        real = np.max(np.abs(h.data.imag), initial=0.0) < 1e-12 and (
            s is None or np.max(np.abs(s.data.imag), initial=0.0) < 1e-12
        )
        if real:
            h = h.real.tocsr()
            s = None if s is None else s.real.tocsr()
        shifted = (h - sigma * (s if s is not None else sp.identity(n, format="csr"))).tocsc()
        use_pardiso = False
        if solver in ("auto", "pardiso") and real:
            try:
                import pypardiso  # noqa: F401

                use_pardiso = True
            except ImportError:
                if solver == "pardiso":
                    raise ImportError("solver='pardiso' needs the optional package pypardiso") from None
        elif solver == "pardiso":
            raise ValueError("PARDISO is used for real H(k) only (k at Γ or time-reversal invariant points)")
        if use_pardiso:
            import pypardiso

            ps = pypardiso.PyPardisoSolver()
            a = shifted.tocsr()
            ps.factorize(a)

            def solve(x):
                return ps.solve(a, np.asarray(x, dtype=np.float64))

        else:
            lu = splu(shifted, permc_spec="MMD_AT_PLUS_A")

            def solve(x):
                return lu.solve(np.asarray(x, dtype=shifted.dtype))

        op = LinearOperator((n, n), matvec=solve, dtype=shifted.dtype)
        vals, vecs = eigsh(h, k=n_states, M=s, sigma=sigma, which="LM", OPinv=op, tol=tol)
        order = np.argsort(vals)
        vals = vals[order]
        if return_vectors:
            return vals, vecs[:, order].astype(np.complex128)
        return vals

    def band_structure(self, kpts, n_bands: int | None = None, sigma: float | None = None):
        """Eigenvalues along a k-path (dense, or ``n_bands`` nearest ``sigma`` by shift-invert).

        Parameters
        ----------
        kpts : array_like, shape (K, 3)
            Reduced k-points, e.g. ``bandpath.kpts`` of :func:`special_path`.
        n_bands, sigma
            If both given, use :meth:`eigsh_near` (large cells).

        Returns
        -------
        numpy.ndarray, shape (K, n), float64, eV
        """
        kpts = _as_kpts(kpts)
        if n_bands is not None and sigma is not None:
            return np.array([self.eigsh_near(k, sigma, n_bands) for k in kpts])
        return self.eigh(kpts)

    def pz_projection(self) -> "TBHamiltonian":
        """Restriction of H to the p_z orbitals (z component of each element's first p shell).

        The fast path for bands near the Dirac energy of flat-layered carbon: in a flat monolayer p_z
        decouples from s, p_x, p_y by mirror symmetry; in bilayers only the weak inter-layer
        (V_ppσ − V_ppπ) n_z n_x,y terms couple them, so the restriction moves bands near E_D by
        sub-meV amounts (measure it for your system: compare with :meth:`eigsh_near` on the full H).

        Returns
        -------
        TBHamiltonian
            Basis ``{element: ["pz"]}``, blocks (B, 1, 1), overlap restricted the same way.
        """
        index = {}
        for z in np.unique(self.numbers):
            shells = self.basis.shells_of(int(z))
            start = 0
            for shell in shells:
                if shell == 1:
                    index[int(z)] = start + 2  # e3nn p order is (x, y, z)
                    break
                if shell == "pz":
                    index[int(z)] = start
                    break
                start += 2 * int(shell) + 1
            else:
                raise ValueError(f"element {int(z)} has no p shell to project on")
        pick = np.array([index[int(z)] for z in self.numbers])
        ii, jj = pick[self.pairs[:, 0]], pick[self.pairs[:, 1]]
        b = np.arange(self.n_blocks)
        sub = self.blocks[b, ii, jj][:, None, None]
        sub_s = None if self.overlaps is None else self.overlaps[b, ii, jj][:, None, None]
        return TBHamiltonian(
            cell=self.cell, positions=self.positions, numbers=self.numbers,
            basis=OrbitalBasis.from_dict({int(z): ["pz"] for z in index}),
            pairs=self.pairs, shifts=self.shifts, blocks=sub, overlaps=sub_s, pbc=self.pbc,
            fermi_level=self.fermi_level, layers=self.layers,
        )

    # ------------------------------------------------------------- helpers
    def to_atoms(self) -> Atoms:
        """The structure as ``ase.Atoms`` (layer array kept)."""
        atoms = Atoms(numbers=self.numbers, positions=self.positions, cell=self.cell, pbc=self.pbc)
        if self.layers is not None:
            atoms.set_array("layer", np.asarray(self.layers, dtype=np.int64))
        return atoms

    def copy(self) -> "TBHamiltonian":
        """Deep copy."""
        return TBHamiltonian(
            cell=self.cell.copy(),
            positions=self.positions.copy(),
            numbers=self.numbers.copy(),
            basis=self.basis,
            pairs=self.pairs.copy(),
            shifts=self.shifts.copy(),
            blocks=self.blocks.copy(),
            overlaps=None if self.overlaps is None else self.overlaps.copy(),
            pbc=self.pbc.copy(),
            fermi_level=self.fermi_level,
            layers=None if self.layers is None else np.array(self.layers),
        )

    def to_deeph(self, folder) -> None:
        """Write DeepH's processed folder format (see :mod:`mlepi_ase.io.deeph`)."""
        from .io.deeph import write_deeph

        write_deeph(self, folder)

    @classmethod
    def from_deeph(cls, folder) -> "TBHamiltonian":
        """Read DeepH's processed folder format (see :mod:`mlepi_ase.io.deeph`)."""
        from .io.deeph import read_deeph

        return read_deeph(folder)


def special_path(atoms_or_cell, path: str = "GMKG", npoints: int = 100):
    """ASE ``BandPath`` through the special points of a 2D hexagonal cell (Γ, M, K by default).

    Parameters
    ----------
    atoms_or_cell
        ``ase.Atoms`` or a (3, 3) cell.
    path
        Letters of ASE's special points, e.g. ``"GMKG"``.
    npoints
        Number of k-points on the path.

    Returns
    -------
    ase.dft.kpoints.BandPath
        ``.kpts`` (npoints, 3) in reduced coordinates; ``.get_linear_kpoint_axis()`` for plotting.
    """
    from ase.cell import Cell

    cell = Cell(np.asarray(getattr(atoms_or_cell, "cell", atoms_or_cell)))
    return cell.bandpath(path, npoints=npoints, pbc=[True, True, False])

