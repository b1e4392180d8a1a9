"""Structure builders and layer assignment."""

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.geometry import get_distances

from mlepi_ase.structures import (
    LAYER_CHANGE,
    layer_changes,
    LayerDetectionError,
    assign_layers,
    bilayer_graphene,
    get_layers,
    interlayer_distance,
    monolayer_graphene,
    twist_angle,
    twisted_bilayer_graphene,
)


def _min_distance(atoms):
    d = get_distances(atoms.positions, cell=atoms.cell, pbc=atoms.pbc)[1]
    np.fill_diagonal(d, np.inf)
    return d.min()


@pytest.mark.parametrize("stacking", ["AB", "AA"])
def test_bilayer_geometry(stacking):
    atoms = bilayer_graphene(stacking, size=(2, 3), interlayer=3.4)
    assert len(atoms) == 24
    assert np.all(atoms.pbc)
    assert np.allclose(_min_distance(atoms), 2.46 / np.sqrt(3))
    layers = atoms.arrays["layer"]
    z = atoms.positions[:, 2]
    assert np.allclose(z[layers == 1] - z[layers == 0].mean(), 3.4)
    # count atoms of the top layer sitting exactly above a bottom atom
    top = atoms.positions[layers == 1][:, :2]
    bottom = atoms.positions[layers == 0][:, :2]
    cell2 = atoms.cell[:2, :2]
    dxy = top[:, None, :] - bottom[None, :, :]
    frac = dxy @ np.linalg.inv(cell2)
    frac -= np.round(frac)
    stacked = np.linalg.norm(frac @ cell2, axis=2) < 1e-8
    expected = 1.0 if stacking == "AA" else 0.5  # AB: half of the top atoms are dimer sites
    assert stacked.any(axis=1).mean() == expected


@pytest.mark.parametrize("i,n_atoms,angle", [(1, 28, 21.7868), (2, 76, 13.1736), (30, 11164, 1.0845)])
def test_twisted_bilayer(i, n_atoms, angle):
    atoms = twisted_bilayer_graphene(i)
    assert len(atoms) == n_atoms == 4 * (3 * i * i + 3 * i + 1)
    assert atoms.info["twist_angle"] == pytest.approx(angle, abs=1e-4)
    assert np.bincount(atoms.arrays["layer"]).tolist() == [n_atoms // 2] * 2
    if i <= 2:
        assert _min_distance(atoms) == pytest.approx(1.42028, abs=1e-4)
        # each layer is a perfect honeycomb: every atom has exactly 3 in-layer neighbours at a/√3
        d = get_distances(atoms.positions, cell=atoms.cell, pbc=atoms.pbc)[1]
        same = atoms.arrays["layer"][:, None] == atoms.arrays["layer"][None, :]
        nn = ((np.abs(d - 2.46 / np.sqrt(3)) < 1e-6) & same).sum(axis=1)
        assert np.all(nn == 3)


def test_twist_angle_formula():
    for i in (1, 5, 30):
        q = 3 * i * i + 3 * i + 1
        assert np.cos(np.radians(twist_angle(i))) == pytest.approx((q - 0.5) / q, rel=1e-14)
    with pytest.raises(ValueError, match="positive integer"):
        twist_angle(0)


def test_assign_layers_z_and_bonds(rng):
    atoms = bilayer_graphene("AB", size=(3, 3))
    ref = atoms.arrays["layer"].copy()
    del atoms.arrays["layer"]
    atoms.rattle(0.05, seed=1)
    assert np.array_equal(assign_layers(atoms, method="z"), ref)
    assert np.array_equal(atoms.arrays["layer"], ref)
    assert np.array_equal(assign_layers(atoms.copy(), method="bonds"), ref)
    # permuted atoms keep their labels
    perm = rng.permutation(len(atoms))
    assert np.array_equal(assign_layers(atoms[perm]), ref[perm])


def test_assign_layers_corrugated_uses_bond_graph():
    atoms = monolayer_graphene(size=(6, 1))
    x = atoms.positions[:, 0]
    atoms.positions[:, 2] += 1.2 * np.sin(2 * np.pi * x / atoms.cell[0, 0])  # 2.4 Å tall ripple
    labels = assign_layers(atoms)
    assert np.all(labels == 0)


def test_no_layers_raises_clear_error():
    diamond = bulk("C", "diamond", a=3.567).repeat((2, 2, 2))
    with pytest.raises(LayerDetectionError, match="layer"):
        assign_layers(diamond)
    atoms = bilayer_graphene()
    del atoms.arrays["layer"]
    with pytest.raises(LayerDetectionError, match="no layer information"):
        get_layers(atoms, detect=False)


def test_bad_input():
    with pytest.raises(ValueError, match="stacking"):
        bilayer_graphene("ABC")
    with pytest.raises(ValueError, match="size"):
        bilayer_graphene(size=(0, 2))
    with pytest.raises(ValueError, match="interlayer"):
        bilayer_graphene(interlayer=-1.0)
    atoms = Atoms("C2", positions=[[0, 0, 0], [np.nan, 0, 0]], cell=[5, 5, 5], pbc=True)
    with pytest.raises(ValueError, match="NaN"):
        assign_layers(atoms)


def test_interlayer_distance():
    atoms = bilayer_graphene("AB", size=(2, 2), interlayer=3.41)
    assert interlayer_distance(atoms) == pytest.approx(3.41, abs=1e-12)
    assert interlayer_distance(atoms, lower=1, upper=0) == pytest.approx(-3.41, abs=1e-12)
    with pytest.raises(LayerDetectionError, match="layer 1"):
        interlayer_distance(monolayer_graphene())


def test_layer_changes_reports_added_removed_and_relabelled_layers():
    """What the calculators add to ASE's check_state: a change of the layer labels alone."""
    old = bilayer_graphene("AB")
    assert layer_changes(None, old) == []
    same = old.copy()
    assert layer_changes(old, same) == []
    relabelled = old.copy()
    relabelled.arrays["layer"][:] = 0
    assert layer_changes(old, relabelled) == [LAYER_CHANGE]
    bare = old.copy()
    del bare.arrays["layer"]
    assert layer_changes(old, bare) == [LAYER_CHANGE]
    assert layer_changes(bare, old) == [LAYER_CHANGE]
    assert layer_changes(bare, bare.copy()) == []
