"""Thermal Monte Carlo sampler: widths, agreement with phonopy, antithetic pairs, ZG, CLI.

Force constants come from the exactly harmonic spring model of ``test_phonons.py`` on a 3×3 AB
bilayer supercell (36 atoms, 108 modes), so every test is fast.  phonopy is the independent
reference: ``run_thermal_displacements`` on the supercell's Γ-centred commensurate 3×3×1 mesh with the
same cutoff (quantum), and the displacement correlation matrix of its ``RandomDisplacements``
(quantum and classical).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.constants as sc
from ase.io import read, write

from mlepi_ase.cli import main
from mlepi_ase.phonons import ImaginaryModeWarning
from mlepi_ase.sampling import (
    DRAW_BASES,
    LowFrequencyModeWarning,
    mean_square_displacement,
    mode_sigmas,
    sample_amplitudes,
    sample_configurations,
    thermal_displacement_covariance,
    thermal_displacement_variance,
    zg_configuration,
    zg_signs,
)
from test_phonons import spring_phonons

CUTOFF = 0.01  # THz, phonopy's RandomDisplacements default, used on both sides


@pytest.fixture(scope="module")
def result():
    return spring_phonons((3, 3))


@pytest.fixture(scope="module")
def modes(result):
    return result.supercell_modes()


def _prim_index(phonon) -> np.ndarray:
    """Primitive atom of every phonopy supercell atom."""
    p2p = phonon.primitive.p2p_map
    return np.array([p2p[s] for s in phonon.primitive.s2p_map])


def phonopy_thermal_displacements(result, temperature, freq_min=CUTOFF) -> np.ndarray:
    """phonopy's ⟨u²⟩ on the 3×3×1 Γ-centred commensurate mesh, mapped to supercell atoms, (36, 3)."""
    ph = result.phonopy
    ph.run_mesh([3, 3, 1], is_gamma_center=True, is_mesh_symmetry=False, with_eigenvectors=True)
    ph.run_thermal_displacements(temperatures=[temperature], freq_min=freq_min, exclude_gamma_acoustic=True)
    td = ph.thermal_displacements.thermal_displacements.reshape(-1, 3)
    return td[_prim_index(ph)]


def phonopy_correlation(result, temperature, classical) -> np.ndarray:
    """phonopy's displacement correlation matrix ⟨u_iα u_jβ⟩, shape (N, 3, N, 3)."""
    ph = result.phonopy
    ph.init_random_displacements(dist_func="classical" if classical else "quantum", cutoff_frequency=CUTOFF)
    with np.errstate(divide="ignore", invalid="ignore"):  # phonopy inverts σ², 0 at classical T = 0
        ph.random_displacements.run_correlation_matrix(temperature)
    return ph.random_displacements.uu.transpose(0, 2, 1, 3)


# ------------------------------------------------------------------------------------------------
# Widths and analytic averages
# ------------------------------------------------------------------------------------------------
def test_sigma_formula_with_independent_constants(modes):
    """σ² = (ħ/2ω) coth(ħω/2kT) and kT/ω², in amu·Å², with scipy's CODATA constants."""
    k = int(np.argmax(~modes.acoustic & (modes.frequencies > 5)))
    omega = 2 * np.pi * modes.frequencies[k] * 1e12
    amu_a2 = sc.atomic_mass * 1e-20
    for t in (0.0, 300.0):
        q = mode_sigmas(modes, t).sigma[k] ** 2
        coth = 1.0 if t == 0 else 1 / np.tanh(sc.hbar * omega / (2 * sc.k * t))
        assert np.isclose(q, sc.hbar / (2 * omega) * coth / amu_a2, rtol=1e-6)
    c = mode_sigmas(modes, 300.0, classical=True).sigma[k] ** 2
    assert np.isclose(c, sc.k * 300.0 / omega**2 / amu_a2, rtol=1e-6)
    # the quantum width tends to the classical one at high T and exceeds it always
    hot_q = mode_sigmas(modes, 1e5).sigma
    hot_c = mode_sigmas(modes, 1e5, classical=True).sigma
    inc = hot_c > 0
    np.testing.assert_allclose(hot_q[inc], hot_c[inc], rtol=1e-3)
    assert np.all(mode_sigmas(modes, 300).sigma[inc] > mode_sigmas(modes, 300, classical=True).sigma[inc])
    assert np.all(mode_sigmas(modes, 0.0, classical=True).sigma == 0)


@pytest.mark.parametrize("temperature", [0.0, 300.0])
def test_analytic_variance_equals_phonopy_thermal_displacements(result, modes, temperature):
    ours = thermal_displacement_variance(modes, temperature, cutoff_frequency=CUTOFF)
    ref = phonopy_thermal_displacements(result, temperature)
    np.testing.assert_allclose(ours, ref, rtol=1e-5)  # CODATA versions differ at 1e-7


@pytest.mark.parametrize("classical", [False, True])
def test_covariance_equals_phonopy_correlation_matrix(result, modes, classical):
    ours = thermal_displacement_covariance(modes, 300.0, classical=classical, cutoff_frequency=CUTOFF)
    ref = phonopy_correlation(result, 300.0, classical)
    assert ours.shape == (36, 3, 36, 3)
    np.testing.assert_allclose(ours, ref, atol=1e-5 * np.abs(ref).max())


# ------------------------------------------------------------------------------------------------
# Statistics of the samples
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("classical", [False, True])
@pytest.mark.parametrize("temperature", [0.0, 300.0])
def test_sampled_msd_matches_phonopy_within_4_standard_errors(result, modes, temperature, classical, rng):
    n = 3000
    confs = sample_configurations(modes, temperature, n, classical=classical, rng=rng)  # conftest seed
    mean, se = mean_square_displacement(confs)
    if classical:
        ref = np.einsum("iaia->ia", phonopy_correlation(result, temperature, True))
    else:
        ref = phonopy_thermal_displacements(result, temperature)
    if classical and temperature == 0.0:
        assert np.all(ref == 0) and np.all(mean == 0)  # no zero-point motion classically
        return
    z = (mean - ref) / se
    assert np.abs(z).max() < 4.0, f"max |z| = {np.abs(z).max():.2f}"
    # the same with the 12 lattice-averaged components (atoms of one configuration are correlated)
    u2 = np.array([c.arrays["displacements"] ** 2 for c in confs])
    idx = modes.primitive_index
    avg = np.stack([u2[:, idx == p].mean(axis=1) for p in range(4)], axis=1)  # (n, 4, 3)
    ref_avg = np.stack([ref[idx == p].mean(axis=0) for p in range(4)])
    z_avg = (avg.mean(0) - ref_avg) / (avg.std(0, ddof=1) / np.sqrt(n))
    assert np.abs(z_avg).max() < 4.0


def test_distribution_matches_phonopy_random_displacements(result, modes):
    """Two-sample check against phonopy's own sampler (get_random_displacements_at_temperature)."""
    ph = result.phonopy
    n = 2000
    ph.init_random_displacements(dist_func="quantum", cutoff_frequency=CUTOFF)
    u_ph = np.asarray(ph.get_random_displacements_at_temperature(300.0, n, random_seed=7))
    u_ours = np.array([c.arrays["displacements"] for c in sample_configurations(modes, 300.0, n, rng=7)])
    idx = modes.primitive_index

    def lattice_avg(u):
        return np.stack([(u[:, idx == p] ** 2).mean(axis=1) for p in range(4)], axis=1)

    a, b = lattice_avg(u_ph), lattice_avg(u_ours)
    se = np.sqrt(a.var(0, ddof=1) / n + b.var(0, ddof=1) / n)
    assert np.abs((a.mean(0) - b.mean(0)) / se).max() < 4.0
    # both conserve the centre of mass: acoustic modes are not displaced
    m = modes.masses[None, :, None]
    assert np.abs((m * u_ours).sum(axis=1)).max() < 1e-10
    assert np.abs((m * u_ph).sum(axis=1)).max() < 1e-10


def test_antithetic_pairs_have_exactly_zero_mean(modes):
    confs = sample_configurations(modes, 300.0, 10, antithetic=True, rng=3)
    u = np.array([c.arrays["displacements"] for c in confs])
    assert np.array_equal(u[0::2], -u[1::2])
    assert np.all(u.sum(axis=0) == 0.0)
    x = np.array([c.info["mode_amplitudes"] for c in confs])
    assert np.array_equal(x[0::2], -x[1::2])
    assert [c.info["antithetic_sign"] for c in confs] == [1, -1] * 5
    ref = modes.atoms.positions
    np.testing.assert_allclose(confs[0].positions + confs[1].positions, 2 * ref, atol=1e-12)
    mean, se = mean_square_displacement(confs, pairs=True)
    assert mean.shape == se.shape == (36, 3)
    with pytest.raises(ValueError, match="even"):
        sample_configurations(modes, 300.0, 5, antithetic=True, rng=3)


def test_same_seed_same_configurations(modes):
    a = sample_configurations(modes, 300.0, 4, rng=11)
    b = sample_configurations(modes, 300.0, 4, rng=np.random.default_rng(11))
    c = sample_configurations(modes, 300.0, 4, rng=12)
    for x, y in zip(a, b):
        assert np.array_equal(x.positions, y.positions)
        assert np.array_equal(x.info["mode_amplitudes"], y.info["mode_amplitudes"])
    assert not np.allclose(a[0].positions, c[0].positions)
    assert len(sample_configurations(modes, 300.0, 2, rng=None)) == 2


def test_configurations_keep_layers_and_record_amplitudes(modes, tmp_path):
    confs = sample_configurations(modes, 300.0, 3, rng=1)
    for k, c in enumerate(confs):
        np.testing.assert_array_equal(c.arrays["layer"], modes.atoms.arrays["layer"])
        np.testing.assert_allclose(c.positions - modes.atoms.positions, c.arrays["displacements"], atol=1e-12)
        np.testing.assert_allclose(modes.displacements(c.info["mode_amplitudes"]), c.arrays["displacements"],
                                   atol=1e-12)
        assert c.info["config_type"] == "thermal_300K" and c.info["sample_index"] == k
        assert c.info["temperature"] == 300.0 and c.info["sampling"] == "quantum"
    write(tmp_path / "s.extxyz", confs, format="extxyz")
    back = read(tmp_path / "s.extxyz", index=":")
    np.testing.assert_allclose(back[1].info["mode_amplitudes"], confs[1].info["mode_amplitudes"], rtol=1e-12)
    np.testing.assert_array_equal(back[1].arrays["layer"], modes.atoms.arrays["layer"])


def test_acoustic_and_low_frequency_modes_are_excluded_and_reported(result, modes):
    sel = mode_sigmas(modes, 300.0)
    assert len(sel.acoustic) == 3 and np.all(sel.sigma[sel.acoustic] == 0)
    assert len(sel.below_cutoff) == 0 and len(sel.imaginary) == 0
    # a cutoff above the shear modes (3.7 THz) removes them, says so, and matches phonopy's freq_min
    with pytest.warns(LowFrequencyModeWarning):
        high = mode_sigmas(modes, 300.0, cutoff_frequency=5.0)
    assert len(high.below_cutoff) > 0
    assert np.all(high.sigma[high.below_cutoff] == 0)
    assert np.all(np.abs(modes.frequencies[high.below_cutoff]) <= 5.0)
    ours = thermal_displacement_variance(modes, 300.0, cutoff_frequency=5.0)
    np.testing.assert_allclose(ours, phonopy_thermal_displacements(result, 300.0, freq_min=5.0), rtol=1e-5)


def test_imaginary_modes_are_reported_and_handled():
    unstable = spring_phonons((2, 2), k_inter=(-0.3, 0.05))
    with pytest.warns(ImaginaryModeWarning):
        modes = unstable.supercell_modes()
    with pytest.warns(ImaginaryModeWarning):
        sel_abs = mode_sigmas(modes, 300.0)
    assert len(sel_abs.imaginary) > 0
    assert np.all(sel_abs.sigma[sel_abs.imaginary] > 0)  # phonopy's |ω| convention
    with pytest.warns(ImaginaryModeWarning):
        sel_ex = mode_sigmas(modes, 300.0, imaginary="exclude")
    assert np.all(sel_ex.sigma[sel_ex.imaginary] == 0)


def test_bad_input_gives_clear_errors(modes):
    with pytest.raises(ValueError, match="temperature"):
        sample_configurations(modes, -1.0, 4)
    with pytest.raises(ValueError, match="temperature"):
        mode_sigmas(modes, float("nan"))
    for n in (0, -3):
        with pytest.raises(ValueError, match="positive"):
            sample_configurations(modes, 300.0, n)
    with pytest.raises(ValueError, match="integer"):
        sample_configurations(modes, 300.0, 2.5)
    with pytest.raises(ValueError, match="cutoff"):
        mode_sigmas(modes, 300.0, cutoff_frequency=-1)
    with pytest.raises(ValueError, match="imaginary"):
        mode_sigmas(modes, 300.0, imaginary="keep")
    with pytest.raises(TypeError, match="SupercellModes"):
        mode_sigmas("modes", 300.0)
    with pytest.raises(ValueError, match="displacements"):
        mean_square_displacement(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="even"):
        sample_amplitudes(np.ones(3), 3, antithetic=True)


# ------------------------------------------------------------------------------------------------
# Common random numbers: the draw basis
# ------------------------------------------------------------------------------------------------
def _displacements(modes, temperature, n, seed, basis):
    confs = sample_configurations(modes, temperature, n, rng=seed, draw_basis=basis)
    return np.array([c.arrays["displacements"] for c in confs])


def _rotated_degenerate_basis(modes, angle=0.7):
    """The same modes with every exactly degenerate pair of eigenvectors rotated by ``angle`` and the
    order inside each degenerate group reversed (an equally valid eigenbasis)."""
    f, e = modes.frequencies, modes.eigenvectors.copy()
    groups, start = [], 0
    for k in range(1, len(f) + 1):
        if k == len(f) or abs(f[k] - f[start]) > 1e-9 * max(1.0, abs(f[start])):
            if k - start > 1 and not modes.acoustic[start:k].any():
                groups.append(np.arange(start, k))
            start = k
    assert len(groups) >= 5, "the 3×3 AB bilayer has degenerate modes"
    c, s = np.cos(angle), np.sin(angle)
    for g in groups:
        a, b = e[:, g[0]].copy(), e[:, g[1]].copy()
        e[:, g[0]], e[:, g[1]] = c * a + s * b, -s * a + c * b
        e[:, g] = e[:, g[::-1]]
    return dataclasses.replace(modes, eigenvectors=e), groups


def test_cartesian_draws_do_not_depend_on_the_basis_of_degenerate_modes(modes):
    other, groups = _rotated_degenerate_basis(modes)
    np.testing.assert_allclose(other.eigenvectors.T @ other.eigenvectors, np.eye(modes.nmodes), atol=1e-12)
    u_a = _displacements(modes, 300.0, 4, 5, "cartesian")
    u_b = _displacements(other, 300.0, 4, 5, "cartesian")
    np.testing.assert_allclose(u_b, u_a, atol=1e-12 * np.abs(u_a).max())
    # the default basis hands the same deviates to the rotated patterns: other configurations (control)
    v_a = _displacements(modes, 300.0, 4, 5, "modes")
    v_b = _displacements(other, 300.0, 4, 5, "modes")
    assert np.sqrt(((v_a - v_b) ** 2).sum() / (v_a**2).sum()) > 0.1


def test_cartesian_amplitudes_are_projections_of_one_gaussian_vector(modes):
    confs = sample_configurations(modes, 300.0, 6, antithetic=True, rng=9, draw_basis="cartesian")
    x = np.array([c.info["mode_amplitudes"] for c in confs])
    z = np.random.default_rng(9).standard_normal((3, modes.nmodes))
    sigma = mode_sigmas(modes, 300.0).sigma
    np.testing.assert_allclose(x[0::2], (z @ modes.eigenvectors) * sigma, rtol=1e-12, atol=1e-15)
    assert np.array_equal(x[1::2], -x[0::2])
    u = np.array([c.arrays["displacements"] for c in confs])
    assert np.array_equal(u[1::2], -u[0::2])
    np.testing.assert_allclose(u[0], modes.displacements(x[0]), atol=1e-12)
    assert all(c.info["draw_basis"] == "cartesian" for c in confs)
    # translations carry no weight: the centre of mass stays put
    assert np.abs((modes.masses[None, :, None] * u).sum(axis=1)).max() < 1e-10


@pytest.mark.parametrize("temperature", [0.0, 300.0])
def test_cartesian_draws_have_the_thermal_covariance(result, modes, temperature, rng):
    n = 3000
    confs = sample_configurations(modes, temperature, n, rng=rng, draw_basis="cartesian")
    mean, se = mean_square_displacement(confs)
    ref = phonopy_thermal_displacements(result, temperature)
    assert np.abs((mean - ref) / se).max() < 4.0
    # normal coordinates: independent with variance σ_ν² (whitened covariance = identity)
    x = np.array([c.info["mode_amplitudes"] for c in confs])
    sel = mode_sigmas(modes, temperature)
    w = x[:, sel.included] / sel.sigma[sel.included]
    cov = w.T @ w / n
    assert np.abs(cov - np.eye(len(cov))).max() < 6.0 / np.sqrt(n)  # entries have SE ≤ √2/√n
    assert np.all(x[:, ~sel.included] == 0.0)


def test_cartesian_draws_of_two_force_models_differ_as_their_covariances_do(result, modes):
    """E|u_a − u_b|² = ‖A_a − A_b‖_F² with A = M^(−1/2) C^(1/2) (same z), measured over many draws."""
    other = spring_phonons((3, 3), k_intra=(20.4, 5.9)).supercell_modes()  # springs 2 % apart
    t, n = 300.0, 2000
    u_a = _displacements(modes, t, n, 4, "cartesian").reshape(n, -1)
    u_b = _displacements(other, t, n, 4, "cartesian").reshape(n, -1)
    inv_sqrt_m = np.repeat(1.0 / np.sqrt(modes.masses), 3)

    def sqrt_cov(m):
        s = mode_sigmas(m, t).sigma
        return inv_sqrt_m[:, None] * (m.eigenvectors * s) @ m.eigenvectors.T

    expected = ((sqrt_cov(modes) - sqrt_cov(other)) ** 2).sum()
    d2 = ((u_a - u_b) ** 2).sum(axis=1)
    assert abs(d2.mean() - expected) < 4.0 * d2.std(ddof=1) / np.sqrt(n)
    msd = (u_a**2).sum(axis=1).mean()
    assert d2.mean() < 0.01 * msd  # paired draws: ~1 % of the displacement, against 2 × 100 % unpaired


def test_bad_draw_basis_is_refused(modes):
    from mlepi_ase.cli import build_parser

    assert DRAW_BASES == ("modes", "cartesian")
    sample_parser = build_parser()._subparsers._group_actions[0].choices["sample"]
    choices = next(a.choices for a in sample_parser._actions if a.dest == "draw_basis")
    assert tuple(choices) == DRAW_BASES  # the command line offers exactly the sampler's bases
    with pytest.raises(ValueError, match="draw_basis"):
        sample_configurations(modes, 300.0, 2, draw_basis="normal")


# ------------------------------------------------------------------------------------------------
# Zacharias–Giustino special displacement
# ------------------------------------------------------------------------------------------------
def _lattice_tensor_residual(modes, u, target_cov):
    """Relative mismatch of the lattice-averaged displacement tensors (independent re-implementation)."""
    res, norm = 0.0, 0.0
    for p in np.unique(modes.primitive_index):
        sel = modes.primitive_index == p
        got = np.einsum("ka,kb->ab", u[sel], u[sel]) / sel.sum()
        want = np.mean([target_cov[k, :, k, :] for k in np.flatnonzero(sel)], axis=0)
        res += ((got - want) ** 2).sum()
        norm += (want**2).sum()
    return np.sqrt(res / norm)


def test_zg_configuration(modes):
    sel = mode_sigmas(modes, 300.0)
    zg = zg_configuration(modes, 300.0, antithetic=True, rng=0)
    assert len(zg) == 2
    x = zg[0].info["mode_amplitudes"]
    np.testing.assert_allclose(np.abs(x), sel.sigma, rtol=1e-12)  # |x_ν| = σ_ν exactly
    assert np.array_equal(zg[1].arrays["displacements"], -zg[0].arrays["displacements"])
    cov = thermal_displacement_covariance(modes, 300.0)
    r_zg = _lattice_tensor_residual(modes, zg[0].arrays["displacements"], cov)
    assert np.isclose(r_zg, zg[0].info["zg_residual"], rtol=1e-8)
    # the sign optimisation beats the plain alternating pattern and every random configuration
    _, r_alt = zg_signs(modes, sel.sigma, n_starts=1, max_sweeps=0)
    u_mc = [c.arrays["displacements"] for c in sample_configurations(modes, 300.0, 50, rng=5)]
    r_mc = [_lattice_tensor_residual(modes, u, cov) for u in u_mc]
    assert r_zg < r_alt and r_zg < min(r_mc)
    again = zg_configuration(modes, 300.0, rng=0)[0]
    assert np.array_equal(again.positions, zg[0].positions)
    assert zg[0].info["config_type"] == "zg_300K"


# ------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------
def test_cli_sample(result, tmp_path, capsys):
    fc = result.save(tmp_path / "phonopy_params.yaml")
    out = tmp_path / "s.extxyz"
    args = ["sample", str(fc), "-T", "0", "300", "-n", "4", "--antithetic", "--seed", "3", "-o", str(out)]
    assert main(args) == 0
    frames = read(out, index=":")
    assert len(frames) == 8
    assert [f.info["config_type"] for f in frames] == ["thermal_0K"] * 4 + ["thermal_300K"] * 4
    assert np.array_equal(frames[0].arrays["displacements"], -frames[1].arrays["displacements"])
    assert "layer" in frames[0].arrays and len(frames[0].info["mode_amplitudes"]) == 108
    first = out.read_bytes()
    assert main(args) == 0 and out.read_bytes() == first  # same seed, same file
    cart = tmp_path / "c.extxyz"
    assert main(["sample", str(fc), "-T", "300", "-n", "2", "--seed", "3", "--draw-basis", "cartesian",
                 "-o", str(cart)]) == 0
    frames_c = read(cart, index=":")
    assert frames_c[0].info["draw_basis"] == "cartesian" and frames[4].info["draw_basis"] == "modes"
    modes3 = result.supercell_modes()
    z = np.random.default_rng(3).standard_normal(modes3.nmodes)
    x = (z @ modes3.eigenvectors) * mode_sigmas(modes3, 300.0).sigma
    np.testing.assert_allclose(frames_c[0].arrays["displacements"], modes3.displacements(x), atol=1e-7)  # 8 decimals
    zg = tmp_path / "zg.extxyz"
    assert main(["sample", str(fc), "-T", "300", "--zg", "--classical", "-o", str(zg)]) == 0
    assert read(zg, index=":")[0].info["sampling"] == "zg-classical"
    capsys.readouterr()
    for bad, msg in (
        (["-T", "-5", "-n", "2"], "temperature"),
        (["-T", "300", "-n", "0"], "positive"),
        (["-T", "300"], "n-samples"),
        (["-T", "300", "-n", "2", "-s", "4", "4", "1"], "not commensurate"),
        (["-T", "300", "--zg", "--draw-basis", "cartesian"], "draw-basis"),
    ):
        assert main(["sample", str(fc), *bad, "-o", str(tmp_path / "x.extxyz")]) == 2
        assert msg in capsys.readouterr().err
    assert main(["sample", str(tmp_path / "missing.yaml"), "-T", "300", "-n", "2"]) == 2
