"""Physics tests of the HedgeNet-Electron model (untrained, tiny, float64).

An untrained model with random weights is an arbitrary smooth function of the structure: every symmetry
it must obey holds for it exactly (to float64 round-off) or the construction is wrong.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms

from mlepi_ase._e3nn import o3
from mlepi_ase.models.electron import (
    ElectronModelFileError,
    HedgeNetElectron,
    load_electron_model,
    normalize_electron_config,
    pair_block_map,
    pair_irreps,
    save_electron_model,
)
from mlepi_ase.structures import bilayer_graphene

SP = {"C": [0, 1]}
SPD = {"C": [0, 0, 1, 1, 2]}  # DeepH's s2p2d1


def tiny(basis=SP, seed=0, cutoffs=None, message_cutoffs=None, dtype=torch.float64, **kw) -> HedgeNetElectron:
    torch.manual_seed(seed)
    cfg = dict(basis=basis, cutoffs=cutoffs or {"intra": 3.2, "inter": 4.2}, num_channels=4, head_channels=2,
               num_interactions=2, num_radial=4, radial_hidden=8, avg_num_neighbors={"intra": 6.0, "inter": 3.0},
               block_scale=0.7)
    if message_cutoffs is not None:
        cfg["message_cutoffs"] = message_cutoffs
    cfg.update(kw)
    model = HedgeNetElectron(cfg, dtype=dtype)
    gen = np.random.default_rng(seed)
    offsets = {}
    for z in model.species:
        n = model.basis.norb(z)
        a = gen.normal(size=(n, n))
        offsets[z] = a + a.T
    model.set_onsite_offset(offsets)
    return model


def rattled_bilayer(rng, size=(2, 1), amplitude=0.08) -> Atoms:
    atoms = bilayer_graphene("AB", size=size, vacuum=12.0)
    atoms.positions += rng.normal(scale=amplitude, size=atoms.positions.shape)
    return atoms


def transformed(atoms: Atoms, q: np.ndarray) -> Atoms:
    """Apply the orthogonal matrix q to positions and cell (layer array kept)."""
    out = atoms.copy()
    out.positions = atoms.positions @ q.T
    out.cell = np.asarray(atoms.cell) @ q.T
    return out


def shell_irreps(shells) -> o3.Irreps:
    return o3.Irreps([(1, (l, (-1) ** l)) for l in shells])


def block_dict(h):
    """{(i, j, rounded edge vector): block} — independent of wrapping and image labels."""
    out = {}
    for (i, j), s, b in zip(h.pairs, h.shifts, h.blocks):
        v = h.positions[j] + s @ h.cell - h.positions[i]
        out[(int(i), int(j), tuple(np.round(v, 6)))] = b
    return out


# --------------------------------------------------------------------------- Clebsch–Gordan map
@pytest.mark.parametrize("la,lb", [(0, 1), (1, 1), (1, 2), (2, 2), (0, 2)])
def test_block_map_is_equivariant(la, lb):
    """D^{la}(Q) B(c) D^{lb}(Q)^T = B(D_out(Q) c) for rotations and reflections."""
    gen = torch.Generator().manual_seed(la * 10 + lb)
    irreps, _ = pair_irreps([la], [lb])
    m = pair_block_map([la], [lb], nmax=max(2 * la + 1, 2 * lb + 1))
    n = m.shape[1] ** 0.5
    nmax = int(round(n))
    c = torch.randn(irreps.dim, generator=gen, dtype=torch.float64)
    for sign in (1.0, -1.0):
        q = sign * o3.rand_matrix(dtype=torch.float64)
        da = o3.Irrep(la, (-1) ** la).D_from_matrix(q)
        db = o3.Irrep(lb, (-1) ** lb).D_from_matrix(q)
        b = (c @ m).view(nmax, nmax)[: 2 * la + 1, : 2 * lb + 1]
        b_rot = ((irreps.D_from_matrix(q) @ c) @ m).view(nmax, nmax)[: 2 * la + 1, : 2 * lb + 1]
        assert torch.allclose(da @ b @ db.T, b_rot, atol=1e-12, rtol=0)
        assert b.abs().max() > 1e-2


def test_pair_irreps_dimensions():
    irreps, slots = pair_irreps([0, 1], [0, 1])
    assert irreps.dim == 16  # (1 + 3)²
    irreps, slots = pair_irreps([0, 0, 1, 1, 2], [0, 0, 1, 1, 2])
    assert irreps.dim == 13 * 13
    # parity (-1)^{l1+l2}: the p–p pseudo-vector (1e) is present
    assert o3.Irrep("1e") in [ir for _, ir in pair_irreps([1], [1])[0]]


# ------------------------------------------------------------------------------ equivariance
@pytest.mark.parametrize("basis", [SP, SPD], ids=["sp", "s2p2d1"])
def test_rotation_and_reflection_equivariance(basis, rng):
    model = tiny(basis)
    atoms = rattled_bilayer(rng, size=(1, 1) if basis is SPD else (2, 1))
    h = model.predict_hamiltonian(atoms)
    d_irreps = shell_irreps(basis["C"])
    assert np.abs(h.blocks).max() > 0.1
    for improper in (False, True):
        q = o3.rand_matrix(dtype=torch.float64).numpy()
        if improper:
            q = -q  # a rotation times the inversion: an improper orthogonal matrix
        assert np.sign(np.linalg.det(q)) == (-1 if improper else 1)
        h2 = model.predict_hamiltonian(transformed(atoms, q))
        assert np.array_equal(h.pairs, h2.pairs) and np.array_equal(h.shifts, h2.shifts)
        d = d_irreps.D_from_matrix(torch.as_tensor(q)).numpy()
        err = np.abs(h2.blocks - d @ h.blocks @ d.T).max()
        assert err <= 1e-10, f"equivariance error {err:.2e} (improper={improper})"


def test_mirror_reflection_and_pseudovector_part(rng):
    """A mirror z → −z (swaps the layers' roles) and the antisymmetric p–p (1e) part is exercised."""
    model = tiny(SP)
    atoms = rattled_bilayer(rng)
    h = model.predict_hamiltonian(atoms)
    q = np.diag([1.0, 1.0, -1.0])
    h2 = model.predict_hamiltonian(transformed(atoms, q))
    d = shell_irreps([0, 1]).D_from_matrix(torch.as_tensor(q)).numpy()
    assert np.abs(h2.blocks - d @ h.blocks @ d.T).max() <= 1e-10
    pp = h.blocks[:, 1:, 1:]
    assert np.abs(pp - pp.transpose(0, 2, 1)).max() > 1e-4  # the 1e channel is not trivially zero


def test_heteronuclear_bases_equivariant_and_hermitian(rng):
    """Two species with different shells (padding, (a, b) vs (b, a) readouts)."""
    model = tiny({"B": [0, 1], "N": [0, 1, 2]}, seed=3)
    atoms = rattled_bilayer(rng)
    atoms.numbers = np.where(np.arange(len(atoms)) % 2 == 0, 5, 7)
    h = model.predict_hamiltonian(atoms)
    assert h.hermiticity_error() == 0.0
    q = -o3.rand_matrix(dtype=torch.float64).numpy()
    h2 = model.predict_hamiltonian(transformed(atoms, q))
    d_n = shell_irreps([0, 1, 2]).D_from_matrix(torch.as_tensor(q)).numpy()
    d_b = np.zeros_like(d_n)
    d_b[:4, :4] = shell_irreps([0, 1]).D_from_matrix(torch.as_tensor(q)).numpy()
    dz = {5: d_b, 7: d_n}
    for b in range(h.n_blocks):
        i, j = h.pairs[b]
        lhs = dz[atoms.numbers[i]] @ h.blocks[b] @ dz[atoms.numbers[j]].T
        assert np.abs(h2.blocks[b] - lhs).max() <= 1e-10
    # padding rows/columns of boron (4 of 9 orbitals) stay exactly zero
    boron = atoms.numbers[h.pairs[:, 0]] == 5
    assert np.all(h.blocks[boron, 4:, :] == 0.0)


# ---------------------------------------------------------------------------------- Hermiticity
def test_exact_hermiticity_real_space_and_k(rng):
    model = tiny(SP)
    atoms = rattled_bilayer(rng, size=(2, 2))
    h = model.predict_hamiltonian(atoms)
    assert h.hermiticity_error() == 0.0
    onsite = (h.pairs[:, 0] == h.pairs[:, 1]) & ~np.any(h.shifts, axis=1)
    assert np.array_equal(h.blocks[onsite], h.blocks[onsite].transpose(0, 2, 1))
    for k in rng.random((3, 3)) * [1, 1, 0]:
        hk = h.hk(k)
        assert np.abs(hk - hk.conj().T).max() <= 1e-13
        assert np.abs(hk).max() > 0.1


# ------------------------------------------------------------------------------------ invariances
def test_translation_and_rewrapping_invariance(rng):
    model = tiny(SP)
    atoms = rattled_bilayer(rng)
    h = model.predict_hamiltonian(atoms)
    moved = atoms.copy()
    moved.positions += rng.normal(size=3) * 3.0  # rigid translation ...
    lattice = np.asarray(atoms.cell)
    moved.positions += rng.integers(-2, 3, size=(len(atoms), 1)) * lattice[0]  # ... and other images
    moved.positions += rng.integers(-2, 3, size=(len(atoms), 1)) * lattice[1]
    h2 = model.predict_hamiltonian(moved)
    a, b = block_dict(h), block_dict(h2)
    assert set(a) == set(b)
    assert max(np.abs(a[key] - b[key]).max() for key in a) <= 1e-12
    assert not np.array_equal(h.shifts, h2.shifts)  # the images really changed
    k = np.array([0.21, 0.37, 0.0])
    assert np.allclose(h.hk(k, gauge="atomic"), h2.hk(k, gauge="atomic"), atol=1e-12, rtol=0)


def test_permutation_invariance(rng):
    model = tiny(SP)
    atoms = rattled_bilayer(rng)
    perm = rng.permutation(len(atoms))
    h = model.predict_hamiltonian(atoms)
    h2 = model.predict_hamiltonian(atoms[perm])
    a = block_dict(h)
    b = {(int(perm[i]), int(perm[j]), v): blk for (i, j, v), blk in block_dict(h2).items()}
    assert set(a) == set(b)
    assert max(np.abs(a[key] - b[key]).max() for key in a) <= 1e-12
    assert not np.array_equal(perm, np.arange(len(atoms)))


# -------------------------------------------------------------------------------------- cutoffs
def test_blocks_vanish_beyond_the_cutoffs_per_relation(rng):
    cut = {"intra": 3.0, "inter": 4.0}
    model = tiny(SP, cutoffs=cut)
    atoms = rattled_bilayer(rng, size=(2, 2))
    h = model.predict_hamiltonian(atoms)
    layers = atoms.arrays["layer"]
    off = ~((h.pairs[:, 0] == h.pairs[:, 1]) & ~np.any(h.shifts, axis=1))
    vec = h.positions[h.pairs[:, 1]] + h.shifts @ h.cell - h.positions[h.pairs[:, 0]]
    dist = np.linalg.norm(vec, axis=1)
    inter = layers[h.pairs[:, 0]] != layers[h.pairs[:, 1]]
    assert dist[off & inter].max() < cut["inter"] and dist[off & ~inter].max() < cut["intra"]
    assert np.any(off & inter & (dist > cut["intra"]))  # the inter relation really reaches further

    def inter_blocks(d):
        a = bilayer_graphene("AA", size=(1, 1), interlayer=d, vacuum=15.0)
        hh = model.predict_hamiltonian(a)
        lay = a.arrays["layer"]
        m = lay[hh.pairs[:, 0]] != lay[hh.pairs[:, 1]]
        return hh, m

    hh, m = inter_blocks(cut["inter"] - 1e-3)  # only the vertical pairs, just inside the cutoff
    assert m.sum() > 0 and np.abs(hh.blocks[m]).max() < 1e-6  # smooth envelope: → 0 at the cutoff
    hh, m = inter_blocks(cut["inter"] - 0.6)
    assert np.abs(hh.blocks[m]).max() > 1e-3
    far, m_far = inter_blocks(cut["inter"] + 1e-3)
    assert m_far.sum() == 0
    # beyond the inter cutoff the layers do not see each other: same blocks as at 10 Å
    ref, _ = inter_blocks(10.0)
    assert np.array_equal(far.pairs, ref.pairs)
    assert np.abs(far.blocks - ref.blocks).max() <= 1e-12


def test_message_cutoffs_smaller_than_block_cutoffs(rng):
    model = tiny(SP, cutoffs={"intra": 4.0, "inter": 5.0}, message_cutoffs={"intra": 2.0, "inter": 3.6})
    atoms = rattled_bilayer(rng)
    h = model.predict_hamiltonian(atoms)
    assert h.hermiticity_error() == 0.0
    q = -o3.rand_matrix(dtype=torch.float64).numpy()
    h2 = model.predict_hamiltonian(transformed(atoms, q))
    d = shell_irreps([0, 1]).D_from_matrix(torch.as_tensor(q)).numpy()
    assert np.abs(h2.blocks - d @ h.blocks @ d.T).max() <= 1e-10
    with pytest.raises(ValueError, match="message cutoff"):
        normalize_electron_config({"cutoffs": 3.0, "message_cutoffs": {"intra": 3.5, "inter": 2.0}})


def test_edge_chunks_give_the_same_blocks(rng):
    model = tiny(SP)
    atoms = rattled_bilayer(rng)
    full = model.predict_hamiltonian(atoms, edge_chunk=None)
    chunked = model.predict_hamiltonian(atoms, edge_chunk=7)
    assert np.abs(full.blocks - chunked.blocks).max() <= 1e-12


# ---------------------------------------------------------------------------------- files, dtype
def test_model_file_round_trip(tmp_path, rng):
    model = tiny(SP, seed=5)
    atoms = rattled_bilayer(rng)
    path = save_electron_model(model, tmp_path / "m.pt", metadata={"note": "test"})
    payload = torch.load(path, weights_only=True)
    meta = payload["metadata"]
    assert meta["cutoffs"] == model.cutoffs and meta["species"] == ["C"] and meta["basis"] == {"C": [0, 1]}
    assert meta["units"]["energy"] == "eV" and "mlepi_ase_version" in meta and meta["note"] == "test"
    loaded = load_electron_model(path)
    assert loaded.dtype == torch.float64
    a = model.predict_hamiltonian(atoms).blocks
    b = loaded.predict_hamiltonian(atoms).blocks
    assert np.array_equal(a, b)
    f32 = load_electron_model(path, dtype="float32")
    assert f32.dtype == torch.float32 and torch.get_default_dtype() == torch.float32
    assert np.abs(f32.predict_hamiltonian(atoms).blocks - a).max() < 1e-4
    (tmp_path / "bad.pt").write_bytes(b"not a model")
    with pytest.raises(ElectronModelFileError):
        load_electron_model(tmp_path / "bad.pt")
    torch.save({"format": "something else"}, tmp_path / "other.pt")
    with pytest.raises(ElectronModelFileError, match="not a HedgeNet-Electron"):
        load_electron_model(tmp_path / "other.pt")


def test_files_from_before_a_config_key_existed(tmp_path, rng):
    """A file without ``radial_basis`` was built with Bessel functions and loads as such; other gaps are refused."""
    model = tiny(SP, seed=3, radial_basis="bessel")
    atoms = rattled_bilayer(rng)
    payload = torch.load(save_electron_model(model, tmp_path / "m.pt"), weights_only=True)
    del payload["config"]["radial_basis"]
    torch.save(payload, tmp_path / "old.pt")
    old = load_electron_model(tmp_path / "old.pt")
    assert old.config["radial_basis"] == "bessel"
    assert np.array_equal(old.predict_hamiltonian(atoms).blocks, model.predict_hamiltonian(atoms).blocks)
    del payload["config"]["num_radial"]
    torch.save(payload, tmp_path / "older.pt")
    with pytest.raises(ElectronModelFileError, match="num_radial"):
        load_electron_model(tmp_path / "older.pt")


def test_float32_model_keeps_global_dtype(rng):
    before = torch.get_default_dtype()
    model = tiny(SP, dtype=torch.float32)
    h = model.predict_hamiltonian(rattled_bilayer(rng))
    assert torch.get_default_dtype() == before
    assert h.blocks.dtype == np.float64 and h.hermiticity_error() == 0.0


def test_bad_input_is_named():
    model = tiny(SP)
    atoms = bilayer_graphene("AB")
    atoms.numbers[0] = 7
    with pytest.raises(ValueError, match="element N"):
        model.predict_hamiltonian(atoms)
    with pytest.raises(ValueError, match="pz"):
        normalize_electron_config({"basis": {"C": ["pz"]}})
    with pytest.raises(KeyError, match="unknown"):
        normalize_electron_config({"not_a_key": 1})
    with pytest.raises(ValueError, match="cutoff"):
        normalize_electron_config({"cutoffs": {"intra": -1.0, "inter": 3.0}})
