"""HedgeNet-Phonon on a CUDA GPU: the same function as on the CPU, forces still −dE/dx.

Skipped where PyTorch sees no CUDA device (this project's CI machines have none); run on a GPU machine with
``python -m pytest tests/models/test_phonon_cuda.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mlepi_ase.calculators import HedgeNetPhononCalculator
from mlepi_ase.models import HedgeNetPhonon, load_phonon_model, widen_phonon_model
from mlepi_ase.structures import bilayer_graphene

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch.cuda.is_available())")
pytestmark = requires_cuda

SHIPPED = Path(__file__).resolve().parents[2] / "data" / "hedgenet_phonon" / "hedgenet_phonon.pt"


@pytest.fixture
def displaced(rng):
    """A 4×4×1 AB bilayer (64 atoms) with 0.05 Å random displacements."""
    atoms = bilayer_graphene("AB", size=(4, 4))
    atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape)
    return atoms


@pytest.mark.parametrize("heterogeneous", [True, False])
def test_the_shipped_weights_give_the_same_energy_forces_and_stress_on_the_gpu(displaced, heterogeneous):
    cpu = load_phonon_model(SHIPPED, device="cpu", dtype=torch.float64)
    gpu = load_phonon_model(SHIPPED, device="cuda", dtype=torch.float64)
    if not heterogeneous:  # the homogeneous switch on the same weights' configuration, random weights
        torch.manual_seed(3)
        cpu = HedgeNetPhonon(cpu.config, heterogeneous=False, dtype=torch.float64)
        gpu = HedgeNetPhonon(cpu.config, heterogeneous=False, dtype=torch.float64, device="cuda")
        gpu.load_state_dict(cpu.state_dict())
    a = cpu.predict(displaced, compute_stress=True)
    b = gpu.predict(displaced, compute_stress=True)
    assert gpu.device.type == "cuda"
    assert abs(a["energy"] - b["energy"]) < 1e-9  # eV, of about -500 eV
    assert np.abs(a["forces"]).max() > 0.1
    np.testing.assert_allclose(b["forces"], a["forces"], atol=1e-10)
    np.testing.assert_allclose(b["stress"], a["stress"], atol=1e-11)


def test_calculator_forces_on_the_gpu_are_minus_the_energy_gradient(displaced):
    atoms = displaced
    atoms.calc = HedgeNetPhononCalculator(SHIPPED, device="cuda", dtype="float64")
    forces = atoms.get_forces()
    h = 1e-4
    for atom, axis in [(0, 0), (17, 2), (40, 1)]:
        energies = []
        for sign in (1, -1):
            moved = atoms.copy()
            moved.calc = atoms.calc
            moved.positions[atom, axis] += sign * h
            energies.append(moved.get_potential_energy())
        assert forces[atom, axis] == pytest.approx(-(energies[0] - energies[1]) / (2 * h), abs=1e-6)


def test_widening_on_the_gpu_keeps_the_predictions(displaced):
    model = load_phonon_model(SHIPPED, device="cuda", dtype=torch.float64)
    wide = widen_phonon_model(model, 2 * model.config["num_channels"])
    assert wide.device.type == "cuda"
    a = model.predict(displaced)
    b = wide.predict(displaced)
    assert b["energy"] == pytest.approx(a["energy"], abs=1e-9)
    np.testing.assert_allclose(b["forces"], a["forces"], atol=1e-10)
