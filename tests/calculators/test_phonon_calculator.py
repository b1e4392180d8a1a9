"""The HedgeNet-Phonon ASE calculator: results, stress convention and caching."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.calculators.calculator import PropertyNotImplementedError
from ase.calculators.fd import calculate_numerical_stress
from ase.stress import voigt_6_to_full_3x3_stress

from mlepi_ase.calculators import HedgeNetPhononCalculator
from mlepi_ase.models import HedgeNetPhonon, save_phonon_model
from mlepi_ase.structures import bilayer_graphene

TINY = dict(num_channels=4, max_L=1, max_ell=1, radial_mlp=[8], num_interactions=2, correlation=2,
            num_bessel=4, readout_mlp=4, cutoffs={"intra": 3.0, "inter": 4.5}, atomic_energies=[-7.0])


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    torch.manual_seed(1)
    model = HedgeNetPhonon(TINY, dtype=torch.float32)
    return save_phonon_model(model, tmp_path_factory.mktemp("model") / "tiny.pt")


@pytest.fixture
def atoms(rng):
    a = bilayer_graphene("AB", size=(2, 1), vacuum=12.0)
    a.positions += rng.normal(scale=0.05, size=a.positions.shape)
    return a


def test_results_match_the_model(model_file, atoms):
    calc = HedgeNetPhononCalculator(model_file, dtype="float64")
    assert calc.model.dtype == torch.float64
    atoms.calc = calc
    e = atoms.get_potential_energy()
    assert atoms.get_potential_energy(force_consistent=True) == e  # free energy = energy
    ref = calc.model.predict(atoms, compute_stress=True)
    assert e == pytest.approx(ref["energy"], abs=1e-12)
    np.testing.assert_allclose(atoms.get_forces(), ref["forces"], atol=1e-12)
    np.testing.assert_allclose(voigt_6_to_full_3x3_stress(atoms.get_stress()), ref["stress"], atol=1e-14)
    assert atoms.get_potential_energies().sum() == pytest.approx(e, abs=1e-10)
    assert calc.metadata["species"] == [6]


def test_stress_matches_numerical_stress(model_file, atoms):
    calc = HedgeNetPhononCalculator(model_file)
    atoms.calc = calc
    stress = atoms.get_stress()
    numeric = calculate_numerical_stress(atoms, eps=1e-5)
    assert np.abs(stress).max() > 1e-5
    np.testing.assert_allclose(stress, numeric, atol=1e-9)


def test_caching(model_file, atoms):
    calc = HedgeNetPhononCalculator(model_file)
    atoms.calc = calc
    e = atoms.get_potential_energy()
    assert calc.n_model_calls == 1
    atoms.get_potential_energy()
    assert calc.n_model_calls == 1
    f = atoms.get_forces()
    assert calc.n_model_calls == 2
    atoms.get_forces()
    atoms.get_potential_energy()
    assert calc.n_model_calls == 2
    atoms.get_stress()
    assert calc.n_model_calls == 3
    np.testing.assert_array_equal(atoms.get_forces(), f)  # kept, not recomputed
    assert calc.n_model_calls == 3
    atoms.positions[0, 0] += 0.01
    assert atoms.get_potential_energy() != e
    assert calc.n_model_calls == 4
    layers = atoms.arrays["layer"].copy()
    layers[0] = 1 - layers[0]
    atoms.set_array("layer", layers)  # relabelling a layer is a change for a heterogeneous model
    atoms.get_potential_energy()
    assert calc.n_model_calls == 5


def test_does_not_modify_atoms_and_needs_pbc_for_stress(model_file, atoms):
    calc = HedgeNetPhononCalculator(model_file)
    del atoms.arrays["layer"]
    atoms.calc = calc
    atoms.get_forces()  # layers detected from z
    assert "layer" not in atoms.arrays
    atoms.pbc = (True, True, False)
    with pytest.raises(PropertyNotImplementedError):
        atoms.get_stress()
    assert type(calc).implemented_properties == HedgeNetPhononCalculator.implemented_properties
    assert isinstance(HedgeNetPhononCalculator.implemented_properties, tuple)


def test_constructor_errors(model_file):
    with pytest.raises(ValueError, match="exactly one"):
        HedgeNetPhononCalculator()
    with pytest.raises(ValueError, match="float32 or float64"):
        HedgeNetPhononCalculator(model_file, dtype="float16")


def test_phonopy_force_constants_equal_the_model_hessian(model_file):
    """phonopy finite differences through the calculator converge (as h²) to the model's Hessian.

    The Hessian is built from the model's autograd forces by central differences with h = 1e-4 Å
    (all 6N displaced copies in one batch), independent of phonopy's symmetry machinery.
    """
    import warnings

    from mlepi_ase.phonons import compute_force_constants

    calc = HedgeNetPhononCalculator(model_file, dtype="float64")
    unit = bilayer_graphene("AB", vacuum=12.0)
    fcs = {}
    for h in (0.01, 0.005):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # residual forces of the unrelaxed cell
            result = compute_force_constants(unit, calc, [2, 2, 1], distance=h, compact=False, symmetrize=False,
                                             progress=False)
        fcs[h] = result.full_force_constants()  # (N, N, 3, 3), eV/Å²
    supercell = result.supercell
    n = len(supercell)
    step = 1e-4
    displaced = []
    for i in range(n):
        for a in range(3):
            for sign in (1, -1):
                d = supercell.copy()
                d.positions[i, a] += sign * step
                displaced.append(d)
    forces = calc.model(calc.model.batch(displaced))["forces"].detach().numpy().reshape(n, 3, 2, n, 3)
    hessian = -(forces[:, :, 0] - forces[:, :, 1]) / (2 * step)  # (i, α, j, β)
    hessian = hessian.transpose(0, 2, 1, 3)
    scale = np.abs(hessian).max()
    assert scale > 1e-2
    err = {h: np.abs(fc - hessian).max() for h, fc in fcs.items()}
    assert err[0.01] < 2e-3 * scale
    assert err[0.005] < 0.35 * err[0.01]  # the difference is the O(h²) finite-difference error
