"""phonopy interoperation: conversions, finite-difference force constants, bands, supercell modes.

Most tests use :class:`SpringCalculator`, an exactly harmonic Born–von Kármán spring model written
here, whose force constants are known analytically; a few use the LAMMPS reference force field on
small supercells (skipped, naming why, if LAMMPS cannot run).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.neighborlist import neighbor_list

from mlepi_ase.phonons import (
    DEFAULT_SYMPREC,
    BandStructureData,
    ImaginaryModeWarning,
    PhononResult,
    THZ_TO_CM1,
    ase_to_phonopy,
    canonical_mode_basis,
    classify_layer_modes,
    compute_force_constants,
    hexagonal_band_path,
    load_phonons,
    phonopy_to_ase,
    relax_positions,
    supercell_layers,
    supercell_modes,
)
from mlepi_ase.structures import bilayer_graphene, layers_by_z_clustering, monolayer_graphene


# ------------------------------------------------------------------------------------------------
# An exactly harmonic test calculator
# ------------------------------------------------------------------------------------------------
class SpringCalculator(Calculator):
    """Harmonic Born–von Kármán springs around the sites of a reference unit cell (test helper).

    ``E = ½ Σ_pairs dᵀ K d`` with ``d = u_j − u_i`` the relative displacement of a pair of the
    undisplaced structure and ``K = k_r r̂r̂ᵀ + k_t (1 − r̂r̂ᵀ)``: intra-layer pairs closer than
    ``cutoff_intra`` get ``k_intra``, inter-layer pairs closer than ``cutoff_inter`` get ``k_inter``
    (eV/Å²).  Any supercell of the unit cell works (atoms are matched to unit-cell sites), so the force
    constants are known exactly: ``Φ_ii = Σ K``, ``Φ_ij = −Σ K`` over the pairs (images included).
    """

    implemented_properties = ("energy", "forces")

    def __init__(self, unitcell: Atoms, k_intra=(20.0, 6.0), k_inter=(0.3, 0.05),
                 cutoff_intra: float = 1.6, cutoff_inter: float = 3.9) -> None:
        super().__init__()
        self.unitcell = unitcell.copy()
        self.k_intra, self.k_inter = k_intra, k_inter
        self.cutoff_intra, self.cutoff_inter = cutoff_intra, cutoff_inter

    def reference(self, atoms: Atoms) -> tuple[np.ndarray, np.ndarray]:
        """Undisplaced positions (N, 3) and unit-cell site index (N,) of atoms near unit-cell sites."""
        cell = self.unitcell.cell[:]
        inv = np.linalg.inv(cell)
        x = atoms.positions @ inv
        xu = self.unitcell.positions @ inv
        diff = x[:, None, :] - xu[None, :, :]
        dev = np.linalg.norm((diff - np.rint(diff)) @ cell, axis=2)
        site = np.argmin(dev, axis=1)
        shift = np.rint(diff[np.arange(len(x)), site])
        return (xu[site] + shift) @ cell, site

    def _pairs(self, atoms: Atoms, ref: np.ndarray, site: np.ndarray):
        layers = self.unitcell.arrays["layer"][site]
        ref_atoms = Atoms(atoms.numbers, positions=ref, cell=atoms.cell, pbc=True)
        ii, jj, dd = neighbor_list("ijD", ref_atoms, max(self.cutoff_intra, self.cutoff_inter))
        for i, j, d in zip(ii, jj, dd):
            r = np.linalg.norm(d)
            same = layers[i] == layers[j]
            if same and r > self.cutoff_intra:
                continue
            kr, kt = self.k_intra if same else self.k_inter
            rr = np.outer(d, d) / r**2
            yield i, j, kr * rr + kt * (np.eye(3) - rr)

    def force_constants(self, atoms: Atoms) -> np.ndarray:
        """Analytic force constants of the supercell ``atoms``, (N, N, 3, 3) eV/Å²."""
        ref, site = self.reference(atoms)
        fc = np.zeros((len(atoms), len(atoms), 3, 3))
        for i, j, k in self._pairs(atoms, ref, site):
            fc[i, i] += k
            fc[i, j] -= k
        return fc

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        ref, site = self.reference(self.atoms)
        u = self.atoms.positions - ref
        forces = np.zeros_like(u)
        energy = 0.0
        for i, j, k in self._pairs(self.atoms, ref, site):  # ordered pairs: each bond twice
            d = u[j] - u[i]
            forces[i] += k @ d
            energy += 0.25 * d @ k @ d
        self.results = {"energy": energy, "forces": forces}


def spring_phonons(size=(3, 3), **kwargs) -> PhononResult:
    unit = bilayer_graphene("AB")
    calc = SpringCalculator(unit, **kwargs)
    return compute_force_constants(unit, calc, [size[0], size[1], 1], progress=False)


@pytest.fixture(scope="module")
def springs3() -> PhononResult:
    return spring_phonons((3, 3))


def reference_calculator():
    """The LAMMPS reference force field, or skip the test naming why it cannot run."""
    try:
        from mlepi_ase.reference import ReferenceForceField

        calc = ReferenceForceField()
        probe = bilayer_graphene("AB")
        probe.calc = calc
        probe.get_forces()
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"reference force field (LAMMPS REBO+KC) unavailable: {exc}")
    return calc


@pytest.fixture(scope="module")
def reference3() -> tuple[PhononResult, PhononResult]:
    """AB bilayer, REBO+KC, relaxed positions, 3×3 supercell: (raw, symmetrised) force constants."""
    calc = reference_calculator()
    unit = relax_positions(bilayer_graphene("AB"), calc, fmax=1e-5)
    raw = compute_force_constants(unit, calc, [3, 3, 1], symmetrize=False, progress=False)
    sym = compute_force_constants(unit, calc, [3, 3, 1], symmetrize=True, progress=False)
    return raw, sym


# ------------------------------------------------------------------------------------------------
# Conversions
# ------------------------------------------------------------------------------------------------
def test_ase_phonopy_roundtrip_keeps_structure_masses_and_layers(rng):
    atoms = bilayer_graphene("AB", size=(2, 1))
    atoms.positions += rng.normal(scale=0.02, size=atoms.positions.shape)
    masses = atoms.get_masses()
    masses[3] = 13.003355  # a 13C isotope survives the round trip
    atoms.set_masses(masses)
    back = phonopy_to_ase(ase_to_phonopy(atoms), atoms.arrays["layer"])
    np.testing.assert_allclose(back.cell[:], atoms.cell[:], atol=1e-12)
    np.testing.assert_allclose(back.positions, atoms.positions, atol=1e-10)
    np.testing.assert_allclose(back.get_masses(), masses, atol=1e-12)
    assert back.get_chemical_symbols() == atoms.get_chemical_symbols()
    np.testing.assert_array_equal(back.arrays["layer"], atoms.arrays["layer"])
    assert back.pbc.all()


def test_conversion_rejects_bad_input():
    with pytest.raises(ValueError, match="empty"):
        ase_to_phonopy(Atoms())
    with pytest.raises(ValueError, match="non-singular"):
        ase_to_phonopy(Atoms("C2", positions=[[0, 0, 0], [1.4, 0, 0]], cell=[[2.46, 0, 0], [0, 0, 0], [0, 0, 0]]))
    with pytest.raises(ValueError, match="layer"):
        phonopy_to_ase(ase_to_phonopy(bilayer_graphene("AB")), [0, 1])


def test_supercell_layers_follow_geometry(springs3):
    sc = springs3.supercell
    assert len(sc) == 36
    np.testing.assert_array_equal(sc.arrays["layer"], layers_by_z_clustering(sc))
    layers = supercell_layers(np.array([0, 0, 1, 1]), springs3.phonopy.supercell)
    np.testing.assert_array_equal(layers, sc.arrays["layer"])
    assert supercell_layers(None, springs3.phonopy.supercell) is None


# ------------------------------------------------------------------------------------------------
# Force constants
# ------------------------------------------------------------------------------------------------
def test_ab_bilayer_symmetry_is_kept_with_default_symprec(springs3, rng):
    assert springs3.info["space_group"] == "P-3m1 (164)"
    noisy = bilayer_graphene("AB")
    noisy.positions += rng.normal(scale=1e-4, size=noisy.positions.shape)  # e.g. a relaxed structure
    from phonopy import Phonopy

    ph = Phonopy(ase_to_phonopy(noisy), supercell_matrix=[3, 3, 1], primitive_matrix="P", symprec=DEFAULT_SYMPREC)
    assert ph.symmetry.get_international_table() == "P-3m1 (164)"


def test_force_constants_equal_analytic_springs(springs3):
    calc = SpringCalculator(bilayer_graphene("AB"))
    exact = calc.force_constants(springs3.supercell)
    fc = springs3.full_force_constants()
    assert fc.shape == (36, 36, 3, 3)
    np.testing.assert_allclose(fc, exact, atol=1e-8 * np.abs(exact).max())
    assert springs3.info["n_displacements"] == 4  # 2 inequivalent atoms of P-3m1, ± displacements


def test_force_constants_without_symmetry_agree(springs3):
    unit = bilayer_graphene("AB")
    nosym = compute_force_constants(unit, SpringCalculator(unit), [3, 3, 1], is_symmetry=False,
                                    progress=False)
    assert nosym.info["n_displacements"] > springs3.info["n_displacements"]
    np.testing.assert_allclose(nosym.full_force_constants(), springs3.full_force_constants(), atol=1e-9)


def test_reference_acoustic_sum_rule_and_gamma_modes(reference3):
    raw, sym = reference3
    assert raw.info["space_group"] == "P-3m1 (164)"
    assert raw.info["max_residual_force"] < 1e-4  # relaxed
    fc = raw.full_force_constants()
    # Σ_j Φ_ij = 0 (translational invariance) on the raw finite-difference force constants
    assert np.abs(fc.sum(axis=1)).max() < 1e-6 * np.abs(fc).max()
    assert raw.acoustic_sum_rule_residual() < 1e-6 * np.abs(fc).max()
    assert sym.acoustic_sum_rule_residual() < 1e-10 * np.abs(fc).max()
    for result in (raw, sym):
        freqs = np.array([row["frequency_THz"] for row in result.gamma_mode_table()])
        assert np.sum(np.abs(freqs) < 1e-3) == 3  # three zero acoustic frequencies at Γ
        assert np.sort(np.abs(freqs))[3] > 0.5
    table = sym.gamma_mode_table()
    labels = [row["label"] for row in table]
    assert sorted(labels) == sorted(["acoustic"] * 3 + ["shear"] * 2 + ["breathing"] + ["ZO"] * 2 + ["G"] * 4)
    f = {lab: np.mean([r["frequency_THz"] for r in table if r["label"] == lab]) for lab in set(labels)}
    # interlayer modes are soft, intralayer optical modes hard: shear < breathing < ZO < G
    assert 0.2 < f["shear"] < f["breathing"] < 5.0 < f["ZO"] < f["G"]
    assert 40.0 < f["G"] < 60.0  # graphene's G (E2g) band, ~47.5 THz experimentally; REBO is stiffer


def test_reference_layers_reach_the_calculator(reference3):
    raw, _ = reference3
    # without layer ids Kolmogorov–Crespi would not act; the shear mode needs the interlayer term
    freqs = np.array([row["frequency_THz"] for row in raw.gamma_mode_table() if row["label"] == "shear"])
    assert np.all(freqs > 0.3)


def test_compute_force_constants_rejects_bad_input():
    unit = bilayer_graphene("AB")
    calc = SpringCalculator(unit)
    with pytest.raises(ValueError, match="determinant"):
        compute_force_constants(unit, calc, [3, 0, 1], progress=False)
    with pytest.raises(ValueError, match="integers"):
        compute_force_constants(unit, calc, [2.5, 2, 1], progress=False)
    with pytest.raises(ValueError, match="shape"):
        compute_force_constants(unit, calc, [2, 2], progress=False)
    with pytest.raises(ValueError, match="distance"):
        compute_force_constants(unit, calc, [2, 2, 1], distance=0.0, progress=False)
    with pytest.raises(ValueError, match="calculator"):
        compute_force_constants(unit, None, [2, 2, 1], progress=False)


def test_residual_forces_are_reported():
    unit = bilayer_graphene("AB")
    calc = SpringCalculator(unit)
    shifted = unit.copy()
    shifted.positions[0, 2] += 0.02  # off equilibrium: the spring model pulls it back
    with pytest.warns(UserWarning, match="residual forces"):
        res = compute_force_constants(shifted, calc, [2, 2, 1], is_symmetry=False, progress=False)
    assert res.info["max_residual_force"] > 0.1


def test_result_requires_force_constants():
    from phonopy import Phonopy

    ph = Phonopy(ase_to_phonopy(bilayer_graphene("AB")), supercell_matrix=[2, 2, 1], primitive_matrix="P")
    with pytest.raises(ValueError, match="no force constants"):
        PhononResult(ph)


# ------------------------------------------------------------------------------------------------
# Band structure, DOS, files
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("angle", [60, 120])
def test_hexagonal_path_points(angle):
    a = 2.46
    c = np.cos(np.radians(angle))
    cell = np.array([[a, 0, 0], [a * c, a * np.sin(np.radians(angle)), 0], [0, 0, 20.0]])
    pts = hexagonal_band_path(cell)
    rec = 2 * np.pi * np.linalg.inv(cell).T
    assert np.isclose(np.linalg.norm(pts["K"] @ rec), 4 * np.pi / (3 * a))
    assert np.isclose(np.linalg.norm(pts["M"] @ rec), 2 * np.pi / (np.sqrt(3) * a))
    assert np.allclose(pts["Γ"], 0)


def test_hexagonal_path_rejects_other_cells():
    with pytest.raises(ValueError, match="hexagonal"):
        hexagonal_band_path(np.diag([2.0, 3.0, 10.0]))
    with pytest.raises(ValueError, match="angle"):
        hexagonal_band_path(np.diag([2.0, 2.0, 10.0]))


def test_band_structure_and_dos(springs3):
    bands = springs3.band_structure(npoints=21)
    assert bands.labels == ["Γ", "M", "K", "Γ"]
    assert bands.frequencies.shape == (63, 12)
    assert np.all(np.diff(bands.distances) >= -1e-12)
    gamma = springs3.frequencies_at([[0, 0, 0]])[0]
    np.testing.assert_allclose(bands.frequencies[0], gamma, atol=1e-5)  # √(roundoff) at ω≈0
    np.testing.assert_allclose(bands.frequencies[-1], gamma, atol=1e-5)
    assert bands.imaginary() == []
    freqs, dos = springs3.dos(mesh=(12, 12, 1))
    # DOS integrates to 3 n_prim = 12 modes per primitive cell
    integral = float(np.sum(0.5 * (dos[1:] + dos[:-1]) * np.diff(freqs)))  # trapezoid rule
    assert np.isclose(integral, 12.0, rtol=0.02)


def test_imaginary_frequencies_are_reported():
    unstable = spring_phonons((2, 2), k_inter=(-0.3, 0.05))  # interlayer springs pull the layers apart
    with pytest.warns(ImaginaryModeWarning):
        bands = unstable.band_structure(npoints=5)
    imag = bands.imaginary()
    assert imag and min(f for _, f in imag) < -0.1
    with pytest.warns(ImaginaryModeWarning):
        modes = unstable.supercell_modes()
    assert len(modes.imaginary()) >= 1
    assert np.all(modes.frequencies[modes.imaginary()] < 0)


def test_save_load_roundtrip(springs3, tmp_path):
    path = springs3.save(tmp_path / "phonopy_params.yaml")
    loaded = load_phonons(path)
    np.testing.assert_allclose(loaded.force_constants, springs3.force_constants, atol=1e-12)
    np.testing.assert_array_equal(loaded.unitcell_layers, [0, 0, 1, 1])
    np.testing.assert_array_equal(loaded.supercell_matrix, springs3.supercell_matrix)
    assert loaded.info["space_group"] == "P-3m1 (164)"
    q = [[0.5, 0, 0], [1 / 3, 1 / 3, 0]]
    np.testing.assert_allclose(loaded.frequencies_at(q), springs3.frequencies_at(q), atol=1e-8)
    np.testing.assert_array_equal(loaded.supercell.arrays["layer"], springs3.supercell.arrays["layer"])


def test_plot_bands_writes_png(springs3, tmp_path):
    png = springs3.plot_bands(tmp_path / "bands.png", npoints=11, dos_mesh=(6, 6, 1))
    with open(png, "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_phonons(tmp_path / "missing.yaml")
    (tmp_path / "other.yaml").write_text("a: 1\n")
    with pytest.raises(ValueError, match="not a phonopy yaml"):
        load_phonons(tmp_path / "other.yaml")
    from phonopy import Phonopy

    ph = Phonopy(ase_to_phonopy(bilayer_graphene("AB")), supercell_matrix=[2, 2, 1], primitive_matrix="P")
    ph.generate_displacements(distance=0.01)
    ph.save(str(tmp_path / "nofc.yaml"))  # displacements without forces
    with pytest.raises(ValueError, match="no force constants"):
        load_phonons(tmp_path / "nofc.yaml")


# ------------------------------------------------------------------------------------------------
# Supercell Γ-point modes
# ------------------------------------------------------------------------------------------------
def _dynamical_matrix(fc: np.ndarray, masses: np.ndarray) -> np.ndarray:
    n = len(masses)
    m = np.repeat(masses, 3)
    return fc.transpose(0, 2, 1, 3).reshape(3 * n, 3 * n) / np.sqrt(np.outer(m, m))


def test_supercell_modes_of_force_constant_supercell(springs3):
    modes = springs3.supercell_modes()
    factor = springs3.phonopy.unit_conversion_factor
    d = _dynamical_matrix(springs3.full_force_constants(), modes.masses)
    lam = np.sign(modes.frequencies) * (modes.frequencies / factor) ** 2
    e = modes.eigenvectors
    np.testing.assert_allclose(e.T @ e, np.eye(modes.nmodes), atol=1e-10)
    np.testing.assert_allclose(e @ np.diag(lam) @ e.T, d, atol=1e-9 * np.abs(d).max())
    # the same frequencies as phonopy at the commensurate q-points
    comm = springs3.frequencies_at(modes.qpoints)
    np.testing.assert_allclose(np.sort(comm.ravel()), modes.frequencies, atol=1e-5)
    assert modes.acoustic.sum() == 3
    assert np.all(np.abs(modes.frequencies[modes.acoustic]) < 1e-4)
    np.testing.assert_allclose(modes.atoms.positions, springs3.supercell.positions, atol=1e-12)
    np.testing.assert_array_equal(modes.atoms.arrays["layer"], springs3.supercell.arrays["layer"])
    assert np.all(modes.primitive_index == np.arange(36) // 9)


def test_supercell_modes_of_a_smaller_commensurate_supercell():
    big = spring_phonons((4, 4))
    modes = big.supercell_modes([2, 2, 1])
    assert modes.natoms == 16 and not modes.interpolated
    calc = SpringCalculator(bilayer_graphene("AB"))
    exact = _dynamical_matrix(calc.force_constants(modes.atoms), modes.masses)
    lam = np.linalg.eigvalsh(exact)
    factor = big.phonopy.unit_conversion_factor
    np.testing.assert_allclose(np.sign(lam) * np.sqrt(np.abs(lam)) * factor, modes.frequencies, atol=1e-5)
    # non-diagonal supercell (√3×√3 R30°) of the 3×3 force constants: q = K is commensurate with both
    k_modes = spring_phonons((3, 3)).supercell_modes([[1, 1, 0], [-1, 2, 0], [0, 0, 1]])
    assert k_modes.natoms == 12
    exact = _dynamical_matrix(calc.force_constants(k_modes.atoms), k_modes.masses)
    lam = np.linalg.eigvalsh(exact)
    np.testing.assert_allclose(np.sign(lam) * np.sqrt(np.abs(lam)) * factor, k_modes.frequencies, atol=1e-5)


def _scramble_degenerate_blocks(lam: np.ndarray, vec: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Another valid eigenbasis: a random rotation and sign flip within every degenerate block."""
    out = vec.copy()
    cuts = np.flatnonzero(np.diff(lam) > 1e-9 * np.abs(lam).max()) + 1
    for a, b in zip(np.r_[0, cuts], np.r_[cuts, len(lam)]):
        q, _ = np.linalg.qr(rng.standard_normal((b - a, b - a)))
        out[:, a:b] = vec[:, a:b] @ q
    return out


def test_canonical_mode_basis_does_not_depend_on_the_input_basis(rng):
    lam = np.repeat([-0.5, 0.0, 1.0, 2.0, 2.5, 7.0], [1, 3, 2, 1, 4, 1])
    q, _ = np.linalg.qr(rng.standard_normal((12, 12)))
    d = q @ np.diag(lam) @ q.T
    w, v = np.linalg.eigh(d)
    canon = canonical_mode_basis(w, v)
    assert not np.allclose(np.abs(v), np.abs(_scramble_degenerate_blocks(w, v, rng)))  # the check below bites
    for _ in range(3):
        other = canonical_mode_basis(w, _scramble_degenerate_blocks(w, v, rng))
        np.testing.assert_allclose(other, canon, atol=1e-12)
    np.testing.assert_allclose(canon.T @ canon, np.eye(12), atol=1e-12)
    np.testing.assert_allclose(canon.T @ d @ canon, np.diag(w), atol=1e-12)
    # a single mode keeps its direction up to the sign
    np.testing.assert_allclose(np.abs(canon[:, -1]), np.abs(v[:, -1]), atol=1e-12)
    with pytest.raises(ValueError, match="ascending"):
        canonical_mode_basis(w[::-1], v)
    with pytest.raises(ValueError, match="eigenvectors"):
        canonical_mode_basis(w, v[:, :5])


def test_supercell_modes_do_not_depend_on_the_eigensolver_basis(springs3, monkeypatch, rng):
    """A LAPACK build or thread count returning other degenerate bases/signs gives the same modes."""
    before = springs3.supercell_modes()
    eigh = np.linalg.eigh

    def scrambled_eigh(a, *args, **kwargs):
        w, v = eigh(a, *args, **kwargs)
        return w, _scramble_degenerate_blocks(w, v, rng)

    monkeypatch.setattr(np.linalg, "eigh", scrambled_eigh)
    after = springs3.supercell_modes()
    lam = np.sign(before.frequencies) * before.frequencies**2
    assert np.sum(np.diff(lam) < 1e-9 * np.abs(lam).max()) > 10  # the 3×3 bilayer has degenerate modes
    np.testing.assert_allclose(after.frequencies, before.frequencies, atol=1e-9)
    np.testing.assert_allclose(after.eigenvectors, before.eigenvectors, atol=1e-9)


def test_supercell_modes_mismatch_and_interpolation(springs3):
    with pytest.raises(ValueError, match="not commensurate"):
        springs3.supercell_modes([4, 4, 1])
    with pytest.raises(ValueError, match="determinant"):
        springs3.supercell_modes([[1, 0, 0], [0, 1, 0], [0, 0, -1]])
    with pytest.raises(TypeError):
        supercell_modes("not a result")
    modes = springs3.supercell_modes([4, 4, 1], allow_interpolation=True)
    assert modes.interpolated and modes.natoms == 64
    assert np.sum(np.abs(modes.frequencies) < 1e-4) == 3


def test_mode_displacements_shape_and_values(springs3):
    modes = springs3.supercell_modes()
    x = np.zeros((2, modes.nmodes))
    x[1, 7] = 0.5
    u = modes.displacements(x)
    assert u.shape == (2, 36, 3)
    np.testing.assert_allclose(u[1], 0.5 * modes.eigenvectors[:, 7].reshape(36, 3) / np.sqrt(12.011), rtol=1e-3)
    with pytest.raises(ValueError, match="modes"):
        modes.displacements(np.zeros(5))


def test_classify_layer_modes_spring_bilayer(springs3):
    table = springs3.gamma_mode_table()
    labels = [r["label"] for r in table]
    assert labels.count("acoustic") == 3 and labels.count("shear") == 2
    assert labels.count("breathing") == 1 and labels.count("ZO") == 2 and labels.count("G") == 4
    assert all(np.isclose(r["frequency_cm1"], r["frequency_THz"] * THZ_TO_CM1) for r in table)
    mono = monolayer_graphene()
    res = compute_force_constants(mono, SpringCalculator(mono), [2, 2, 1], progress=False)
    freqs, vecs = res.modes_at([0, 0, 0])
    assert sorted(classify_layer_modes(vecs, np.full(2, 12.011), np.zeros(2, int))) == sorted(
        ["acoustic"] * 3 + ["ZO"] + ["G"] * 2
    )


def test_shipped_reference_phonons():
    """data/reference_phonons: REBO+KC AB bilayer, 6×6×1 force constants written by ``mlepi phonons``."""
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "data" / "reference_phonons" / "phonopy_params.yaml"
    if not path.is_file():
        pytest.skip(f"{path} has not been generated (mlepi phonons ab-bilayer -s 6 6 1 -o data/reference_phonons)")
    res = load_phonons(path)
    np.testing.assert_array_equal(res.supercell_matrix, np.diag([6, 6, 1]))
    assert len(res.supercell) == 144 and res.info["calculator"] == "ReferenceForceField"
    fc = res.full_force_constants()
    assert np.abs(fc.sum(axis=1)).max() < 1e-8 * np.abs(fc).max()  # acoustic sum rule
    table = res.gamma_mode_table()
    freqs = np.array([r["frequency_THz"] for r in table])
    assert np.sum(np.abs(freqs) < 1e-3) == 3
    assert [r["label"] for r in table].count("breathing") == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error", ImaginaryModeWarning)  # a stable bilayer: no imaginary branch
        bands = res.band_structure(npoints=41)
    assert bands.frequencies.min() > -0.01


def test_cli_phonons(tmp_path, capsys):
    from mlepi_ase.cli import main

    reference_calculator()  # skips, naming why, without LAMMPS
    out = tmp_path / "ph"
    args = ["phonons", "ab-bilayer", "-s", "2", "2", "1", "-o", str(out), "--npoints", "5",
            "--dos-mesh", "4", "4", "1", "--no-progress"]
    assert main(args) == 0
    res = load_phonons(out / "phonopy_params.yaml")
    np.testing.assert_array_equal(res.supercell_matrix, np.diag([2, 2, 1]))
    np.testing.assert_array_equal(res.unitcell_layers, [0, 0, 1, 1])
    assert res.info["max_residual_force"] < 1e-4  # positions were relaxed first
    assert (out / "phonon_bands.png").stat().st_size > 1000
    assert "breathing" in capsys.readouterr().out
    assert main(["phonons", str(tmp_path / "nothing.xyz"), "-o", str(out)]) == 2
    assert "neither a builder" in capsys.readouterr().err


def test_band_differences_sort_bands_at_every_q():
    q = np.zeros((3, 3))
    q[:, 0] = [0.0, 0.25, 0.5]
    ref = BandStructureData(np.arange(3.0), np.array([[0.0, 1.0], [1.0, 2.0], [2.0, 5.0]]), q, ["Γ", "M"],
                            np.array([0.0, 2.0]))
    swapped = BandStructureData(ref.distances, ref.frequencies[:, ::-1] + np.array([[0.0, 0.0], [0.0, 0.0], [0.3, 0.0]]),
                                q, ref.labels, ref.label_distances)
    err = swapped.differences(ref)
    # band order does not matter; only the 5.0 → 5.3 change of the upper band at the last q remains
    assert err["max_abs_THz"] == pytest.approx(0.3)
    assert err["rms_THz"] == pytest.approx(np.sqrt(0.09 / 6))
    assert err["rms_by_branch_THz"] == pytest.approx([0.0, np.sqrt(0.09 / 3)])
    assert ref.differences(ref)["rms_THz"] == 0.0
    with pytest.raises(ValueError, match="same q-points"):
        ref.differences(BandStructureData(ref.distances, ref.frequencies, q + 0.1, ref.labels, ref.label_distances))
