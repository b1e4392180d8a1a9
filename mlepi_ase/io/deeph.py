"""DeepH's processed folder format, read and written as DeepH does it.

A folder holds one structure:

============================  ==========================================================================
``lat.dat``                   lattice vectors as *columns* (3 × 3, Å)
``rlat.dat``                  reciprocal lattice vectors (with 2π) as columns (3 × 3, 1/Å)
``site_positions.dat``        Cartesian positions, atoms as columns (3 × N, Å)
``element.dat``               atomic number per line (N lines)
``orbital_types.dat``         per atom one line of the shells' angular momenta, e.g. ``0 0 1 1 2``
``info.json``                 ``{"isspinful": false, "fermi_level": E_F}`` (eV)
``hamiltonians.h5``           one dataset per block, key ``"[Rx, Ry, Rz, i, j]"`` (atoms 1-based), eV
``overlaps.h5``               the same keys, overlap blocks (on-site identity for orthogonal bases)
============================  ==========================================================================

Blocks in the files are in OpenMX orbital order (p: x, y, z; d: 3z² − r², x² − y², xy, xz, yz);
in memory they are in e3nn order (:mod:`mlepi_ase.orbitals`).  The conversion happens here, on the way
in and out.  Spinful data and ``"pz"`` shells (not an OpenMX shell) are rejected with a clear error.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import h5py
import numpy as np

from ..orbitals import OrbitalBasis, block_from_e3nn, block_to_e3nn
from ..tb import TBHamiltonian

__all__ = ["read_deeph", "write_deeph", "DeepHFormatError", "REQUIRED_FILES"]

REQUIRED_FILES = ("lat.dat", "site_positions.dat", "element.dat", "orbital_types.dat", "hamiltonians.h5")
_KEY = re.compile(r"^\[\s*(-?\d+)\s*,\s*(-?\d+)\s*,\s*(-?\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*\]$")


class DeepHFormatError(ValueError):
    """A DeepH folder is missing files or is inconsistent."""


def _key(shift, i: int, j: int) -> str:
    return f"[{int(shift[0])}, {int(shift[1])}, {int(shift[2])}, {i + 1}, {j + 1}]"


def write_deeph(h: TBHamiltonian, folder: str | os.PathLike, write_overlaps: bool = True) -> Path:
    """Write ``h`` as a DeepH processed folder (created if needed).

    Parameters
    ----------
    h
        Hamiltonian with an equivariant basis (integer shells only).
    folder
        Target directory.
    write_overlaps
        Write ``overlaps.h5`` (identity on-site blocks for an orthogonal basis).

    Returns
    -------
    pathlib.Path
        The folder.
    """
    if not h.basis.equivariant:
        raise DeepHFormatError("DeepH folders need full l shells; this basis has 'pz' shells")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    np.savetxt(folder / "lat.dat", h.cell.T)
    np.savetxt(folder / "rlat.dat", 2.0 * np.pi * np.linalg.inv(h.cell))
    np.savetxt(folder / "site_positions.dat", h.positions.T)
    np.savetxt(folder / "element.dat", h.numbers, fmt="%d")
    with open(folder / "orbital_types.dat", "w") as f:
        for z in h.numbers:
            f.write(" ".join(str(s) for s in h.basis.shells_of(z)) + "\n")
    with open(folder / "info.json", "w") as f:
        json.dump({"isspinful": False, "fermi_level": float(h.fermi_level or 0.0)}, f)
    norb = h.norb_per_atom
    shells = {int(z): h.basis.shells_of(z) for z in np.unique(h.numbers)}
    targets = [("hamiltonians.h5", h.blocks)]
    if write_overlaps:
        targets.append(("overlaps.h5", h.overlaps if h.overlaps is not None else None))
    for name, data in targets:
        tmp = folder / (name + ".tmp")
        with h5py.File(tmp, "w") as f:
            for b, ((i, j), shift) in enumerate(zip(h.pairs, h.shifts)):
                ni, nj = norb[i], norb[j]
                zi, zj = int(h.numbers[i]), int(h.numbers[j])
                if data is None:
                    onsite = i == j and not np.any(shift)
                    block = np.eye(ni) if onsite else np.zeros((ni, nj))
                else:
                    block = block_from_e3nn(data[b, :ni, :nj], shells[zi], shells[zj], "openmx")
                f.create_dataset(_key(shift, i, j), data=block)
        os.replace(tmp, folder / name)
    return folder


def _read_matrix(path: Path, shape0: int | None = None) -> np.ndarray:
    try:
        arr = np.loadtxt(path, ndmin=2)
    except (ValueError, OSError) as exc:
        raise DeepHFormatError(f"cannot parse {path.name}: {exc}") from exc
    if shape0 is not None and arr.shape[0] != shape0:
        raise DeepHFormatError(f"{path.name} must have {shape0} rows, got shape {arr.shape}")
    return arr


def read_deeph(folder: str | os.PathLike, read_overlaps: bool = False) -> TBHamiltonian:
    """Read a DeepH processed folder into a :class:`TBHamiltonian` (blocks converted to e3nn order).

    Parameters
    ----------
    folder
        Directory with the files listed in the module docstring.
    read_overlaps
        Also read ``overlaps.h5`` (required then) and keep it as the overlap; otherwise the basis is
        treated as orthogonal.

    Raises
    ------
    DeepHFormatError
        Missing files, unparsable files, spinful data, or blocks whose shape disagrees with the
        orbital types.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DeepHFormatError(f"{folder} is not a directory")
    needed = list(REQUIRED_FILES) + (["overlaps.h5"] if read_overlaps else [])
    missing = [f for f in needed if not (folder / f).exists()]
    if missing:
        raise DeepHFormatError(f"DeepH folder {folder} is missing {', '.join(missing)}")
    cell = _read_matrix(folder / "lat.dat", 3).T
    positions = _read_matrix(folder / "site_positions.dat", 3).T
    numbers = np.atleast_1d(np.loadtxt(folder / "element.dat", dtype=np.int64))
    n = len(numbers)
    if positions.shape != (n, 3):
        raise DeepHFormatError(f"site_positions.dat has {positions.shape[0]} atoms, element.dat has {n}")
    with open(folder / "orbital_types.dat") as f:
        lines = [line.split() for line in f if line.strip()]
    if len(lines) != n:
        raise DeepHFormatError(f"orbital_types.dat has {len(lines)} lines for {n} atoms")
    spec: dict[int, tuple[int, ...]] = {}
    for z, line in zip(numbers, lines):
        shells = tuple(int(x) for x in line)
        if spec.setdefault(int(z), shells) != shells:
            raise DeepHFormatError(f"element {z} has different orbital types on different atoms")
    basis = OrbitalBasis.from_dict(spec)
    fermi = None
    info_path = folder / "info.json"
    if info_path.exists():
        with open(info_path) as f:
            info = json.load(f)
        if info.get("isspinful", False):
            raise DeepHFormatError("spinful DeepH data is not supported")
        fermi = info.get("fermi_level")
    norb = basis.norb_per_atom(numbers)
    nmax = basis.max_norb

    def load(name: str):
        pairs, shifts, blocks = [], [], []
        with h5py.File(folder / name, "r") as f:
            for key in f.keys():
                m = _KEY.match(key)
                if not m:
                    raise DeepHFormatError(f"{name}: malformed key {key!r}")
                rx, ry, rz, i, j = (int(g) for g in m.groups())
                i, j = i - 1, j - 1
                if not (0 <= i < n and 0 <= j < n):
                    raise DeepHFormatError(f"{name}: key {key} names an atom outside 1..{n}")
                block = np.asarray(f[key])
                if block.shape != (norb[i], norb[j]):
                    raise DeepHFormatError(
                        f"{name}: block {key} has shape {block.shape}, but orbital_types gives "
                        f"({norb[i]}, {norb[j]}) for atoms {i + 1} and {j + 1}"
                    )
                padded = np.zeros((nmax, nmax), dtype=block.dtype)
                padded[: norb[i], : norb[j]] = block_to_e3nn(
                    block, basis.shells_of(numbers[i]), basis.shells_of(numbers[j]), "openmx"
                )
                pairs.append((i, j))
                shifts.append((rx, ry, rz))
                blocks.append(padded)
        order = np.lexsort(np.array([[s[2] for s in shifts], [s[1] for s in shifts], [s[0] for s in shifts],
                                     [p[1] for p in pairs], [p[0] for p in pairs]])) if pairs else []
        return (
            np.array(pairs, dtype=np.int64).reshape(-1, 2)[order],
            np.array(shifts, dtype=np.int64).reshape(-1, 3)[order],
            np.array(blocks).reshape(-1, nmax, nmax)[order],
        )

    pairs, shifts, blocks = load("hamiltonians.h5")
    overlaps = None
    if read_overlaps:
        spairs, sshifts, overlaps = load("overlaps.h5")
        if not (np.array_equal(spairs, pairs) and np.array_equal(sshifts, shifts)):
            raise DeepHFormatError("overlaps.h5 and hamiltonians.h5 hold different blocks")
    return TBHamiltonian(
        cell=cell,
        positions=positions,
        numbers=numbers,
        basis=basis,
        pairs=pairs,
        shifts=shifts,
        blocks=blocks,
        overlaps=overlaps,
        pbc=np.ones(3, dtype=bool),
        fermi_level=fermi,
    )
