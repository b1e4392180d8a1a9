"""Tests of the HedgeNet-Electron Hamiltonian calculator (tiny untrained model, and the shipped model)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mlepi_ase.calculators.electron import HedgeNetElectronCalculator
from mlepi_ase.models.electron import HedgeNetElectron, save_electron_model
from mlepi_ase.reference.slater_koster import SlaterKosterSP3
from mlepi_ase.structures import bilayer_graphene
from mlepi_ase.tb import HamiltonianCalculator, TBHamiltonian

SHIPPED = Path(__file__).resolve().parents[2] / "data" / "hedgenet_electron" / "model.pt"


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    torch.manual_seed(1)
    model = HedgeNetElectron(dict(basis={"C": [0, 1]}, cutoffs={"intra": 3.2, "inter": 4.2}, num_channels=4,
                                  head_channels=2, num_interactions=1, num_radial=4, radial_hidden=8),
                             dtype=torch.float64)
    model.set_onsite_offset({6: np.diag([-2.99, 3.71, 3.71, 3.71])})
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_electron_model(model, path)
    return path


def displaced(rng, size=(2, 2), amplitude=0.07):
    atoms = bilayer_graphene("AB", size=size, vacuum=12.0)
    atoms.positions += rng.normal(scale=amplitude, size=atoms.positions.shape)
    return atoms


def test_calculator_interface_and_blocks(model_file, rng):
    calc = HedgeNetElectronCalculator(model_file)
    assert isinstance(calc, HamiltonianCalculator)
    assert calc.basis.to_dict() == {"C": [0, 1]}
    assert calc.cutoffs == {"intra": 3.2, "inter": 4.2}
    atoms = displaced(rng)
    h = calc.get_hamiltonian(atoms)
    assert isinstance(h, TBHamiltonian) and h.blocks.dtype == np.float64
    assert h.n_orbitals == 4 * len(atoms) and h.hermiticity_error() == 0.0
    n = len(atoms)
    assert np.array_equal(h.pairs[:n], np.stack([np.arange(n)] * 2, axis=1)) and not h.shifts[:n].any()
    assert np.array_equal(h.layers, atoms.arrays["layer"])
    assert set(calc.timings) >= {"graph", "model", "assemble"}
    direct = calc.model.predict_hamiltonian(atoms)
    assert np.abs(direct.blocks - h.blocks).max() <= 1e-12


def test_edge_batching_bounds_memory_not_results(model_file, rng):
    atoms = displaced(rng, size=(3, 2))
    whole = HedgeNetElectronCalculator(model_file, edge_chunk=None).get_hamiltonian(atoms)
    small = HedgeNetElectronCalculator(model_file, edge_chunk=13).get_hamiltonian(atoms)
    assert np.array_equal(whole.pairs, small.pairs) and np.array_equal(whole.shifts, small.shifts)
    assert np.abs(whole.blocks - small.blocks).max() <= 1e-12
    with pytest.raises(ValueError, match="edge_chunk"):
        HedgeNetElectronCalculator(model_file, edge_chunk=0)


def test_float32_inference_and_solvers(model_file, rng):
    atoms = displaced(rng)
    h64 = HedgeNetElectronCalculator(model_file).get_hamiltonian(atoms)
    h32 = HedgeNetElectronCalculator(model_file, dtype="float32").get_hamiltonian(atoms)
    assert np.abs(h64.blocks - h32.blocks).max() < 1e-4
    # the predicted Hamiltonian feeds the sparse shift-invert solver like a reference one
    k = np.array([1 / 3, 1 / 3, 0.0])
    dense = h64.eigh(k)[0]
    sigma = float(np.median(dense))
    near = h64.eigsh_near(k, sigma, n_states=6)
    expect = np.sort(dense[np.argsort(np.abs(dense - sigma))[:6]])
    assert np.allclose(near, expect, atol=1e-8)


def test_bad_input(model_file):
    calc = HedgeNetElectronCalculator(model_file)
    atoms = bilayer_graphene("AB")
    atoms.numbers[1] = 5
    with pytest.raises(ValueError, match="element B"):
        calc.get_hamiltonian(atoms)
    with pytest.raises(TypeError):
        calc.get_hamiltonian("not atoms")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        HedgeNetElectronCalculator(model_file.parent / "missing.pt")


@pytest.mark.skipif(not SHIPPED.exists(), reason="the shipped model data/hedgenet_electron/model.pt is not present")
def test_shipped_model_reproduces_the_reference(rng):
    """The shipped model against SlaterKosterSP3 on a displaced 3×3 AB bilayer (unseen size)."""
    calc = HedgeNetElectronCalculator(SHIPPED, dtype="float64")
    atoms = displaced(rng, size=(3, 3), amplitude=0.06)
    pred = calc.get_hamiltonian(atoms)
    ref = SlaterKosterSP3().get_hamiltonian(atoms)
    keys = {(int(i), int(j), tuple(s)): b for (i, j), s, b in zip(ref.pairs, ref.shifts, ref.blocks)}
    err = [np.abs(b - keys[(int(i), int(j), tuple(s))]) for (i, j), s, b in zip(pred.pairs, pred.shifts, pred.blocks)
           if (int(i), int(j), tuple(s)) in keys]
    mae_mev = 1e3 * float(np.mean(err))
    assert mae_mev < 1.0, f"block MAE {mae_mev:.3f} meV"
    k = np.array([[0.0, 0.0, 0.0], [0.5, 0.0, 0.0]])
    e_ref, e_pred = ref.eigh(k), pred.eigh(k)
    ef = np.median(e_ref)
    window = np.abs(e_ref - ef) < 1.0
    band_err = 1e3 * np.abs(e_ref - e_pred)[window].max()
    assert band_err < 5.0, f"band error {band_err:.2f} meV within ±1 eV"
