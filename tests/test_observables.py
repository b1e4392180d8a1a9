"""Observables: band unfolding sum rules, band energies, Fermi velocity vs the analytic model, gap, A(k, E)."""

import pickle
from functools import partial

import numpy as np
import pytest
import scipy.constants as const
from ase.build import make_supercell

from mlepi_ase.observables import (
    ObservableSpec,
    UnfoldedSpectrum,
    UnfoldingMap,
    _fermi_kpoints,
    band_energies,
    band_gap,
    bilayer_bands_model,
    evaluate_configuration,
    evaluate_hamiltonian,
    fermi_velocity,
    plot_spectral_function,
    primitive_kpoint,
    spectral_function,
    unfold,
)
from mlepi_ase.reference import MoonKoshinoPz, SlaterKosterSP3
from mlepi_ase.reference.slater_koster import XWCH_ONSITE
from mlepi_ase.structures import bilayer_graphene, monolayer_graphene
from mlepi_ase.tb import special_path

MODELS = [MoonKoshinoPz, SlaterKosterSP3]
SQRT3 = np.array([[1, 1, 0], [-1, 2, 0], [0, 0, 1]])  # √3×√3 R30° (a1, a2 at 60°), 3 cells
OBLIQUE = np.array([[2, 1, 0], [-1, 1, 0], [0, 0, 1]])  # a non-hexagonal 3-cell supercell


def _k_cart(atoms, k_red):
    return 2 * np.pi * np.linalg.solve(np.asarray(atoms.cell), np.asarray(k_red))


def _v_from_hoppings(h, atoms, src, dst):
    """ħv = |∂f/∂k_x| at K of f(k) = Σ t e^{ik·d} over the stored p_z hoppings src → dst (eV·Å)."""
    k = _k_cart(atoms, special_path(atoms).special_points["K"])
    m = (h.pairs[:, 0] == src) & (h.pairs[:, 1] == dst)
    iz = h.norb_per_atom[0] - 1  # p_z is the last orbital of both bases
    t = h.blocks[m, iz, iz]
    d = atoms.positions[h.pairs[m, 1]] + h.shifts[m] @ atoms.cell - atoms.positions[src]
    return abs(np.sum(1j * d[:, 0] * t * np.exp(1j * d @ k)))


def _gamma1_from_hoppings(h, atoms):
    """|γ1(K)|: Bloch sum at K of the hoppings between the dimer sites 1 (bottom) and 2 (top)."""
    assert np.allclose(atoms.positions[1, :2], atoms.positions[2, :2])
    k = _k_cart(atoms, special_path(atoms).special_points["K"])
    m = (h.pairs[:, 0] == 1) & (h.pairs[:, 1] == 2)
    iz = h.norb_per_atom[0] - 1
    d = atoms.positions[2] + h.shifts[m] @ atoms.cell - atoms.positions[1]
    return abs(np.sum(h.blocks[m, iz, iz] * np.exp(1j * d @ k)))


def _folding_partners(u, k):
    """The n_c primitive k that fold onto the same supercell K as k."""
    m_inv = np.linalg.inv(u.matrix.astype(float))
    grid = np.array([[i, j, 0] for i in range(-3, 4) for j in range(-3, 4)], dtype=float)
    g = grid @ m_inv.T  # primitive reduced coordinates of supercell reciprocal vectors
    g = g - np.floor(g + 1e-9)
    uniq = np.unique(np.round(g, 9), axis=0)
    assert len(uniq) == u.n_cells
    return k + uniq


def _supercells():
    prim = bilayer_graphene("AB")
    return [
        ("2x2", prim, bilayer_graphene("AB", size=(2, 2))),
        ("3x3", prim, bilayer_graphene("AB", size=(3, 3))),
        ("sqrt3", prim, make_supercell(prim, SQRT3)),
        ("oblique", prim, make_supercell(prim, OBLIQUE)),
    ]


# ------------------------------------------------------------------------------------ mapping
def test_unfolding_map_repeat_and_make_supercell():
    prim = bilayer_graphene("AB")
    u = UnfoldingMap.from_structures(prim, bilayer_graphene("AB", size=(3, 2)))
    assert np.array_equal(u.matrix, np.diag([3, 2, 1])) and u.n_cells == 6
    assert np.array_equal(np.bincount(u.primitive_index), [6, 6, 6, 6])
    sc = make_supercell(prim, SQRT3)
    u = UnfoldingMap.from_structures(prim, sc)
    assert np.array_equal(u.matrix, SQRT3) and u.n_cells == 3
    # every supercell atom is its primitive atom translated by a lattice vector
    f = (sc.positions - prim.positions[u.primitive_index]) @ np.linalg.inv(prim.cell)
    assert np.abs(f - np.rint(f)).max() < 1e-9
    # K = M k: the primitive K folds onto the supercell Γ for √3×√3 and 3×3
    big_k = u.fold(primitive_kpoint(u, "K"))[0]
    assert np.abs(big_k - np.rint(big_k)).max() < 1e-12
    big_k = u.fold([0.5, 0.0, 0.0])[0]  # M folds onto a zone-boundary point of the √3 cell
    assert np.abs(big_k - np.rint(big_k)).max() > 0.1


def test_unfolding_map_bad_input():
    prim = bilayer_graphene("AB")
    sc = bilayer_graphene("AB", size=(2, 2))
    strained = sc.copy()
    strained.set_cell(sc.cell * 1.01, scale_atoms=True)
    with pytest.raises(ValueError, match="integer combination"):
        UnfoldingMap.from_structures(prim, strained)
    rattled = sc.copy()
    rattled.positions[3] += [0.3, 0.0, 0.0]
    with pytest.raises(ValueError, match="not a lattice translate"):
        UnfoldingMap.from_structures(prim, rattled)
    with pytest.raises(ValueError, match="atoms, expected"):
        UnfoldingMap.from_structures(prim, sc[:-1])
    u = UnfoldingMap.from_structures(prim, sc)
    h_other = MoonKoshinoPz().get_hamiltonian(bilayer_graphene("AB", size=(3, 3)))
    with pytest.raises(ValueError, match="atoms, the unfolding map"):
        unfold(h_other, u, [0, 0, 0])
    far = sc.copy()
    far.positions[0] += [1.5, 0, 0]
    with pytest.raises(ValueError, match="from its reference site"):
        unfold(MoonKoshinoPz().get_hamiltonian(far), u, [0, 0, 0])
    mislabelled = sc.copy()
    mislabelled.set_array("layer", np.tile([0, 1], 8))  # right order is [0, 0, 1, 1] per cell
    with pytest.raises(ValueError, match="in layer"):
        unfold(MoonKoshinoPz().get_hamiltonian(mislabelled), u, [0, 0, 0])
    h = MoonKoshinoPz().get_hamiltonian(sc)
    h.overlaps = np.zeros_like(h.blocks)
    with pytest.raises(ValueError, match="orthogonal"):
        unfold(h, u, [0, 0, 0])
    with pytest.raises(ValueError, match="unknown special point"):
        primitive_kpoint(u, "X")


# ------------------------------------------------------------------------------------ unfolding
# sp3 on the 3-4-cell supercells only (the 3x3 runs with the cheaper p_z model)
@pytest.mark.parametrize(
    "model,case",
    [(MoonKoshinoPz, c) for c in range(4)] + [(SlaterKosterSP3, c) for c in (0, 2, 3)],
    ids=["pz-2x2", "pz-3x3", "pz-sqrt3", "pz-oblique", "sp3-2x2", "sp3-sqrt3", "sp3-oblique"],
)
def test_unfolding_pristine_supercell_gives_primitive_bands(model, case, rng):
    name, prim, sc = _supercells()[case]
    u = UnfoldingMap.from_structures(prim, sc)
    h = model().get_hamiltonian(sc)
    hp = model().get_hamiltonian(prim)
    kpts = np.vstack([[[0, 0, 0], [1 / 3, 1 / 3, 0], [0.5, 0, 0]], np.c_[rng.random((3, 2)), np.zeros(3)]])
    spec = unfold(h, u, kpts)
    n_prim = hp.n_orbitals
    assert spec.n_primitive_orbitals == n_prim
    assert np.allclose(spec.weights.sum(axis=1), n_prim, atol=1e-10)
    prim_e = hp.eigh(kpts)
    for i in range(len(kpts)):
        e, w = spec.energies[i], spec.weights[i]
        # weight 1 per primitive band at the primitive energies, zero elsewhere
        levels = np.unique(np.round(prim_e[i], 7))
        on_band = np.zeros(len(e), dtype=bool)
        for lev in levels:
            mult = np.sum(np.abs(prim_e[i] - lev) < 1e-6)
            near = np.abs(e - lev) < 1e-6
            on_band |= near
            assert w[near].sum() == pytest.approx(mult, abs=1e-9)
        assert w[~on_band].sum() < 1e-10
    # partition band energies are the primitive eigenvalues
    assert np.abs(band_energies(spec) - prim_e).max() < 1e-9


@pytest.mark.parametrize("model", MODELS)
def test_unfolding_sum_rules_displaced_and_rewrapped(model, rng):
    prim = bilayer_graphene("AB")
    ref = bilayer_graphene("AB", size=(2, 2))
    u = UnfoldingMap.from_structures(prim, ref)
    atoms = ref.copy()
    atoms.positions += rng.normal(scale=0.08, size=atoms.positions.shape)
    h = model().get_hamiltonian(atoms)
    k = np.array([0.137, 0.291, 0.0])
    partners = _folding_partners(u, k)
    s = unfold(h, u, partners)
    assert np.allclose(s.energies, s.energies[0], atol=1e-12)  # all fold onto one K
    assert np.allclose(s.weights.sum(axis=0), 1.0, atol=1e-10)  # Σ_{k→K} W_n(k) = 1 for every state
    assert np.allclose(s.weights.sum(axis=1), h.n_orbitals / u.n_cells, atol=1e-10)  # Σ_n W_n(k) = n_orb,prim
    assert s.weights.min() > -1e-14 and s.weights.max() < 1 + 1e-12
    # displaced states are no longer pure primitive Bloch states
    assert s.weights.max() < 1 - 1e-4
    # moving atoms into other periodic images changes no weight
    moved = atoms.copy()
    moved.positions[0] += atoms.cell[0]
    moved.positions[5] -= atoms.cell[0] + atoms.cell[1]
    h2 = model().get_hamiltonian(moved)
    s2 = unfold(h2, u, partners)
    assert np.abs(s2.energies - s.energies).max() < 1e-10
    assert np.abs(s2.weights - s.weights).max() < 1e-10


def test_band_energies_continuous_through_split_degeneracies(rng):
    """Tiny displacements split degenerate levels and mix eigenvectors; the band energies barely move."""
    prim = bilayer_graphene("AB")
    ref = bilayer_graphene("AB", size=(3, 3))
    u = UnfoldingMap.from_structures(prim, ref)
    kpts = [primitive_kpoint(u, "K"), [0, 0, 0]]
    e0 = band_energies(unfold(MoonKoshinoPz().get_hamiltonian(ref), u, kpts))
    direction = rng.normal(size=ref.positions.shape)
    prev = 0.0
    for eps in (1e-6, 1e-4, 1e-2):
        atoms = ref.copy()
        atoms.positions += eps * direction
        s = unfold(MoonKoshinoPz().get_hamiltonian(atoms), u, kpts)
        e, w = band_energies(s, return_widths=True)
        change = np.abs(e - e0).max()
        assert change < 50 * eps + 1e-9  # at most linear in the displacement (≈ dt/dr · u)
        assert change >= prev
        prev = change
        assert np.all(w >= 0) and np.all(w < 0.1)
        # the plain centroids conserve the first moment of the spectral weight
        first = band_energies(s, smoothing=None)
        assert np.allclose(first.sum(axis=1), (s.weights * s.energies).sum(axis=1), atol=1e-9)


def test_peak_energies_ignore_disorder_tails():
    """Disorder spreads a little weight far away: it moves first moments, not the peaks."""
    prim = bilayer_graphene("AB")
    ref = bilayer_graphene("AB", size=(4, 4))
    u = UnfoldingMap.from_structures(prim, ref)
    k = [primitive_kpoint(u, "K")]
    e0 = band_energies(unfold(MoonKoshinoPz().get_hamiltonian(ref), u, k))[0]
    atoms = ref.copy()
    atoms.rattle(0.01, seed=1)
    s = unfold(MoonKoshinoPz().get_hamiltonian(atoms), u, k)
    peak = band_energies(s)[0]
    first = band_energies(s, smoothing=None)[0]
    dimer = [0, 3]  # the split-off bands at E_D ± γ1
    assert np.abs(peak[dimer] - e0[dimer]).max() < 0.3 * np.abs(first[dimer] - e0[dimer]).min()
    assert np.allclose(band_energies(s, smoothing=0.05), peak, atol=2e-3)  # insensitive to Δ
    with pytest.raises(ValueError, match="smoothing"):
        band_energies(s, smoothing=-1.0)


def test_window_mode_and_sparse_solver_match_dense():
    prim = bilayer_graphene("AB")
    ref = bilayer_graphene("AB", size=(3, 3))
    atoms = ref.copy()
    atoms.rattle(0.03, seed=3)
    u = UnfoldingMap.from_structures(prim, ref)
    h = MoonKoshinoPz().get_hamiltonian(atoms)
    k = [primitive_kpoint(u, "K")]
    dense = unfold(h, u, k)
    e_all = band_energies(dense)
    assert e_all.shape == (1, 4)
    # a window holding all states is the full partition
    assert np.allclose(band_energies(dense, window=(-20, 20)), e_all, atol=1e-12)
    # shift-invert states near the Dirac energy, partitioned in their window, equal the dense ones there
    sd = XWCH_ONSITE["p"] + 0.788
    sparse = unfold(h, u, k, sigma=sd, n_states=20)
    assert not sparse.complete
    win = (sparse.energies.min() - 1e-9, sparse.energies.max() + 1e-9)
    e_sparse = band_energies(sparse, n_bands=4)
    assert np.allclose(e_sparse, band_energies(dense, window=win, n_bands=4), atol=1e-9)
    assert np.abs(e_sparse - e_all).max() < 0.01  # the 20 states hold nearly all π weight at K
    with pytest.warns(RuntimeWarning, match="window cuts through bands"):
        band_energies(dense, window=(sd - 0.1, sd + 0.1), n_bands=2)
    with pytest.raises(ValueError, match="both sigma and n_states"):
        unfold(h, u, k, sigma=sd)


# ------------------------------------------------------------------------------------ Fermi velocity
@pytest.mark.parametrize("model,size", [(MoonKoshinoPz, (3, 3)), (SlaterKosterSP3, (2, 2))])
def test_fermi_velocity_monolayer_matches_hoppings(model, size):
    prim = monolayer_graphene()
    sc = monolayer_graphene(size=size)
    u = UnfoldingMap.from_structures(prim, sc)
    fit = fermi_velocity(model().get_hamiltonian(sc), u)
    assert fit.model == "monolayer"
    v_hop = _v_from_hoppings(model().get_hamiltonian(prim), prim, 0, 1)
    assert fit.v == pytest.approx(v_hop, rel=5e-3)
    assert fit.v_stderr < 0.02 * fit.v
    assert fit.e0 - XWCH_ONSITE["p"] == pytest.approx(0.788, abs=5e-3)
    assert np.isnan(fit.gamma1)
    v_si = fit.v * 1e-10 * const.e / const.hbar / 1e6  # CODATA 2018; ASE's ħ (CODATA 2014) differs by 1e-8
    assert fit.v_si == pytest.approx(v_si, rel=1e-7)
    assert fit.as_dict()["v_F_si"] == pytest.approx(v_si, rel=1e-7)


@pytest.mark.parametrize("model,size", [(MoonKoshinoPz, (3, 3)), (SlaterKosterSP3, (2, 2))])
def test_fermi_velocity_ab_bilayer_matches_model(model, size):
    prim = bilayer_graphene("AB")
    sc = bilayer_graphene("AB", size=size)
    u = UnfoldingMap.from_structures(prim, sc)
    fit = fermi_velocity(model().get_hamiltonian(sc), u)
    assert fit.model == "bilayer"
    hp = model().get_hamiltonian(prim)
    v_hop = _v_from_hoppings(hp, prim, 0, 1)  # in-layer hoppings of the bottom layer
    gamma1 = _gamma1_from_hoppings(hp, prim)
    assert fit.v == pytest.approx(v_hop, rel=5e-3)
    assert fit.gamma1 == pytest.approx(gamma1, rel=5e-3)
    assert gamma1 == pytest.approx(0.338, abs=2e-3)
    assert fit.gamma1_stderr < 0.01 * fit.gamma1
    # the supercell fit is the primitive-cell fit (unfolding is exact for the pristine cell)
    fit_p = fermi_velocity(hp, UnfoldingMap.from_structures(prim, prim))
    assert fit.v == pytest.approx(fit_p.v, rel=1e-8)
    assert fit.gamma1 == pytest.approx(fit_p.gamma1, rel=1e-8)
    # one direction without its 60° partner is biased by trigonal warping, the pair is not
    one = fermi_velocity(hp, UnfoldingMap.from_structures(prim, prim), directions=(0.0,))
    assert abs(one.v - v_hop) > abs(fit.v - v_hop)


def test_bilayer_model_fit_recovers_parameters():
    """Bands generated by the model with known (v, γ1, E_0) are fitted back exactly (band order, signs)."""
    q = np.array([0.0, 0.01, 0.02, 0.03])
    bands = bilayer_bands_model(q, 6.1, 0.41, 1.25)
    assert np.allclose(bands[0], [1.25 - 0.41, 1.25, 1.25, 1.25 + 0.41])
    assert np.all(np.diff(bands, axis=1) >= 0)
    prim = bilayer_graphene("AB")
    u = UnfoldingMap.from_structures(prim, prim)
    kpts, qs, _ = _fermi_kpoints(u, (0.01, 0.02, 0.03), (0.0, 60.0), "K", True)
    synthetic = UnfoldedSpectrum(
        kpts=kpts, supercell_kpts=kpts, energies=bilayer_bands_model(qs, 6.1, 0.41, 1.25),
        weights=np.ones((len(qs), 4)), complete=False, n_primitive_orbitals=4, n_cells=1,
    )
    fit = fermi_velocity(None, u, "bilayer", q=(0.01, 0.02, 0.03), directions=(0.0, 60.0), spectrum=synthetic)
    assert (fit.v, fit.gamma1, fit.e0) == pytest.approx((6.1, 0.41, 1.25), rel=1e-7)
    assert fit.rms_residual < 1e-9
    mono = UnfoldedSpectrum(
        kpts=kpts, supercell_kpts=kpts, energies=0.3 + np.outer(qs, [-4.4, 4.4]),
        weights=np.ones((len(qs), 2)), complete=False, n_primitive_orbitals=2, n_cells=1,
    )
    fit = fermi_velocity(None, u, "monolayer", q=(0.01, 0.02, 0.03), directions=(0.0, 60.0), spectrum=mono)
    assert (fit.v, fit.e0) == pytest.approx((4.4, 0.3), rel=1e-7)


def test_fermi_velocity_bad_input():
    prim = bilayer_graphene("AA")
    u = UnfoldingMap.from_structures(prim, prim)
    h = MoonKoshinoPz().get_hamiltonian(prim)
    with pytest.raises(ValueError, match="AB stacking"):
        fermi_velocity(h, u)
    prim = bilayer_graphene("AB")
    u = UnfoldingMap.from_structures(prim, prim)
    h = MoonKoshinoPz().get_hamiltonian(prim)
    with pytest.raises(ValueError, match="positive distances"):
        fermi_velocity(h, u, q=(0.0, 0.01))
    with pytest.raises(ValueError, match="model must be"):
        fermi_velocity(h, u, model="trilayer")


# ------------------------------------------------------------------------------------ gap, A(k, E), spec
def test_gap_opened_by_layer_asymmetry_equals_potential_difference():
    """An interlayer potential U opens a gap of exactly U at K in AB bilayer graphene; none without it."""
    prim = bilayer_graphene("AB")
    sc = bilayer_graphene("AB", size=(3, 3))
    u = UnfoldingMap.from_structures(prim, sc)
    spec = ObservableSpec(u, kpoints=("K",), fermi_velocity=None)
    h = MoonKoshinoPz().get_hamiltonian(sc)
    pristine = evaluate_hamiltonian(h, spec)
    assert abs(pristine["gap_K"]) < 1e-9
    U = 0.1
    onsite = (h.pairs[:, 0] == h.pairs[:, 1]) & np.all(h.shifts == 0, axis=1)
    h.blocks[onsite, 0, 0] += np.where(h.layers[h.pairs[onsite, 0]] == 1, U / 2, -U / 2)
    biased = evaluate_hamiltonian(h, spec)
    assert biased["gap_K"] == pytest.approx(U, abs=1e-9)
    assert 0 < biased["gap"] <= U + 1e-9  # sampled supercell k include K (3x3 folds K onto Γ)


def test_band_gap_function():
    e = np.array([[-1.0, -0.2, 0.5, 2.0], [-1.1, -0.1, 0.3, 1.5]])
    g = band_gap(e)
    assert g["gap"] == pytest.approx(0.4) and g["direct_gap"] == pytest.approx(0.4)
    assert (g["k_vbm"], g["k_cbm"]) == (1, 1)
    assert band_gap(np.array([[-1.0, 0.2, 0.1, 1.0]]))["gap"] == 0.0
    with pytest.raises(ValueError, match="n_occupied"):
        band_gap(e, n_occupied=4)


def test_spectral_function_pristine_is_primitive_lorentzians(tmp_path):
    prim = bilayer_graphene("AB")
    sc = bilayer_graphene("AB", size=(2, 2))
    u = UnfoldingMap.from_structures(prim, sc)
    path = special_path(prim, "GMKG", 12)
    grid = np.linspace(0.0, 9.0, 301)
    eta = 0.05
    a = spectral_function(unfold(MoonKoshinoPz().get_hamiltonian(sc), u, path.kpts), grid, eta)
    ep = MoonKoshinoPz().get_hamiltonian(prim).eigh(path.kpts)
    expected = ((eta / np.pi) / ((grid[None, None, :] - ep[:, :, None]) ** 2 + eta**2)).sum(axis=1)
    assert a.shape == (12, 301)
    assert np.abs(a - expected).max() < 1e-8 * expected.max()
    png = tmp_path / "akw.png"
    x, xs, xl = path.get_linear_kpoint_axis()
    plot_spectral_function(a, x, grid, png, ticks=(xs, xl), overlay=ep)
    assert png.stat().st_size > 1000
    with pytest.raises(ValueError, match="broadening"):
        spectral_function(unfold(MoonKoshinoPz().get_hamiltonian(sc), u, path.kpts[:1]), grid, 0.0)


def test_evaluate_configuration_is_picklable_and_complete(rng):
    prim = bilayer_graphene("AB")
    ref = bilayer_graphene("AB", size=(2, 2))
    u = UnfoldingMap.from_structures(prim, ref)
    grid = np.linspace(3.5, 5.5, 41)
    spec = ObservableSpec(u, q=(0.02, 0.04), directions=(0.0, 60.0), spectral_kpts=special_path(prim, "GK", 5).kpts,
                          spectral_energies=grid)
    func = pickle.loads(pickle.dumps(partial(evaluate_configuration, calculator=SlaterKosterSP3(), spec=spec)))
    atoms = ref.copy()
    atoms.positions += rng.normal(scale=0.03, size=atoms.positions.shape)
    out = func(atoms)
    for key in ("E_G", "E_K", "E_M"):
        assert out[key].shape == (4,) and np.all(np.diff(out[key]) >= 0)
    for key in ("v_F", "v_F_si", "gamma1", "E_0", "gap", "direct_gap", "gap_K"):
        assert np.isfinite(out[key])
    assert out["A_kE"].shape == (5, 41)
    assert 4.5 < out["v_F"] < 6.0 and 0.2 < out["gamma1"] < 0.5
    with pytest.raises(ValueError, match="spectral_kpts and spectral_energies"):
        ObservableSpec(u, spectral_kpts=[[0, 0, 0]])
