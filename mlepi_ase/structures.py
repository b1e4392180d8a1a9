"""Builders for layered carbon structures and layer assignment.

Geometry
--------
Graphene's primitive lattice vectors are ``a1 = a (1, 0, 0)`` and ``a2 = a (1/2, √3/2, 0)``
(``a = 2.46 Å``), with the two carbon sites of a layer at ``0`` and ``(a1 + a2)/3``.

* **AB (Bernal) bilayer**: the top layer is the bottom layer shifted by ``(a1 + a2)/3``, so one
  top-layer site (the *dimer* site) sits directly above a bottom-layer site.
* **AA bilayer**: the top layer sits directly above the bottom one.
* **Commensurate twisted bilayer** (Lopes dos Santos, Peres & Castro Neto, PRL 99, 256802 (2007);
  Shallcross et al., PRB 81, 165105 (2010)): for an integer ``i`` the superlattice vectors
  ``t1 = i a1 + (i+1) a2`` and ``t2 = -(i+1) a1 + (2i+1) a2`` (both of length
  ``a √(3i² + 3i + 1)``, 60° apart) are lattice vectors of the bottom layer and of the top layer
  rotated by θ about a common atom, with ``cos θ = (3i² + 3i + 1/2) / (3i² + 3i + 1)`` — θ is the
  angle between the lattice vectors ``(i+1) a1 + i a2`` and ``i a1 + (i+1) a2``.  Each layer holds
  ``2 (3i² + 3i + 1)`` atoms, ``N = 4 (3i² + 3i + 1)`` in all (i = 30: 11,164 atoms, θ ≈ 1.085°).
  The rotation is about an atom shared by both layers, so the stacking at the cell origin is AA.

Every builder returns an :class:`ase.Atoms` that is periodic in all three directions (the vacuum
separates periodic images along z) with ``atoms.arrays["layer"]`` (int, 0 = bottom) set.

Layers
------
:func:`assign_layers` recovers the layer index of structures that come without the array, either by
clustering z coordinates (flat layers separated by a gap) or by the connected components of the
intra-layer bond graph (corrugated layers); :func:`get_layers` returns the stored array or detects it.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from ase import Atoms

__all__ = [
    "GRAPHENE_A",
    "GRAPHENE_INTERLAYER",
    "graphene_lattice",
    "monolayer_graphene",
    "bilayer_graphene",
    "twisted_bilayer_graphene",
    "twist_angle",
    "assign_layers",
    "layers_by_z_clustering",
    "layers_by_bond_graph",
    "get_layers",
    "interlayer_distance",
    "LAYER_CHANGE",
    "layer_changes",
    "LayerDetectionError",
    "check_positions",
]

GRAPHENE_A = 2.46
"""Graphene lattice constant (Å)."""
GRAPHENE_INTERLAYER = 3.35
"""Default interlayer distance of bilayer graphene (Å)."""


class LayerDetectionError(ValueError):
    """Raised when the layers of a structure cannot be identified."""


def graphene_lattice(a: float = GRAPHENE_A) -> np.ndarray:
    """In-plane primitive vectors of graphene.

    Returns
    -------
    numpy.ndarray, shape (2, 3), float64, Å
        ``a1 = a (1, 0, 0)`` and ``a2 = a (1/2, √3/2, 0)``.
    """
    return a * np.array([[1.0, 0.0, 0.0], [0.5, np.sqrt(3.0) / 2.0, 0.0]])


def _validate_positive(name: str, value: float) -> None:
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")


def _layer_sites(a: float, shift: float) -> np.ndarray:
    """Two sites of a graphene layer, fractional shift along (a1 + a2) in units of 1/3; (2, 2) Å."""
    a1, a2 = graphene_lattice(a)[:, :2]
    d = (a1 + a2) / 3.0
    return np.array([shift * d, (shift + 1.0) * d])


def bilayer_graphene(
    stacking: Literal["AB", "AA"] = "AB",
    size: tuple[int, int] = (1, 1),
    a: float = GRAPHENE_A,
    interlayer: float = GRAPHENE_INTERLAYER,
    vacuum: float = 20.0,
) -> Atoms:
    """AB (Bernal) or AA bilayer graphene supercell.

    Parameters
    ----------
    stacking
        ``"AB"`` (top layer shifted by (a1 + a2)/3) or ``"AA"``.
    size
        In-plane repetition ``(n, m)`` of the 4-atom primitive cell.
    a
        Lattice constant (Å).
    interlayer
        Distance between the two layers (Å).
    vacuum
        Vacuum between periodic images along z (Å); the cell height is ``interlayer + vacuum``.

    Returns
    -------
    ase.Atoms
        ``4 n m`` carbon atoms, pbc in all directions, ``arrays["layer"]`` (0 bottom, 1 top),
        ``info["stacking"]``.
    """
    if stacking not in ("AB", "AA"):
        raise ValueError(f"stacking must be 'AB' or 'AA', got {stacking!r}")
    for name, value in (("a", a), ("interlayer", interlayer), ("vacuum", vacuum)):
        _validate_positive(name, value)
    n, m = _validate_size(size)
    bottom = _layer_sites(a, 0.0)
    top = _layer_sites(a, 1.0 if stacking == "AB" else 0.0)
    height = interlayer + vacuum
    z0 = 0.5 * vacuum
    positions = np.zeros((4, 3))
    positions[:2, :2] = bottom
    positions[2:, :2] = top
    positions[:2, 2] = z0
    positions[2:, 2] = z0 + interlayer
    cell = np.zeros((3, 3))
    cell[:2] = graphene_lattice(a)
    cell[2, 2] = height
    atoms = Atoms("C4", positions=positions, cell=cell, pbc=True)
    atoms.set_array("layer", np.array([0, 0, 1, 1]))
    atoms.info["stacking"] = stacking
    atoms.wrap()
    if (n, m) != (1, 1):
        atoms = atoms.repeat((n, m, 1))
    return atoms


def monolayer_graphene(
    size: tuple[int, int] = (1, 1), a: float = GRAPHENE_A, vacuum: float = 20.0
) -> Atoms:
    """Monolayer graphene supercell (2 n m atoms, pbc, ``arrays["layer"]`` all zero).

    Parameters
    ----------
    size
        In-plane repetition ``(n, m)`` of the 2-atom primitive cell.
    a
        Lattice constant (Å).
    vacuum
        Cell height along z (Å).
    """
    _validate_positive("a", a)
    _validate_positive("vacuum", vacuum)
    n, m = _validate_size(size)
    positions = np.zeros((2, 3))
    positions[:, :2] = _layer_sites(a, 0.0)
    positions[:, 2] = 0.5 * vacuum
    cell = np.zeros((3, 3))
    cell[:2] = graphene_lattice(a)
    cell[2, 2] = vacuum
    atoms = Atoms("C2", positions=positions, cell=cell, pbc=True)
    atoms.set_array("layer", np.zeros(2, dtype=int))
    if (n, m) != (1, 1):
        atoms = atoms.repeat((n, m, 1))
    return atoms


def _validate_size(size: tuple[int, int]) -> tuple[int, int]:
    try:
        n, m = (int(s) for s in size)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"size must be a pair of positive integers, got {size!r}") from exc
    if n < 1 or m < 1 or (n, m) != tuple(size):
        raise ValueError(f"size must be a pair of positive integers, got {size!r}")
    return n, m


def twist_angle(i: int) -> float:
    """Twist angle (degrees) of the commensurate twisted bilayer with index ``i`` (≥ 1).

    ``cos θ = (3i² + 3i + 1/2) / (3i² + 3i + 1)``.
    """
    if int(i) != i or i < 1:
        raise ValueError(f"the twist index i must be a positive integer, got {i!r}")
    q = 3 * i * i + 3 * i + 1
    return float(np.degrees(np.arccos((q - 0.5) / q)))


def twisted_bilayer_graphene(
    i: int,
    a: float = GRAPHENE_A,
    interlayer: float = GRAPHENE_INTERLAYER,
    vacuum: float = 20.0,
) -> Atoms:
    """Commensurate twisted bilayer graphene with index ``i`` (see the module docstring).

    Parameters
    ----------
    i
        Positive integer; θ(1) = 21.8°, θ(30) ≈ 1.085°.
    a
        Lattice constant (Å).
    interlayer
        Distance between the flat layers (Å).
    vacuum
        Vacuum between periodic images along z (Å).

    Returns
    -------
    ase.Atoms
        ``4 (3i² + 3i + 1)`` carbon atoms; cell rows ``t1``, ``t2`` and ``(0, 0, interlayer +
        vacuum)``; ``arrays["layer"]`` (0 bottom, 1 top, rotated by +θ about z);
        ``info["twist_angle"]`` (degrees) and ``info["twist_index"]``.
    """
    theta_deg = twist_angle(i)
    for name, value in (("a", a), ("interlayer", interlayer), ("vacuum", vacuum)):
        _validate_positive(name, value)
    lat = graphene_lattice(a)[:, :2]
    t1 = i * lat[0] + (i + 1) * lat[1]
    t2 = -(i + 1) * lat[0] + (2 * i + 1) * lat[1]
    super2d = np.array([t1, t2])
    q = 3 * i * i + 3 * i + 1
    theta = np.radians(theta_deg)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])

    # Lattice points m a1 + n a2 covering the supercell: integer coordinates of t1, t2 are
    # (i, i+1) and (-(i+1), 2i+1), so |m|, |n| ≤ 3i + 2 suffices.
    span = np.arange(-(3 * i + 3), 3 * i + 4)
    mm, nn = np.meshgrid(span, span, indexing="ij")
    points = mm.reshape(-1, 1) * lat[0] + nn.reshape(-1, 1) * lat[1]
    basis = _layer_sites(a, 0.0)
    inv = np.linalg.inv(super2d)
    layers_xy = []
    for layer_rot in (np.eye(2), rot):
        sites = (points[:, None, :] + basis[None, :, :]).reshape(-1, 2) @ layer_rot.T
        frac = sites @ inv
        # keep sites with fractional coordinates in [0, 1) (tolerance for rounding)
        frac = np.where(np.abs(frac - np.round(frac)) < 1e-8, np.round(frac), frac)
        keep = np.all((frac >= 0.0) & (frac < 1.0), axis=1)
        layers_xy.append(frac[keep] @ super2d)
    counts = [len(x) for x in layers_xy]
    if counts != [2 * q, 2 * q]:  # pragma: no cover - geometric invariant
        raise RuntimeError(f"twisted bilayer construction found {counts} atoms per layer, expected {2 * q}")
    n_layer = 2 * q
    positions = np.zeros((2 * n_layer, 3))
    positions[:n_layer, :2] = layers_xy[0]
    positions[n_layer:, :2] = layers_xy[1]
    positions[:n_layer, 2] = 0.5 * vacuum
    positions[n_layer:, 2] = 0.5 * vacuum + interlayer
    cell = np.zeros((3, 3))
    cell[:2, :2] = super2d
    cell[2, 2] = interlayer + vacuum
    atoms = Atoms(f"C{2 * n_layer}", positions=positions, cell=cell, pbc=True)
    atoms.set_array("layer", np.repeat([0, 1], n_layer))
    atoms.info["twist_angle"] = theta_deg
    atoms.info["twist_index"] = int(i)
    return atoms


def check_positions(atoms: Atoms) -> None:
    """Raise ``ValueError`` if positions or cell contain NaN/inf or the cell is singular with pbc."""
    pos = atoms.get_positions()
    if not np.all(np.isfinite(pos)):
        bad = np.unique(np.nonzero(~np.isfinite(pos))[0])
        raise ValueError(f"positions contain NaN or inf (atoms {bad[:10].tolist()})")
    cell = np.asarray(atoms.cell)
    if not np.all(np.isfinite(cell)):
        raise ValueError("cell contains NaN or inf")
    if np.any(atoms.pbc) and abs(np.linalg.det(cell)) < 1e-9:
        raise ValueError("periodic structure has a singular (zero-volume) cell")


def layers_by_z_clustering(
    atoms: Atoms, min_gap: float = 2.0, max_thickness: float = 1.5
) -> np.ndarray:
    """Layer index by clustering z coordinates of flat layers.

    Atoms are sorted by z; a gap of at least ``min_gap`` Å between consecutive z values starts a new
    layer.  Layers are numbered from the bottom (0).

    Parameters
    ----------
    atoms
        Structure; z is taken as the Cartesian z coordinate.
    min_gap
        Smallest vertical gap (Å) that separates two layers.
    max_thickness
        Largest z spread (Å) accepted within one layer.

    Returns
    -------
    numpy.ndarray, shape (N,), int64

    Raises
    ------
    LayerDetectionError
        If a cluster is thicker than ``max_thickness`` (not flat layers).
    """
    z = atoms.get_positions()[:, 2]
    if len(z) == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(z, kind="stable")
    zs = z[order]
    new_layer = np.concatenate([[0], (np.diff(zs) >= min_gap).astype(np.int64)])
    sorted_labels = np.cumsum(new_layer)
    labels = np.empty_like(sorted_labels)
    labels[order] = sorted_labels
    for lay in range(labels.max() + 1):
        zl = z[labels == lay]
        if zl.max() - zl.min() > max_thickness:
            raise LayerDetectionError(
                f"z clustering: layer {lay} spans {zl.max() - zl.min():.2f} Å in z "
                f"(> max_thickness={max_thickness} Å); the structure is not made of flat layers"
            )
    return labels


def layers_by_bond_graph(atoms: Atoms, bond_cutoff: float = 1.9, max_thickness: float = 4.0) -> np.ndarray:
    """Layer index from connected components of the bond graph (bonds shorter than ``bond_cutoff``).

    Components are numbered by increasing mean z.  Works for corrugated layers whose z ranges overlap.

    Raises
    ------
    LayerDetectionError
        If a component spans more than ``max_thickness`` Å in z, i.e. it is a 3D network rather than a
        layer (diamond, amorphous carbon), or a layer is bonded to its own periodic image along z.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    from .graph import neighbor_pairs

    n = len(atoms)
    i, j, shifts, _ = neighbor_pairs(atoms, bond_cutoff)
    if np.any(shifts[:, 2] != 0):
        raise LayerDetectionError(
            "bond graph: atoms are bonded across the periodic boundary along z, so the structure is "
            "not a stack of separate layers"
        )
    graph = coo_matrix((np.ones(len(i)), (i, j)), shape=(n, n))
    n_comp, comp = connected_components(graph, directed=False)
    z = atoms.get_positions()[:, 2]
    mean_z = np.array([z[comp == c].mean() for c in range(n_comp)])
    for c in range(n_comp):
        zc = z[comp == c]
        if zc.max() - zc.min() > max_thickness:
            raise LayerDetectionError(
                f"bond graph: component {c} spans {zc.max() - zc.min():.2f} Å in z "
                f"(> {max_thickness} Å); it is not a layer"
            )
    rank = np.empty(n_comp, dtype=np.int64)
    rank[np.argsort(mean_z, kind="stable")] = np.arange(n_comp)
    return rank[comp]


def assign_layers(
    atoms: Atoms,
    method: Literal["auto", "z", "bonds"] = "auto",
    min_gap: float = 2.0,
    max_thickness: float = 1.5,
    bond_cutoff: float = 1.9,
) -> np.ndarray:
    """Detect layers and store them in ``atoms.arrays["layer"]``.

    Parameters
    ----------
    atoms
        Structure (modified in place: the ``layer`` array is set).
    method
        ``"z"`` (flat layers, :func:`layers_by_z_clustering`), ``"bonds"`` (connected components,
        :func:`layers_by_bond_graph`) or ``"auto"`` (z clustering, then the bond graph).
    min_gap, max_thickness
        Parameters of the z clustering (Å).
    bond_cutoff
        Bond length cutoff (Å) of the bond-graph method.

    Returns
    -------
    numpy.ndarray, shape (N,), int64
        The layer index of every atom (0 = lowest layer).

    Raises
    ------
    LayerDetectionError
        If neither method identifies layers.
    """
    check_positions(atoms)
    if method not in ("auto", "z", "bonds"):
        raise ValueError(f"method must be 'auto', 'z' or 'bonds', got {method!r}")
    errors = []
    labels = None
    if method in ("auto", "z"):
        try:
            labels = layers_by_z_clustering(atoms, min_gap=min_gap, max_thickness=max_thickness)
        except LayerDetectionError as exc:
            errors.append(str(exc))
    if labels is None and method in ("auto", "bonds"):
        try:
            labels = layers_by_bond_graph(atoms, bond_cutoff=bond_cutoff)
        except LayerDetectionError as exc:
            errors.append(str(exc))
    if labels is None:
        raise LayerDetectionError("could not identify layers: " + "; ".join(errors))
    atoms.set_array("layer", labels.astype(np.int64))
    return labels


def get_layers(atoms: Atoms, detect: bool = True) -> np.ndarray:
    """The layer index of every atom: ``atoms.arrays["layer"]``, or detected when absent.

    Parameters
    ----------
    atoms
        Structure.
    detect
        If True and the array is missing, call :func:`assign_layers` (which stores it); if False,
        raise :class:`LayerDetectionError`.

    Returns
    -------
    numpy.ndarray, shape (N,), int64
    """
    if "layer" in atoms.arrays:
        layers = np.asarray(atoms.arrays["layer"])
        if layers.shape != (len(atoms),):
            raise LayerDetectionError(
                f"atoms.arrays['layer'] has shape {layers.shape}, expected ({len(atoms)},)"
            )
        return layers.astype(np.int64)
    if not detect:
        raise LayerDetectionError(
            "structure has no layer information: set atoms.arrays['layer'] or call assign_layers(atoms)"
        )
    return assign_layers(atoms)


LAYER_CHANGE = "layers"
"""Name of the change :func:`layer_changes` reports, next to ASE's ``system_changes`` names."""


def layer_changes(old: Atoms | None, new: Atoms) -> list[str]:
    """``[LAYER_CHANGE]`` if ``atoms.arrays["layer"]`` differs between ``old`` and ``new`` (added, removed or
    other values), else ``[]``; for calculators whose results depend on the layer labels (ASE's
    ``check_state`` does not compare custom arrays).  ``old`` None (nothing calculated yet) gives ``[]``."""
    if old is None:
        return []
    a, b = old.arrays.get("layer"), new.arrays.get("layer")
    if (a is None) != (b is None) or (a is not None and (a.shape != b.shape or not np.array_equal(a, b))):
        return [LAYER_CHANGE]
    return []


def interlayer_distance(atoms: Atoms, lower: int = 0, upper: int = 1) -> float:
    """Mean z of layer ``upper`` minus mean z of layer ``lower`` (Å); layers from :func:`get_layers`."""
    layers = get_layers(atoms)
    z = atoms.positions[:, 2]
    for k in (lower, upper):
        if not np.any(layers == k):
            raise LayerDetectionError(f"structure has no atoms in layer {k}")
    return float(z[layers == upper].mean() - z[layers == lower].mean())
