"""Physics tests of the embedded reference force field (LAMMPS REBO + Kolmogorov–Crespi).

All checks are float64 on 4- to 36-atom cells; the whole file runs in a few seconds.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from ase import Atoms

from mlepi_ase.reference import ReferenceForceField
from mlepi_ase.structures import bilayer_graphene, monolayer_graphene


@pytest.fixture(scope="module")
def calc() -> ReferenceForceField:
    c = ReferenceForceField()
    yield c
    c.close()


def energy(atoms: Atoms, calc: ReferenceForceField) -> float:
    atoms = atoms.copy()
    atoms.calc = calc
    return atoms.get_potential_energy()


def rattled_bilayer(rng: np.random.Generator, size=(2, 2), scale: float = 0.05) -> Atoms:
    atoms = bilayer_graphene("AB", size=size, interlayer=3.4)
    atoms.positions += rng.normal(scale=scale, size=atoms.positions.shape)
    return atoms


def strain_stress(atoms: Atoms, calc: ReferenceForceField, d: float) -> np.ndarray:
    """σ_ij = V⁻¹ ∂E/∂ε_ij by central differences of symmetric strains (Voigt, eV/Å³)."""
    cell0 = np.array(atoms.cell)
    volume = atoms.get_volume()
    out = np.zeros(6)
    for v, (i, j) in enumerate([(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]):
        e = []
        for sign in (1.0, -1.0):
            eps = np.zeros((3, 3))
            eps[i, j] += 0.5 * sign * d
            eps[j, i] += 0.5 * sign * d
            strained = atoms.copy()
            strained.set_cell(cell0 @ (np.eye(3) + eps), scale_atoms=True)
            e.append(energy(strained, calc))
        # E(ε) = E0 + V Σ σ_kl ε_kl: the symmetric strain of size d changes E by V σ_ij d.
        out[v] = (e[0] - e[1]) / (2.0 * d * volume)
    return out


def test_result_types(calc, rng):
    atoms = rattled_bilayer(rng)
    atoms.calc = calc
    assert set(ReferenceForceField.implemented_properties) >= {"energy", "free_energy", "forces", "stress"}
    assert isinstance(atoms.get_potential_energy(), float)
    assert atoms.get_forces().shape == (len(atoms), 3) and atoms.get_forces().dtype == np.float64
    assert atoms.get_stress().shape == (6,)
    assert calc.results["free_energy"] == calc.results["energy"]
    # per-atom energies add up to the total
    assert abs(atoms.get_potential_energies().sum() - atoms.get_potential_energy()) < 1e-9


def test_forces_are_minus_energy_gradient(calc, rng):
    atoms = rattled_bilayer(rng)
    atoms.calc = calc
    forces = atoms.get_forces().copy()
    # Central differences: truncation error h²|∂³E/∂x³|/6; C–C bonds give |∂³E| of a few 100 eV/Å³,
    # so h = 1e-4 Å leaves ≲ 1e-6 eV/Å, while round-off (~1e-13 eV / 2h) stays ≲ 1e-9 eV/Å.
    h = 1e-4
    for i in rng.choice(len(atoms), size=5, replace=False):
        for a in range(3):
            shifted = []
            for sign in (1.0, -1.0):
                p = atoms.copy()
                p.positions[i, a] += sign * h
                shifted.append(energy(p, calc))
            numeric = -(shifted[0] - shifted[1]) / (2 * h)
            assert abs(numeric - forces[i, a]) < 1e-5, (i, a, numeric, forces[i, a])
    # the rattled structure has sizeable forces, so the comparison is not trivially 0 = 0
    assert np.abs(forces).max() > 0.5


def test_forces_sum_to_zero(calc, rng):
    atoms = rattled_bilayer(rng, size=(3, 3), scale=0.1)
    atoms.calc = calc
    forces = atoms.get_forces()
    assert np.abs(forces).max() > 1.0
    # Newton's third law holds term by term; only round-off (~N ε |F|) remains.
    np.testing.assert_allclose(forces.sum(axis=0), 0.0, atol=1e-10)


def test_stress_matches_strain_derivative(calc, rng):
    atoms = rattled_bilayer(rng)
    # a small random strain so that all six components are substantial
    strain = 0.01 * rng.normal(size=(3, 3))
    atoms.set_cell(np.array(atoms.cell) @ (np.eye(3) + 0.5 * (strain + strain.T)), scale_atoms=True)
    atoms.calc = calc
    stress = atoms.get_stress().copy()
    # d = 1e-5: truncation ~ d² and round-off ~1e-13 eV / (2 d V) are both ≪ 1e-7 eV/Å³
    numeric = strain_stress(atoms, calc, d=1e-5)
    np.testing.assert_allclose(stress, numeric, atol=1e-7)
    assert np.abs(stress[:2]).max() > 1e-3  # in-plane stress is not trivially zero


def test_rotation_covariance(calc, rng):
    atoms = rattled_bilayer(rng)
    atoms.calc = calc
    e0, f0, s0 = atoms.get_potential_energy(), atoms.get_forces().copy(), atoms.get_stress(voigt=False)
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    rot = q * np.sign(np.diag(r))
    if np.linalg.det(rot) < 0:
        rot[:, 0] *= -1
    rotated = atoms.copy()
    rotated.set_cell(np.array(atoms.cell) @ rot.T, scale_atoms=False)
    rotated.positions = atoms.positions @ rot.T
    rotated.calc = calc
    assert abs(rotated.get_potential_energy() - e0) < 1e-9
    np.testing.assert_allclose(rotated.get_forces(), f0 @ rot.T, atol=1e-8)
    np.testing.assert_allclose(rotated.get_stress(voigt=False), rot @ s0 @ rot.T, atol=1e-10)


def test_binding_curve_and_stacking(calc):
    isolated = energy(bilayer_graphene("AB", interlayer=20.0), calc)
    mono = energy(monolayer_graphene(), calc)
    # layers 20 Å apart (beyond the 16 Å cutoff) are two free monolayers
    assert abs(isolated - 2 * mono) < 1e-9

    distances = np.arange(3.0, 4.0001, 0.05)
    curves = {}
    for stacking in ("AB", "AA"):
        curves[stacking] = np.array(
            [(energy(bilayer_graphene(stacking, interlayer=d), calc) - isolated) / 4 for d in distances]
        )
    ab, aa = curves["AB"], curves["AA"]
    k = int(np.argmin(ab))
    assert 0 < k < len(distances) - 1, "the AB binding curve has no interior minimum"
    # vertex of the parabola through the three points around the minimum
    y0, y1, y2 = ab[k - 1 : k + 2]
    step = distances[1] - distances[0]
    d_min = distances[k] + 0.5 * step * (y0 - y2) / (y0 - 2 * y1 + y2)
    e_min = y1 - 0.125 * (y0 - y2) ** 2 / (y0 - 2 * y1 + y2)
    assert 3.3 < d_min < 3.5, d_min
    # DESIGN.md §4 and Ouyang et al. (2018): about −25 meV/atom for AB bilayer graphene
    assert -0.030 < e_min < -0.020, e_min
    # binding weakens monotonically beyond the minimum
    assert np.all(np.diff(ab[k:]) > 0)
    # AB (Bernal) is more stable than AA at every spacing and at the respective optima
    assert np.all(ab < aa)
    assert ab.min() < aa.min()


def test_any_number_of_layers(calc):
    """KC is a sum over pairs of layers: E(ABA) − 3E₁ = 2 E_b^AB(d) + E_b^AA(2d) exactly."""
    d = 3.4
    mono = energy(monolayer_graphene(), calc)
    eb_ab = energy(bilayer_graphene("AB", interlayer=d), calc) - 2 * mono
    eb_aa = energy(bilayer_graphene("AA", interlayer=2 * d), calc) - 2 * mono
    base = bilayer_graphene("AB", interlayer=d, vacuum=20.0 + d)
    third = base[base.arrays["layer"] == 0]
    third.positions[:, 2] += 2 * d
    third.arrays["layer"][:] = 2
    trilayer = base + third
    e_tri = energy(trilayer, calc) - 3 * mono
    assert eb_aa < -1e-3  # the second-neighbour layers interact, so the check below can fail
    assert abs(e_tri - (2 * eb_ab + eb_aa)) < 1e-9

    # single layer: pristine graphene is at a symmetric point, so all forces vanish
    m = monolayer_graphene(size=(2, 2))
    m.calc = calc
    np.testing.assert_allclose(m.get_forces(), 0.0, atol=1e-10)


def test_layer_array_is_used(calc):
    atoms = bilayer_graphene("AB", interlayer=3.4)
    mono = energy(monolayer_graphene(), calc)
    atoms.calc = calc
    e_bilayer = atoms.get_potential_energy()
    # one layer index for all atoms: no inter-layer term, only REBO (cutoff 2 Å) remains
    atoms.arrays["layer"][:] = 0
    assert abs(atoms.get_potential_energy() - 2 * mono) < 1e-9
    atoms.arrays["layer"][:] = [0, 0, 1, 1]
    assert abs(atoms.get_potential_energy() - e_bilayer) < 1e-12
    assert e_bilayer < 2 * mono - 0.05

    # missing layer array: detected from z, the caller's atoms are left as they were
    bare = atoms.copy()
    del bare.arrays["layer"]
    assert abs(energy(bare, calc) - e_bilayer) < 1e-12
    assert "layer" not in bare.arrays


def test_reuse_for_different_sizes(rng):
    shared = ReferenceForceField()
    structures = [
        rattled_bilayer(rng, size=(2, 2)),
        bilayer_graphene("AB", size=(1, 1)),
        rattled_bilayer(rng, size=(3, 2)),
        monolayer_graphene(size=(2, 1)),
        rattled_bilayer(rng, size=(2, 2)),
    ]
    for atoms in structures:
        a = atoms.copy()
        a.calc = shared
        e, f, s = a.get_potential_energy(), a.get_forces().copy(), a.get_stress().copy()
        with ReferenceForceField() as fresh:
            b = atoms.copy()
            b.calc = fresh
            assert abs(e - b.get_potential_energy()) < 1e-9
            np.testing.assert_allclose(f, b.get_forces(), atol=1e-9)
            np.testing.assert_allclose(s, b.get_stress(), atol=1e-12)
    # extensivity: a 3×3 repeat of the primitive cell has 9× its energy
    e1 = energy(bilayer_graphene("AB", size=(1, 1)), shared)
    e9 = energy(bilayer_graphene("AB", size=(3, 3)), shared)
    assert abs(e9 - 9 * e1) < 1e-9
    # a pickled copy recreates LAMMPS on demand
    clone = pickle.loads(pickle.dumps(shared))
    assert abs(energy(bilayer_graphene("AB", size=(1, 1)), clone) - e1) < 1e-12
    shared.close()
    clone.close()


def test_non_periodic_z_matches_vacuum(calc):
    periodic = bilayer_graphene("AB", interlayer=3.4, vacuum=20.0)
    slab = bilayer_graphene("AB", interlayer=3.4, vacuum=8.0)
    slab.pbc = (True, True, False)
    assert abs(energy(periodic, calc) - energy(slab, calc)) < 1e-9


def test_bad_input(calc):
    atoms = bilayer_graphene("AB")
    atoms.symbols[1] = "Si"
    atoms.calc = calc
    with pytest.raises(ValueError, match="only carbon.*Si"):
        atoms.get_potential_energy()

    atoms = bilayer_graphene("AB")
    atoms.positions[2, 0] = np.nan
    atoms.calc = calc
    with pytest.raises(ValueError, match="NaN"):
        atoms.get_forces()

    # a layer within the KC cutoff of its own periodic image would silently lose energy
    atoms = bilayer_graphene("AB", vacuum=8.0)
    atoms.calc = calc
    with pytest.raises(ValueError, match="periodic image"):
        atoms.get_potential_energy()

    atoms = bilayer_graphene("AB")
    atoms.arrays["layer"][:] = [-1, -1, 0, 0]
    atoms.calc = calc
    with pytest.raises(ValueError, match="non-negative"):
        atoms.get_potential_energy()

    # the calculator still works after rejected input
    assert np.isfinite(energy(bilayer_graphene("AB"), calc))
