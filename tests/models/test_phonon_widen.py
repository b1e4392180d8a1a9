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


def _assert_same_predictions(narrow: torch.nn.Module, wide: torch.nn.Module, atoms) -> None:
    """Energy, forces and stress of the two models agree to round-off on a non-trivial structure."""
    a = narrow.predict(atoms, compute_stress=True)
    b = wide.predict(atoms, compute_stress=True)
    assert np.abs(a["forces"]).max() > 1e-2  # non-trivial
    assert b["energy"] == pytest.approx(a["energy"], rel=1e-12, abs=1e-12)
    np.testing.assert_allclose(b["forces"], a["forces"], rtol=0, atol=1e-11)
    np.testing.assert_allclose(b["stress"], a["stress"], rtol=0, atol=1e-12)


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
        _assert_same_predictions(narrow, wide, rattled_bilayer(rng, size=(2, 2)))


@pytest.mark.parametrize("heterogeneous", [True, False], ids=["hetero", "homo"])
@pytest.mark.parametrize("channels", [None, 6], ids=["readout", "readout+channels"])
def test_widened_readout_predicts_the_same_energy_forces_and_stress(heterogeneous, channels, rng):
    narrow = _trained_like(heterogeneous)
    hidden = narrow.config["readout_mlp"]
    wide = widen_phonon_model(narrow, channels, seed=2, readout_mlp=3 * hidden)
    assert wide.config["readout_mlp"] == 3 * hidden
    assert wide.config["num_channels"] == (channels or narrow.config["num_channels"])
    assert wide.count_parameters() > narrow.count_parameters()
    _assert_same_predictions(narrow, wide, rattled_bilayer(rng, size=(2, 2)))


def test_the_added_readout_units_start_silent_and_get_gradients(rng):
    narrow = _trained_like(True)
    hidden = narrow.config["readout_mlp"]
    wide = widen_phonon_model(narrow, readout_mlp=hidden + 5, seed=1)
    batch = wide.batch([rattled_bilayer(rng, size=(2, 2))])
    wide(batch, compute_forces=False)["energy"].sum().backward()
    out = wide.readouts[-1].linear_2.weight  # (hidden, 1): rows of the added units are zero, not frozen
    assert torch.all(out.detach()[hidden:] == 0)
    assert torch.all(out.grad[hidden:].abs() > 0)
    into = wide.readouts[-1].linear_1.weight.detach().view(-1, hidden + 5)  # random weights into the new units
    assert torch.all(into[:, hidden:].abs().sum(dim=0) > 0)


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
    with pytest.raises(ValueError, match="narrow.*readout_mlp"):
        widen_phonon_model(narrow, readout_mlp=narrow.config["readout_mlp"] - 1)


@pytest.mark.parametrize("mode", ["uvu", "uvw"])
def test_widened_tensor_product_blocks_keep_the_old_outputs(mode, rng):
    """``_widen_blocks`` on an internal-weight tensor product of either connection mode: the old output
    channels of the wide product equal the narrow product's outputs whatever the added input channels hold."""
    from mlepi_ase._e3nn import o3
    from mlepi_ase.models.phonon_widen import _widen_blocks

    def tensor_product(u: int):
        irreps_in1 = o3.Irreps(f"{u}x0e+{u}x1o")
        irreps_in2 = o3.Irreps("1x0e+1x1o")
        irreps_out = o3.Irreps(f"{u}x0e+{u}x1o")
        instructions = [(i1, i2, o, mode, True) for i1, (_, ir1) in enumerate(irreps_in1)
                        for i2, (_, ir2) in enumerate(irreps_in2) for o, (_, ir_o) in enumerate(irreps_out)
                        if ir_o in ir1 * ir2]
        return o3.TensorProduct(irreps_in1, irreps_in2, irreps_out, instructions, internal_weights=True,
                                shared_weights=True).to(torch.float64)

    def embed(x_old: torch.Tensor, u_old: int, u_new: int) -> torch.Tensor:
        """Features of ``u_old`` channels (0e then 1o blocks) placed in the old slots of ``u_new`` channels,
        random values in the added ones."""
        n = x_old.shape[0]
        extra = torch.as_tensor(rng.normal(size=(n, 4 * u_new)), dtype=torch.float64)
        scal, vec = extra[:, :u_new].clone(), extra[:, u_new:].view(n, u_new, 3).clone()
        scal[:, :u_old] = x_old[:, :u_old]
        vec[:, :u_old] = x_old[:, u_old:].view(n, u_old, 3)
        return torch.cat([scal, vec.reshape(n, -1)], dim=1)

    def old_slots(y: torch.Tensor, u_old: int, u_new: int) -> torch.Tensor:
        n = y.shape[0]
        return torch.cat([y[:, :u_old], y[:, u_new:].view(n, u_new, 3)[:, :u_old].reshape(n, -1)], dim=1)

    torch.manual_seed(0)
    narrow, wide = tensor_product(2), tensor_product(5)
    with torch.no_grad():
        narrow.weight.normal_()
        wide.weight.normal_()
        _widen_blocks(narrow, wide)
    x1 = torch.as_tensor(rng.normal(size=(6, 8)), dtype=torch.float64)
    x2 = torch.as_tensor(rng.normal(size=(6, 4)), dtype=torch.float64)
    expected = narrow(x1, x2)
    assert expected.abs().max() > 0.1
    torch.testing.assert_close(old_slots(wide(embed(x1, 2, 5), x2), 2, 5), expected, rtol=1e-12, atol=1e-12)
