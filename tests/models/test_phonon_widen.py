"""Widening HedgeNet-Phonon keeps its predictions and makes the added channels trainable (float64)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mlepi_ase.models.phonon_widen import widen_phonon_model

from test_phonon_model import rattled_bilayer, tiny_model


def _trained_like(heterogeneous: bool) -> torch.nn.Module:
    """A tiny model whose weights are all far from their initial values (as after training)."""
    model = tiny_model(heterogeneous, seed=3)
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.mul_(1.0 + 0.5 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return model


@pytest.mark.parametrize("heterogeneous", [True, False], ids=["hetero", "homo"])
@pytest.mark.parametrize("channels", [5, 12])
def test_widened_model_predicts_the_same_energy_forces_and_stress(heterogeneous, channels, rng):
    narrow = _trained_like(heterogeneous)
    wide = widen_phonon_model(narrow, channels, seed=1)
    assert wide.config["num_channels"] == channels
    assert {k: v for k, v in wide.config.items() if k != "num_channels"} == \
        {k: v for k, v in narrow.config.items() if k != "num_channels"}
    assert wide.count_parameters() > narrow.count_parameters()
    for _ in range(2):
        atoms = rattled_bilayer(rng, size=(2, 2))
        a = narrow.predict(atoms, compute_stress=True)
        b = wide.predict(atoms, compute_stress=True)
        assert np.abs(a["forces"]).max() > 1e-2  # non-trivial
        assert b["energy"] == pytest.approx(a["energy"], rel=1e-12, abs=1e-12)
        np.testing.assert_allclose(b["forces"], a["forces"], rtol=0, atol=1e-11)
        np.testing.assert_allclose(b["stress"], a["stress"], rtol=0, atol=1e-12)


def test_the_added_channels_get_gradients_and_change_the_energy_after_a_step(rng):
    narrow = _trained_like(True)
    wide = widen_phonon_model(narrow, 8, seed=1)
    atoms = rattled_bilayer(rng, size=(2, 2))
    batch = wide.batch([atoms])
    energy = wide(batch, compute_forces=False)["energy"].sum()
    energy.backward()
    # the last readout's first linear map: (channels, hidden) block; rows 4.. are the added channels,
    # set to zero by the widening (so the energy is unchanged) yet with non-zero gradients
    w = wide.readouts[-1].linear_1.weight
    hidden = w.numel() // 8
    rows = w.detach().view(8, hidden)
    grads = w.grad.view(8, hidden)
    assert torch.all(rows[4:] == 0)
    assert torch.all(grads[4:].abs().sum(dim=1) > 0)
    e0 = float(energy.detach())
    with torch.no_grad():
        w -= 1e-2 * w.grad
    assert float(wide(batch, compute_forces=False)["energy"].sum().detach()) != pytest.approx(e0, abs=1e-9)


def test_widening_leaves_the_model_alone_and_refuses_to_narrow():
    narrow = _trained_like(True)
    before = {k: v.clone() for k, v in narrow.state_dict().items()}
    widen_phonon_model(narrow, 6)
    assert all(torch.equal(before[k], v) for k, v in narrow.state_dict().items())
    with pytest.raises(ValueError, match="narrow"):
        widen_phonon_model(narrow, 3)
