"""Heterogeneous neighbour graph against ASE's reference neighbour list."""

import numpy as np
import pytest
from ase.neighborlist import primitive_neighbor_list

from mlepi_ase.graph import build_graph
from mlepi_ase.structures import bilayer_graphene, monolayer_graphene, twisted_bilayer_graphene


def _reference_edges(atoms, cutoffs):
    rmax = max(cutoffs.values())
    i, j, S = primitive_neighbor_list("ijS", atoms.pbc, atoms.cell, atoms.positions, rmax)
    vec = atoms.positions[j] + S @ atoms.cell - atoms.positions[i]
    d = np.linalg.norm(vec, axis=1)
    layer = atoms.arrays["layer"]
    rel = (layer[i] != layer[j]).astype(int)
    keep = d < np.where(rel == 0, cutoffs["intra"], cutoffs["inter"])
    return {(a, b, *s) for a, b, s in zip(i[keep], j[keep], S[keep])}, rel[keep]


@pytest.mark.parametrize("cutoffs", [{"intra": 6.0, "inter": 5.0}, {"intra": 3.0, "inter": 7.5}])
def test_matches_ase_on_small_cell(cutoffs):
    """The 4-atom cell (a = 2.46 Å) is much smaller than the cutoffs: many images of each atom."""
    atoms = bilayer_graphene("AB")
    atoms.rattle(0.03, seed=3)
    g = build_graph(atoms, cutoffs)
    ref, rel = _reference_edges(atoms, cutoffs)
    got = {(a, b, *s) for a, b, s in zip(g.edge_index[0], g.edge_index[1], g.shifts)}
    assert got == ref
    assert g.counts == {"intra": int((rel == 0).sum()), "inter": int((rel == 1).sum())}
    src, dst = g.edge_index
    assert np.allclose(g.vectors, atoms.positions[dst] + g.shifts @ atoms.cell - atoms.positions[src])
    assert np.all(g.distances[g.relation == 0] < cutoffs["intra"])
    assert np.all(g.distances[g.relation == 1] < cutoffs["inter"])
    # full list: the reverse of every edge is present, with the opposite vector
    rev = g.reverse_edges()
    assert np.allclose(g.vectors[rev], -g.vectors)
    assert np.array_equal(g.edge_index[:, rev], g.edge_index[::-1])


def test_relations_follow_layers():
    atoms = bilayer_graphene("AB", size=(2, 2))
    g = build_graph(atoms, 4.0)
    layers = atoms.arrays["layer"]
    assert np.array_equal(g.relation, (layers[g.edge_index[0]] != layers[g.edge_index[1]]).astype(int))
    # far-apart layers: no inter edges
    far = bilayer_graphene("AB", size=(2, 2), interlayer=20.0, vacuum=20.0)
    assert build_graph(far, {"intra": 5.0, "inter": 6.0}).counts["inter"] == 0


def test_monolayer_nearest_neighbours():
    g = build_graph(monolayer_graphene(size=(3, 3)), 1.6)
    assert g.counts == {"intra": 18 * 3, "inter": 0}


def test_bad_cutoffs():
    atoms = bilayer_graphene()
    with pytest.raises(KeyError, match="missing"):
        build_graph(atoms, {"intra": 3.0})
    with pytest.raises(ValueError, match="positive"):
        build_graph(atoms, {"intra": 3.0, "inter": -1.0})


def test_twisted_bilayer_graph_at_paper_scale():
    """i = 30 (11,164 atoms) builds with 6 Å cutoffs; edge counts are consistent per relation."""
    atoms = twisted_bilayer_graphene(30)
    g = build_graph(atoms, {"intra": 6.0, "inter": 6.0})
    assert g.n_atoms == 11164
    counts = g.counts
    # intra-layer shells of graphene within 6 Å: 3+6+3+6+6+6+6+3 ... = 39 neighbours per atom
    assert counts["intra"] == 39 * 11164
    assert counts["inter"] > 0 and counts["inter"] % 2 == 0
