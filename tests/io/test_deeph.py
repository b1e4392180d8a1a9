"""DeepH processed-folder round trip and error handling."""

import h5py
import numpy as np
import pytest

from mlepi_ase.io.deeph import DeepHFormatError, read_deeph, write_deeph
from mlepi_ase.orbitals import OrbitalBasis, block_from_e3nn
from mlepi_ase.reference import MoonKoshinoPz, SlaterKosterSP3
from mlepi_ase.structures import bilayer_graphene
from mlepi_ase.tb import TBHamiltonian


@pytest.fixture
def sp3_h():
    atoms = bilayer_graphene("AB", size=(2, 1))
    atoms.rattle(0.05, seed=1)
    h = SlaterKosterSP3().get_hamiltonian(atoms)
    h.fermi_level = 4.5
    return h


def test_round_trip_exact(sp3_h, tmp_path):
    write_deeph(sp3_h, tmp_path / "s")
    back = read_deeph(tmp_path / "s")
    order = np.lexsort((sp3_h.shifts[:, 2], sp3_h.shifts[:, 1], sp3_h.shifts[:, 0], sp3_h.pairs[:, 1], sp3_h.pairs[:, 0]))
    assert np.array_equal(back.pairs, sp3_h.pairs[order])
    assert np.array_equal(back.shifts, sp3_h.shifts[order])
    assert np.array_equal(back.blocks, sp3_h.blocks[order])
    assert np.allclose(back.cell, sp3_h.cell) and np.allclose(back.positions, sp3_h.positions)
    assert back.fermi_level == 4.5
    assert back.basis == sp3_h.basis


def test_files_follow_deeph_layout(sp3_h, tmp_path):
    write_deeph(sp3_h, tmp_path)
    assert np.allclose(np.loadtxt(tmp_path / "lat.dat"), sp3_h.cell.T)
    assert np.loadtxt(tmp_path / "site_positions.dat").shape == (3, sp3_h.n_atoms)
    assert np.allclose(np.loadtxt(tmp_path / "rlat.dat").T @ sp3_h.cell.T, 2 * np.pi * np.eye(3))
    with h5py.File(tmp_path / "hamiltonians.h5") as f:
        assert "[0, 0, 0, 1, 1]" in f  # 1-based atom indices
        assert f["[0, 0, 0, 1, 1]"].shape == (4, 4)
    with h5py.File(tmp_path / "overlaps.h5") as f:
        assert np.array_equal(f["[0, 0, 0, 1, 1]"][()], np.eye(4))


def test_openmx_d_order_converted(tmp_path):
    """An s,p,d basis: the file holds OpenMX order, memory e3nn order."""
    rng = np.random.default_rng(0)
    basis = OrbitalBasis.from_dict({"C": [0, 1, 2]})
    cell = np.diag([3.0, 3.0, 10.0])
    blocks = rng.normal(size=(3, 9, 9))
    blocks[0] = blocks[0] + blocks[0].T
    blocks[2] = blocks[1].T
    h = TBHamiltonian(cell, [[0, 0, 0], [1.5, 0, 0]], [6, 6], basis,
                      pairs=[[0, 0], [0, 1], [1, 0]], shifts=[[0, 0, 0], [0, 0, 0], [0, 0, 0]], blocks=blocks)
    write_deeph(h, tmp_path)
    with h5py.File(tmp_path / "hamiltonians.h5") as f:
        stored = f["[0, 0, 0, 1, 2]"][()]
    assert np.allclose(stored, block_from_e3nn(blocks[1], [0, 1, 2], [0, 1, 2], "openmx"))
    assert not np.allclose(stored[4:, 4:], blocks[1][4:, 4:])  # d order really differs
    assert np.allclose(read_deeph(tmp_path).block(0, 1), blocks[1])


def test_missing_file_is_reported(sp3_h, tmp_path):
    write_deeph(sp3_h, tmp_path)
    (tmp_path / "orbital_types.dat").unlink()
    with pytest.raises(DeepHFormatError, match="missing orbital_types.dat"):
        read_deeph(tmp_path)


def test_inconsistent_block_shape_is_reported(sp3_h, tmp_path):
    write_deeph(sp3_h, tmp_path)
    with h5py.File(tmp_path / "hamiltonians.h5", "a") as f:
        del f["[0, 0, 0, 1, 1]"]
        f["[0, 0, 0, 1, 1]"] = np.zeros((3, 4))
    with pytest.raises(DeepHFormatError, match=r"block \[0, 0, 0, 1, 1\] has shape \(3, 4\)"):
        read_deeph(tmp_path)


def test_malformed_key_and_pz_basis(sp3_h, tmp_path):
    write_deeph(sp3_h, tmp_path)
    with h5py.File(tmp_path / "hamiltonians.h5", "a") as f:
        f["garbage"] = np.zeros((4, 4))
    with pytest.raises(DeepHFormatError, match="malformed key"):
        read_deeph(tmp_path)
    pz = MoonKoshinoPz().get_hamiltonian(bilayer_graphene())
    with pytest.raises(DeepHFormatError, match="pz"):
        write_deeph(pz, tmp_path / "pz")
