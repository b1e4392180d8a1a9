"""Slater–Koster reference Hamiltonians: Hermiticity, Dirac physics, equivariance, bad input."""

import numpy as np
import pytest
import torch
from ase import Atoms

from mlepi_ase._e3nn import o3
from mlepi_ase.reference import MoonKoshinoPz, SlaterKosterSP3
from mlepi_ase.reference.slater_koster import XWCH_ONSITE, xwch_scaling
from mlepi_ase.structures import bilayer_graphene, monolayer_graphene
from mlepi_ase.tb import special_path

MODELS = [SlaterKosterSP3, MoonKoshinoPz]


def _k_cart(atoms, k_red):
    return 2 * np.pi * np.linalg.solve(np.asarray(atoms.cell), np.asarray(k_red))  # b-vectors as columns of 2π cell^-1


def _velocity_from_hoppings(h, atoms, k_red, src, targets):
    """|∂f/∂k_x| at K of f(k) = Σ t e^{ik·d} over the stored p_z hoppings src -> targets (eV·Å)."""
    k = _k_cart(atoms, k_red)
    m = (h.pairs[:, 0] == src) & np.isin(h.pairs[:, 1], targets)
    i_pz = h.norb_per_atom[0] - 1  # p_z is the last orbital of both bases
    t = h.blocks[m, i_pz, i_pz]
    d = atoms.positions[h.pairs[m, 1]] + h.shifts[m] @ atoms.cell - atoms.positions[src]
    return abs(np.sum(1j * d[:, 0] * t * np.exp(1j * d @ k)))


@pytest.mark.parametrize("model", MODELS)
def test_monolayer_dirac_cone(model, monolayer):
    h = model().get_hamiltonian(monolayer)
    K = special_path(monolayer).special_points["K"]
    e = h.eigh(K)[0]
    near = np.sort(e[np.argsort(np.abs(e - (XWCH_ONSITE["p"] + 0.788)))[:2]])
    assert near[1] - near[0] < 1e-10  # doubly degenerate Dirac point
    assert near[0] - XWCH_ONSITE["p"] == pytest.approx(0.788, abs=2e-3)
    # slope of the cone from the bands, along k_x through K
    delta = 1e-4  # 1/Å
    kc = _k_cart(monolayer, K) + np.array([delta, 0, 0])
    ek = h.eigh(kc, cartesian=True)[0]
    pair = np.sort(ek[np.argsort(np.abs(ek - near[0]))[:2]])
    v_bands = (pair[1] - pair[0]) / (2 * delta)
    v_hop = _velocity_from_hoppings(h, monolayer, K, 0, [1])
    assert v_bands == pytest.approx(v_hop, rel=5e-3)
    assert v_hop == pytest.approx(5.23, abs=0.02)


def test_ab_dimer_splitting_from_bloch_sum(ab_bilayer):
    """Dimer states at K are split by 2|γ1(K)|, the Bloch sum of the dimer-dimer hoppings (≈ 0.34 eV)."""
    h = MoonKoshinoPz().get_hamiltonian(ab_bilayer)
    K = special_path(ab_bilayer).special_points["K"]
    e = np.sort(h.eigh(K)[0])
    # atoms 1 (bottom, at (a1+a2)/3) and 2 (top, above it) are the dimer sites
    pos = ab_bilayer.positions
    assert np.allclose(pos[1, :2], pos[2, :2])
    k = _k_cart(ab_bilayer, K)
    m = (h.pairs[:, 0] == 1) & (h.pairs[:, 1] == 2)
    d = pos[2] + h.shifts[m] @ ab_bilayer.cell - pos[1]
    gamma1 = np.sum(h.blocks[m, 0, 0] * np.exp(1j * d @ k))
    assert e[3] - e[0] == pytest.approx(2 * abs(gamma1), rel=1e-9)
    assert abs(gamma1) == pytest.approx(0.338, abs=2e-3)
    vertical = h.blocks[m & np.all(h.shifts == 0, axis=1), 0, 0]
    assert vertical[0] == pytest.approx(0.48, abs=1e-3)
    assert np.allclose(e[1:3], XWCH_ONSITE["p"] + 0.788, atol=5e-3)  # non-dimer states stay near E_D


@pytest.mark.parametrize("model", MODELS)
def test_hermiticity_exact(model, rng):
    atoms = bilayer_graphene("AB", size=(2, 2))
    atoms.rattle(0.1, seed=5)
    h = model().get_hamiltonian(atoms)
    assert h.hermiticity_error() == 0.0
    for k in rng.random((3, 3)):
        hk = h.hk(k)
        assert np.abs(hk - hk.conj().T).max() < 1e-13


def test_sp3_blocks_equivariant_under_rotation_and_reflection():
    atoms = bilayer_graphene("AB", size=(2, 2))
    atoms.rattle(0.15, seed=2)
    h = SlaterKosterSP3().get_hamiltonian(atoms)
    torch.manual_seed(0)
    d = o3.Irreps("1x0e+1x1o")
    for q in (o3.rand_matrix(dtype=torch.float64), -o3.rand_matrix(dtype=torch.float64)):
        rotated = atoms.copy()
        rotated.positions = atoms.positions @ q.numpy().T
        rotated.cell = np.asarray(atoms.cell) @ q.numpy().T
        hr = SlaterKosterSP3().get_hamiltonian(rotated)
        assert np.array_equal(hr.pairs, h.pairs) and np.array_equal(hr.shifts, h.shifts)
        dq = d.D_from_matrix(q).numpy()
        assert np.abs(hr.blocks - dq @ h.blocks @ dq.T).max() < 1e-12


def test_xwch_scaling_continuity():
    assert xwch_scaling(1.536329) == pytest.approx(1.0)
    eps = 1e-9
    assert xwch_scaling(2.45 - eps) == pytest.approx(xwch_scaling(2.45 + eps), abs=1e-6)
    assert xwch_scaling(2.6 - eps) == pytest.approx(0.0, abs=1e-6)
    assert xwch_scaling(3.0) == 0.0


@pytest.mark.parametrize("model", MODELS)
def test_bad_input(model):
    atoms = bilayer_graphene()
    atoms[0].symbol = "N"
    with pytest.raises(ValueError, match="carbon model; atom 0 is N"):
        model().get_hamiltonian(atoms)
    atoms = bilayer_graphene()
    atoms.positions[1, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        model().get_hamiltonian(atoms)
    with pytest.raises(ValueError, match="cutoff"):
        model(cutoff=2.0)


def test_sparse_solver_matches_dense():
    atoms = bilayer_graphene("AB", size=(3, 3))
    atoms.rattle(0.05, seed=9)
    h = SlaterKosterSP3().get_hamiltonian(atoms)
    sigma = XWCH_ONSITE["p"] + 0.788
    for k in ([0, 0, 0], [0.1, 0.2, 0.0]):
        dense = h.eigh(k)[0]
        near = np.sort(dense[np.argsort(np.abs(dense - sigma))[:6]])
        sparse = h.eigsh_near(k, sigma, n_states=6, solver="superlu")
        assert np.allclose(sparse, near, atol=1e-9)


def test_gauges_give_same_spectrum(rng):
    atoms = bilayer_graphene("AB", size=(2, 1))
    atoms.rattle(0.05, seed=4)
    h = SlaterKosterSP3().get_hamiltonian(atoms)
    k = rng.random(3)
    assert np.allclose(h.eigh(k, gauge="lattice"), h.eigh(k, gauge="atomic"), atol=1e-10)
    with pytest.raises(ValueError, match="gauge"):
        h.hk(k, gauge="bogus")


def test_vacuum_separated_layers_do_not_interact():
    far = bilayer_graphene("AB", interlayer=15.0, vacuum=20.0)
    h = MoonKoshinoPz().get_hamiltonian(far)
    assert np.all(h.layers[h.pairs[:, 0]] == h.layers[h.pairs[:, 1]])
    single = Atoms("C", positions=[[0, 0, 5]], cell=[10, 10, 10], pbc=True)
    assert MoonKoshinoPz().get_hamiltonian(single).n_blocks == 1  # only the on-site block


def test_pz_projection_of_sp3_equals_pz_model():
    """For any geometry the p_z–p_z elements of the sp3 model are the p_z model's hoppings."""
    atoms = bilayer_graphene("AB", size=(2, 2))
    atoms.rattle(0.1, seed=11)
    proj = SlaterKosterSP3().get_hamiltonian(atoms).pz_projection()
    pz = MoonKoshinoPz().get_hamiltonian(atoms)
    assert np.array_equal(proj.pairs, pz.pairs) and np.array_equal(proj.shifts, pz.shifts)
    assert np.allclose(proj.blocks, pz.blocks, atol=1e-14)
    # a flat monolayer: p_z decouples by mirror symmetry, so the sp3 spectrum contains the p_z one
    flat = monolayer_graphene(size=(2, 1))
    e_sp3 = SlaterKosterSP3().get_hamiltonian(flat).eigh([0.1, 0.3, 0])[0]
    e_pz = MoonKoshinoPz().get_hamiltonian(flat).eigh([0.1, 0.3, 0])[0]
    assert np.all(np.min(np.abs(e_sp3[None, :] - e_pz[:, None]), axis=1) < 1e-10)
