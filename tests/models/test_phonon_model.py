"""Physics tests of the HedgeNet-Phonon model (untrained, tiny, float64)."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
from ase import Atoms

from mlepi_ase._e3nn import o3
from mlepi_ase.graph import build_graph
from mlepi_ase.models import HedgeNetPhonon, ModelFileError, load_phonon_model, save_phonon_model
from mlepi_ase.structures import bilayer_graphene

TINY = dict(num_channels=4, max_L=1, max_ell=2, radial_mlp=[8], num_interactions=2, correlation=2,
            num_bessel=4, readout_mlp=4, cutoffs={"intra": 3.0, "inter": 4.5},
            atomic_energies=[-7.0], scale=0.7, shift=0.1)


def tiny_model(heterogeneous: bool = True, seed: int = 0, dtype=torch.float64) -> HedgeNetPhonon:
    torch.manual_seed(seed)
    return HedgeNetPhonon(TINY, heterogeneous=heterogeneous, dtype=dtype)


def rattled_bilayer(rng, size=(2, 1), amplitude=0.08) -> Atoms:
    atoms = bilayer_graphene("AB", size=size, vacuum=12.0)
    atoms.positions += rng.normal(scale=amplitude, size=atoms.positions.shape)
    return atoms


def energy(model: HedgeNetPhonon, atoms: Atoms) -> float:
    return model.predict(atoms)["energy"]


@pytest.fixture(params=[True, False], ids=["hetero", "homo"])
def model(request):
    return tiny_model(request.param)


def test_forces_are_minus_energy_gradient(model, rng):
    atoms = rattled_bilayer(rng)
    forces = model.predict(atoms)["forces"]
    assert np.abs(forces).max() > 1e-3  # non-trivial
    h = 1e-4
    numeric = np.zeros_like(forces)
    for a in range(len(atoms)):
        for c in range(3):
            plus, minus = atoms.copy(), atoms.copy()
            plus.positions[a, c] += h
            minus.positions[a, c] -= h
            numeric[a, c] = -(energy(model, plus) - energy(model, minus)) / (2 * h)
    np.testing.assert_allclose(forces, numeric, atol=1e-7 * max(1.0, np.abs(forces).max()))


def test_stress_is_strain_derivative(model, rng):
    atoms = rattled_bilayer(rng)
    stress = model.predict(atoms, compute_stress=True)["stress"]
    np.testing.assert_allclose(stress, stress.T, atol=1e-12)
    h = 1e-5
    volume = atoms.get_volume()
    numeric = np.zeros((3, 3))
    for a in range(3):
        for b in range(3):
            e = []
            for sign in (1, -1):
                eps = np.zeros((3, 3))
                eps[a, b] += 0.5 * sign * h
                eps[b, a] += 0.5 * sign * h
                strained = atoms.copy()
                strained.set_cell(atoms.cell @ (np.eye(3) + eps), scale_atoms=True)
                e.append(energy(model, strained))
            numeric[a, b] = (e[0] - e[1]) / (2 * h) / volume
    assert np.abs(stress).max() > 1e-5
    np.testing.assert_allclose(stress, numeric, atol=1e-9)


def test_invariance_rotation_reflection_translation(model, rng):
    atoms = rattled_bilayer(rng)
    ref = model.predict(atoms, compute_stress=True)
    for rot in (o3.rand_matrix(dtype=torch.float64).numpy(), -o3.rand_matrix(dtype=torch.float64).numpy()):
        moved = atoms.copy()
        moved.set_cell(atoms.cell @ rot.T)
        moved.positions = atoms.positions @ rot.T + rng.normal(size=3)
        out = model.predict(moved, compute_stress=True)
        assert out["energy"] == pytest.approx(ref["energy"], abs=1e-11)
        np.testing.assert_allclose(out["forces"], ref["forces"] @ rot.T, atol=1e-11)
        np.testing.assert_allclose(out["stress"], rot @ ref["stress"] @ rot.T, atol=1e-12)


def test_invariance_permutation_and_rewrapping(model, rng):
    atoms = rattled_bilayer(rng, size=(2, 2))
    ref = model.predict(atoms)
    perm = rng.permutation(len(atoms))
    permuted = atoms[perm]
    out = model.predict(permuted)
    assert out["energy"] == pytest.approx(ref["energy"], abs=1e-11)
    np.testing.assert_allclose(out["forces"], ref["forces"][perm], atol=1e-11)

    rewrapped = atoms.copy()
    images = rng.integers(-2, 3, size=(len(atoms), 3))
    images[:, 2] = rng.integers(-1, 2, size=len(atoms))  # also other images along the vacuum axis
    rewrapped.positions += images @ np.asarray(atoms.cell)
    out = model.predict(rewrapped)
    assert out["energy"] == pytest.approx(ref["energy"], abs=1e-11)
    np.testing.assert_allclose(out["forces"], ref["forces"], atol=1e-11)


def test_far_layers_have_no_inter_edges_and_add_up(model, rng):
    atoms = bilayer_graphene("AB", size=(2, 2), interlayer=20.0, vacuum=20.0)
    atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape)
    graph = build_graph(atoms, model.graph_cutoffs)
    assert graph.counts["inter"] == 0 and graph.counts["intra"] > 0
    layers = atoms.arrays["layer"]
    total = model.predict(atoms)
    parts = [model.predict(atoms[layers == lay]) for lay in (0, 1)]
    assert total["energy"] == pytest.approx(parts[0]["energy"] + parts[1]["energy"], abs=1e-10)
    np.testing.assert_allclose(total["forces"][layers == 0], parts[0]["forces"], atol=1e-12)
    # the same bilayer at the normal spacing does interact
    close = bilayer_graphene("AB", size=(2, 2), interlayer=3.35, vacuum=20.0)
    assert build_graph(close, model.graph_cutoffs).counts["inter"] > 0


def test_each_relation_has_its_own_edge_network(rng):
    model = tiny_model(True)
    bilayer = rattled_bilayer(rng)
    layers = bilayer.arrays["layer"]
    monolayer = bilayer[layers == 0]
    e_bi, e_mono = energy(model, bilayer), energy(model, monolayer)
    with torch.no_grad():  # perturb only the inter-layer edge network of every interaction
        for inter in model.interactions:
            for p in inter.edge_networks[1].parameters():
                p.add_(0.3)
    assert energy(model, monolayer) == pytest.approx(e_mono, abs=1e-12)
    assert abs(energy(model, bilayer) - e_bi) > 1e-4
    with torch.no_grad():
        for inter in model.interactions:
            for p in inter.edge_networks[0].parameters():
                p.add_(0.3)
    assert abs(energy(model, monolayer) - e_mono) > 1e-4


def test_relation_cutoffs_are_separate(rng):
    """An intra-layer pair beyond the intra cutoff but inside the inter cutoff carries no message."""
    model = tiny_model(True)
    cut = model.graph_cutoffs
    assert cut["intra"] < cut["inter"]
    d = 0.5 * (cut["intra"] + cut["inter"])
    cell = np.diag([30.0, 30.0, 30.0])
    lone = Atoms("C", positions=[[5, 5, 5]], cell=cell, pbc=True)
    lone.set_array("layer", np.array([0]))
    same = Atoms("C2", positions=[[5, 5, 5], [5 + d, 5, 5]], cell=cell, pbc=True)
    same.set_array("layer", np.array([0, 0]))
    other = same.copy()
    other.set_array("layer", np.array([0, 1]))
    assert energy(model, same) == pytest.approx(2 * energy(model, lone), abs=1e-12)
    assert abs(energy(model, other) - 2 * energy(model, lone)) > 1e-6


def test_homogeneous_switch_is_plain_mace(rng):
    het, hom = tiny_model(True), tiny_model(False)
    assert het.n_networks == 2 and hom.n_networks == 1
    assert all(len(i.edge_networks) == 1 for i in hom.interactions)
    # same width: only the extra edge networks (and radial embeddings) differ
    extra = sum(p.numel() for i in het.interactions for p in i.edge_networks[1].parameters())
    assert het.count_parameters() - hom.count_parameters() == extra
    # the homogeneous model ignores layer labels
    atoms = rattled_bilayer(rng)
    relabelled = atoms.copy()
    relabelled.set_array("layer", np.zeros(len(atoms), dtype=int))
    assert energy(hom, relabelled) == pytest.approx(energy(hom, atoms), abs=1e-12)
    assert abs(energy(het, relabelled) - energy(het, atoms)) > 1e-6


def test_float32_matches_float64(rng):
    m64 = tiny_model(True, dtype=torch.float64)
    m32 = tiny_model(True, dtype=torch.float32)
    m32.load_state_dict(m64.state_dict())
    assert m32.dtype == torch.float32
    atoms = rattled_bilayer(rng)
    r64, r32 = m64.predict(atoms), m32.predict(atoms)
    assert r32["energy"] == pytest.approx(r64["energy"], rel=1e-5)
    np.testing.assert_allclose(r32["forces"], r64["forces"], atol=1e-4)
    assert torch.get_default_dtype() == torch.float32  # never changed globally


def test_batch_equals_single_structures(rng):
    model = tiny_model(True)
    structures = [rattled_bilayer(rng), rattled_bilayer(rng, size=(1, 1))]
    out = model(model.batch(structures), compute_stress=True)
    for k, atoms in enumerate(structures):
        single = model.predict(atoms, compute_stress=True)
        assert float(out["energy"][k].detach()) == pytest.approx(single["energy"], abs=1e-11)
        np.testing.assert_allclose(out["stress"][k].detach().numpy(), single["stress"], atol=1e-12)


def test_bad_input_is_refused():
    model = tiny_model(True)
    with pytest.raises(ValueError, match="not known to this model"):
        model.predict(Atoms("CH", positions=[[0, 0, 0], [0, 0, 1.1]], cell=np.eye(3) * 10, pbc=True))
    with pytest.raises(KeyError, match="unknown HedgeNet-Phonon config"):
        HedgeNetPhonon(num_channel=3)
    with pytest.raises(ValueError, match="cutoff"):
        HedgeNetPhonon(cutoffs={"intra": -1.0, "inter": 4.0})


def test_save_load_roundtrip(tmp_path, rng):
    model = tiny_model(True)
    model.set_energy_normalization(atomic_energies=[-7.3], scale=0.5, shift=0.01)
    path = save_phonon_model(model, tmp_path / "m.pt", metadata={"note": "test"})
    loaded = load_phonon_model(path)
    assert loaded.metadata["cutoffs"] == {"intra": 3.0, "inter": 4.5}
    assert loaded.metadata["species"] == [6] and loaded.metadata["units"]["energy"] == "eV"
    assert loaded.metadata["note"] == "test" and "package_version" in loaded.metadata
    atoms = rattled_bilayer(rng)
    a, b = model.predict(atoms), loaded.predict(atoms)
    assert a["energy"] == pytest.approx(b["energy"], abs=1e-12)
    np.testing.assert_allclose(a["forces"], b["forces"], atol=1e-12)
    as32 = load_phonon_model(path, dtype="float32")
    assert as32.dtype == torch.float32


class _Exploit:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_malicious_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "bad.pt"
    model = tiny_model(True)
    payload = {"format": "mlepi_ase.hedgenet_phonon", "format_version": 1, "config": model.config,
               "state_dict": model.state_dict(), "metadata": {"x": _Exploit(str(marker))}}
    torch.save(payload, bad)
    assert os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")  # the dangerous setting is active
    with pytest.raises(ModelFileError, match="refusing to load"):
        load_phonon_model(bad)
    assert not marker.exists()
    # a plain pickle file is refused too, and so is an unrelated weights file
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps(_Exploit(str(marker))))
    with pytest.raises(ModelFileError):
        load_phonon_model(raw)
    assert not marker.exists()
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(ModelFileError, match="not a HedgeNet-Phonon model file"):
        load_phonon_model(other)
    with pytest.raises(FileNotFoundError):
        load_phonon_model(tmp_path / "missing.pt")


def test_layers_are_detected_without_touching_the_atoms(rng):
    model = tiny_model(True)
    atoms = rattled_bilayer(rng)
    ref = energy(model, atoms)
    del atoms.arrays["layer"]
    assert energy(model, atoms) == pytest.approx(ref, abs=1e-12)  # flat layers found by z clustering
    assert "layer" not in atoms.arrays


def test_models_share_graphs_only_when_their_graph_settings_agree(ab_bilayer):
    from mlepi_ase.models.phonon import atoms_to_graph, graph_settings, normalize_phonon_config

    atoms = ab_bilayer.repeat((2, 2, 1))
    base = normalize_phonon_config(cutoffs={"intra": 3.2, "inter": 5.0})
    wider = normalize_phonon_config(base, num_channels=64, num_interactions=3, avg_num_neighbors=7.0)
    first_shell = normalize_phonon_config(base, cutoffs={"intra": 2.0, "inter": 5.0})
    homogeneous = normalize_phonon_config(base, heterogeneous=False)
    assert graph_settings(base) == graph_settings(wider)
    g1, g2 = atoms_to_graph(atoms, base), atoms_to_graph(atoms, wider)
    for field in ("edge_index", "shifts", "network", "species"):
        np.testing.assert_array_equal(getattr(g1, field), getattr(g2, field))
    keys = {graph_settings(c) for c in (base, first_shell, homogeneous)}
    assert len(keys) == 3
    assert atoms_to_graph(atoms, first_shell).edge_index.shape[1] < g1.edge_index.shape[1]
