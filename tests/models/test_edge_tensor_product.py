"""The fused edge tensor product reproduces e3nn's (values, first and second derivatives) in float64."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mace.modules.irreps_tools import tp_out_irreps_with_instructions

from mlepi_ase._e3nn import o3
from mlepi_ase.models import load_phonon_model, save_phonon_model
from mlepi_ase.models.edge_tensor_product import FusedEdgeTensorProduct, fusable
from mlepi_ase.pipeline import DEFAULT_PHONON_MODEL
from mlepi_ase.structures import bilayer_graphene

from test_phonon_model import rattled_bilayer, tiny_model
from test_phonon_cuda import requires_cuda


def mace_edge_tp(node_irreps: str, max_ell: int | str, channels: int) -> o3.TensorProduct:
    """The edge tensor product of a MACE interaction layer (as HedgeNet-Phonon builds it), float64.

    ``max_ell`` an int: spherical harmonics up to that degree as the second input; a string: those
    irreps (each of multiplicity 1) instead.
    """
    sh = o3.Irreps.spherical_harmonics(max_ell) if isinstance(max_ell, int) else o3.Irreps(max_ell)
    target = (sh * channels).sort()[0].simplify()
    mid, instructions = tp_out_irreps_with_instructions(o3.Irreps(node_irreps), sh, target)
    tp = o3.TensorProduct(o3.Irreps(node_irreps), sh, mid, instructions=instructions,
                          shared_weights=False, internal_weights=False).double()
    with torch.no_grad():  # e3nn builds its Wigner-3j buffers in float32; the model rebuilds them in float64
        for name, buf in tp.named_buffers():
            if "_w3j_" in name:
                l1, l2, l3 = (int(x) for x in name.rsplit("_w3j_", 1)[1].split("_"))
                buf.copy_(o3.wigner_3j(l1, l2, l3, dtype=torch.float64))
    return tp


CASES = {
    "scalars_l2": ("4x0e", 2, 4),
    "vectors_l2": ("4x0e+4x1o", 2, 4),  # the shipped model's second layer, 4 instead of 32 channels
    "l2_features_l3": ("3x0e+3x1o+3x2e", 3, 3),  # more paths, a first input of degree 2
    "unequal_multiplicities": ("8x0e+4x1o+4x1e+2x2e", 2, 4),  # as HedgeNet-Electron's hidden irreps
    # two second-input irreps of one degree: several paths of a scalar first input share an output degree
    "repeated_second_degrees": ("3x0e+2x1o", "1x0e+1x1o+1x1o+1x2e", 3),
}


DEVICES = ["cpu", pytest.param("cuda", marks=requires_cuda)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_values_and_derivatives_match_e3nn(case, device, rng):
    tp = mace_edge_tp(*case)
    assert fusable(tp)
    fused = FusedEdgeTensorProduct(tp).double().to(device)
    tp = tp.to(device)
    n_edges = 7
    gen = torch.Generator().manual_seed(int(rng.integers(1 << 30)))

    def inputs():
        return [torch.randn(n_edges, d, dtype=torch.float64, generator=gen).to(device).requires_grad_()
                for d in (tp.irreps_in1.dim, tp.irreps_in2.dim, tp.weight_numel)]

    x1, x2, w = inputs()
    reference, ours = tp(x1, x2, w), fused(x1, x2, w)
    assert ours.device.type == device
    assert reference.abs().max() > 0.1
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-12)

    # first derivatives (the forces) and second derivatives (training on forces) of a random functional
    probe = torch.randn(reference.shape, dtype=torch.float64, generator=gen).to(device)
    grads = {}
    for name, module in (("e3nn", tp), ("fused", fused)):
        g1 = torch.autograd.grad((module(x1, x2, w) * probe).sum(), [x1, x2, w], create_graph=True)
        g2 = torch.autograd.grad(sum((g ** 2).sum() for g in g1), [x1, x2, w])
        grads[name] = [*g1, *g2]
    for a, b in zip(grads["fused"], grads["e3nn"]):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-11)


def test_scatter_sum_is_index_add_of_messages(rng):
    tp = mace_edge_tp("4x0e+4x1o", 2, 4)
    fused = FusedEdgeTensorProduct(tp).double()
    n_edges, n_nodes = 11, 4
    x1, x2, w = (torch.as_tensor(rng.normal(size=(n_edges, d))) for d in (tp.irreps_in1.dim, 9, tp.weight_numel))
    receiver = torch.as_tensor(rng.integers(n_nodes, size=n_edges))
    expected = torch.zeros(n_nodes, tp.irreps_out.dim, dtype=torch.float64).index_add(0, receiver, tp(x1, x2, w))
    torch.testing.assert_close(fused.scatter_sum(x1, x2, w, receiver, n_nodes), expected, rtol=0, atol=1e-12)


def test_other_forms_are_refused():
    sh = o3.Irreps.spherical_harmonics(1)
    shared = o3.TensorProduct("2x0e", sh, "2x0e+2x1o", [(0, 0, 0, "uvu", True), (0, 1, 1, "uvu", True)])
    full = o3.FullyConnectedTensorProduct("2x0e", sh, "3x0e", shared_weights=False, internal_weights=False)
    for tp in (shared, full):
        assert not fusable(tp)
        with pytest.raises(ValueError, match="fusable"):
            FusedEdgeTensorProduct(tp)


@pytest.mark.parametrize("heterogeneous", [True, False], ids=["hetero", "homo"])
def test_model_is_the_same_with_either_product(heterogeneous, rng, tmp_path):
    model = tiny_model(heterogeneous)
    assert all(block.use_fused_tp for block in model.interactions)
    atoms = rattled_bilayer(rng)
    fused = model.predict(atoms, compute_stress=True)
    for block in model.interactions:
        block.use_fused_tp = False
    plain = model.predict(atoms, compute_stress=True)
    assert abs(fused["energy"] - plain["energy"]) < 1e-12
    np.testing.assert_allclose(fused["forces"], plain["forces"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(fused["stress"], plain["stress"], rtol=0, atol=1e-14)
    # nothing of the fused product is stored: model files stay as they were
    assert not any("fused_tp" in key for key in model.state_dict())
    save_phonon_model(model, tmp_path / "m.pt")
    reloaded = load_phonon_model(tmp_path / "m.pt", dtype="float64")
    assert reloaded.predict(atoms)["energy"] == pytest.approx(fused["energy"], abs=1e-12)


def test_coefficients_are_rebuilt_in_float64_after_a_round_trip_through_float32():
    model = tiny_model()
    before = [b.clone() for n, b in model.named_buffers() if "fused_tp.coefficients" in n]
    model.to(torch.float32).to(torch.float64)
    after = [b for n, b in model.named_buffers() if "fused_tp.coefficients" in n]
    assert before and all(a.dtype == torch.float64 for a in after)
    for a, b in zip(after, before):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("device", DEVICES)
def test_shipped_model_forces_and_training_gradients_agree(device, rng):
    """Shipped weights in float64: energies, forces and the weight gradient of a force loss (a second derivative,
    as in training) with the fused edge product equal those with e3nn's, on the GPU as on the CPU."""
    model = load_phonon_model(DEFAULT_PHONON_MODEL, device=device, dtype=torch.float64)
    displaced = bilayer_graphene("AB", size=(3, 3), vacuum=12.0)
    displaced.positions += rng.normal(scale=0.05, size=displaced.positions.shape)
    assert all(block.use_fused_tp for block in model.interactions)
    batch = model.batch([displaced, displaced.copy()])

    def energy_forces_gradients() -> list[torch.Tensor]:
        out = model(batch, compute_forces=True, training=True)
        loss = (out["forces"] ** 2).mean() + out["energy"].sum() * 1e-3
        weights = [p for p in model.parameters() if p.requires_grad]
        return [out["energy"].detach(), out["forces"].detach(), *torch.autograd.grad(loss, weights)]

    fused = energy_forces_gradients()
    for block in model.interactions:
        block.use_fused_tp = False
    plain = energy_forces_gradients()
    assert fused[1].device.type == device and fused[1].abs().max() > 0.1
    torch.testing.assert_close(fused[0], plain[0], rtol=0, atol=1e-9)  # eV, of about -500
    torch.testing.assert_close(fused[1], plain[1], rtol=0, atol=1e-10)
    assert max(g.abs().max() for g in fused[2:]) > 1e-3
    for a, b in zip(fused[2:], plain[2:]):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


def test_electron_model_is_the_same_with_either_product(rng):
    """HedgeNet-Electron (unequal multiplicities per degree, an s2p2d1 basis) with both products, float64."""
    from test_electron_model import SPD, tiny

    model = tiny(SPD)
    products = [m for m in model.modules() if hasattr(m, "use_fused_tp")]
    assert len(products) == 3 and all(m.use_fused_tp for m in products)  # two interactions, the off-site head
    atoms = rattled_bilayer(rng, size=(1, 1))
    fused = model.predict_hamiltonian(atoms)
    for m in products:
        m.use_fused_tp = False
    plain = model.predict_hamiltonian(atoms)
    assert np.abs(fused.blocks).max() > 0.1
    np.testing.assert_allclose(fused.blocks, plain.blocks, rtol=0, atol=1e-12)
    assert not any("fused_tp" in key for key in model.state_dict())
