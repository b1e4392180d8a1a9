r"""HedgeNet-Phonon: a MACE force field with one edge network per relation of a heterogeneous graph.

Physics and architecture
------------------------
The potential energy of a structure is a sum of atomic energies,

.. math::

    E = \sum_i \Big[ E^{0}_{Z_i} + s \sum_{t=1}^{T} y_i^{(t)} + \mu \Big],

where :math:`E^0_Z` are fixed isolated-atom (reference) energies, :math:`y_i^{(t)}` the scalar
readout of interaction layer :math:`t` and :math:`s, \mu` a fixed scale and shift (MACE's
``ScaleShiftBlock``).  Each interaction layer is a MACE layer (Batatia et al., NeurIPS 2022): the
atomic basis of atom *i* is

.. math::

    A_i^{(t)} = \frac{1}{\bar n} \sum_{r \in \{\mathrm{intra},\,\mathrm{inter}\}}
                \sum_{j \in \mathcal N_r(i)}
                R^{(t)}_r\big(|\mathbf r_{ij}|\big) \otimes Y(\hat{\mathbf r}_{ij}) \otimes W h_j^{(t)},

with :math:`\mathbf r_{ij} = \mathbf r_j + S\cdot\text{cell} - \mathbf r_i`, real spherical harmonics
:math:`Y` up to ``max_ell``, and — the heterogeneous part — a *separate* radial embedding (Bessel
basis times the polynomial cutoff envelope of MACE, with the cutoff of relation *r*) and a separate
radial MLP :math:`R_r^{(t)}` producing the tensor-product weights for each relation.  Intra-layer
pairs (covalent bonds, REBO-like) and inter-layer pairs (van der Waals, Kolmogorov–Crespi-like) thus
get their own edge networks and their own cutoffs, and an atom's node embedding sums the messages of
both relations.  :math:`A_i` then enters MACE's symmetric-contraction product basis (body order
``correlation + 1``) and a residual update.  With ``heterogeneous=False`` the same code is a plain
homogeneous MACE of the same width: one radial embedding, one radial MLP and one cutoff for all pairs.

Forces and stress
-----------------
:math:`\mathbf F_i = -\partial E / \partial \mathbf r_i` by automatic differentiation.  For periodic
cells the stress follows from a homogeneous symmetric strain :math:`\varepsilon` applied to positions
*and* cell, :math:`\mathbf r \to (1+\varepsilon)\mathbf r`, :math:`\text{cell} \to
\text{cell}\,(1+\varepsilon)`:

.. math::

    \sigma_{\alpha\beta} = \frac{1}{V} \frac{\partial E}{\partial \varepsilon_{\alpha\beta}}\Big|_{\varepsilon=0},

which is ASE's sign convention (positive = tensile); the virial is :math:`-V\sigma`.

Precision
---------
dtype and device are per model (``float32`` or ``float64``); the global torch default dtype is never
changed.  mace-torch and e3nn build their constant tensors (Clebsch–Gordan / Wigner-3j coefficients,
the symmetric-contraction U matrices, Bessel frequencies) in the default dtype, i.e. float32; after a
dtype change this module recomputes them directly in the model dtype, so a float64 model is exactly
rotation invariant to float64 round-off rather than to float32 accuracy.

Model files
-----------
A model file is ``torch.save`` of a plain dict ``{"format", "format_version", "config",
"state_dict", "metadata"}`` (config and metadata contain only str/int/float/bool/list/dict), loaded
with ``torch.load(weights_only=True)``: a file that would need to unpickle arbitrary objects is refused.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from ase import Atoms
from ase.data import chemical_symbols

import mlepi_ase._e3nn  # noqa: F401  (imports mace before e3nn; see that module)
from e3nn import nn as e3nn_nn  # noqa: E402
from mace.modules.blocks import (  # noqa: E402
    AtomicEnergiesBlock,
    EquivariantProductBasisBlock,
    LinearNodeEmbeddingBlock,
    LinearReadoutBlock,
    NonLinearReadoutBlock,
    RadialEmbeddingBlock,
    ScaleShiftBlock,
)
from mace.modules.irreps_tools import reshape_irreps, tp_out_irreps_with_instructions  # noqa: E402
from mace.modules.symmetric_contraction import SymmetricContraction  # noqa: E402
from mace.modules.wrapper_ops import FullyConnectedTensorProduct, Linear, TensorProduct  # noqa: E402
from mace.tools.cg import U_matrix_real  # noqa: E402

from .._files import atomic_torch_save
from .. import __version__
from .._e3nn import o3
from ..graph import RELATIONS, build_graph, neighbor_pairs
from ._base import ConstantsModule, ModelFileError, as_dtype, read_model_payload
from .edge_tensor_product import FusedEdgeTensorProduct, fusable

__all__ = [
    "DEFAULT_PHONON_CONFIG",
    "MODEL_FORMAT",
    "HedgeNetPhonon",
    "PhononGraph",
    "GraphBatch",
    "atoms_to_graph",
    "graph_settings",
    "collate_graphs",
    "normalize_phonon_config",
    "save_phonon_model",
    "load_phonon_model",
    "read_phonon_model_file",
    "ModelFileError",
]

MODEL_FORMAT = "mlepi_ase.hedgenet_phonon"
"""Value of the ``format`` key of a HedgeNet-Phonon model file."""
MODEL_FORMAT_VERSION = 1

UNITS = {"energy": "eV", "length": "Angstrom", "forces": "eV/Angstrom", "stress": "eV/Angstrom^3"}

DEFAULT_PHONON_CONFIG: dict[str, Any] = {
    "species": [6],
    "heterogeneous": True,
    "cutoffs": {"intra": 4.0, "inter": 6.0},
    "cutoff": None,  # homogeneous model only; None = max(cutoffs)
    "num_bessel": 8,
    "num_polynomial_cutoff": 5,
    "max_ell": 2,
    "num_channels": 16,
    "max_L": 1,
    "num_interactions": 2,
    "correlation": 3,
    "radial_mlp": [32, 32],
    "readout_mlp": 16,
    "avg_num_neighbors": 1.0,
    "atomic_energies": None,  # list aligned with species (eV); None = zeros
    "scale": 1.0,
    "shift": 0.0,
}
"""Defaults of the model configuration (a plain, JSON-serialisable dict)."""


# --------------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------------


def normalize_phonon_config(config: Mapping[str, Any] | None = None, **overrides: Any) -> dict[str, Any]:
    """Validate a model configuration and fill in defaults.

    Parameters
    ----------
    config
        Partial configuration; unknown keys raise ``KeyError``.
    **overrides
        Keys overriding ``config``.

    Returns
    -------
    dict
        A complete, plain (JSON-serialisable) configuration.
    """
    cfg = copy.deepcopy(DEFAULT_PHONON_CONFIG)
    given = dict(config or {})
    given.update(overrides)
    unknown = set(given) - set(cfg)
    if unknown:
        raise KeyError(f"unknown HedgeNet-Phonon config key(s) {sorted(unknown)}; known: {sorted(cfg)}")
    cfg.update(copy.deepcopy(given))

    species = [int(z) for z in cfg["species"]]
    if not species or len(set(species)) != len(species):
        raise ValueError(f"species must be a non-empty list of distinct atomic numbers, got {cfg['species']!r}")
    for z in species:
        if not 1 <= z < len(chemical_symbols):
            raise ValueError(f"species contains an invalid atomic number {z}")
    cfg["species"] = species
    cfg["heterogeneous"] = bool(cfg["heterogeneous"])
    cuts = dict(cfg["cutoffs"])
    if set(cuts) != set(RELATIONS):
        raise KeyError(f"cutoffs must have exactly the keys {RELATIONS}, got {sorted(cuts)}")
    cfg["cutoffs"] = {name: float(cuts[name]) for name in RELATIONS}
    if cfg["cutoff"] is None:
        cfg["cutoff"] = max(cfg["cutoffs"].values())
    cfg["cutoff"] = float(cfg["cutoff"])
    for name, value in list(cfg["cutoffs"].items()) + [("cutoff", cfg["cutoff"])]:
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"cutoff {name!r} must be a positive length in Å, got {value!r}")
    for key in ("num_bessel", "num_polynomial_cutoff", "max_ell", "num_channels", "num_interactions",
                "correlation", "readout_mlp"):
        cfg[key] = int(cfg[key])
        if cfg[key] < 1:
            raise ValueError(f"config {key!r} must be a positive integer, got {cfg[key]!r}")
    cfg["max_L"] = int(cfg["max_L"])
    if not 0 <= cfg["max_L"] <= cfg["max_ell"]:
        raise ValueError(f"max_L must be in [0, max_ell={cfg['max_ell']}], got {cfg['max_L']}")
    cfg["radial_mlp"] = [int(n) for n in cfg["radial_mlp"]]
    if any(n < 1 for n in cfg["radial_mlp"]):
        raise ValueError(f"radial_mlp widths must be positive, got {cfg['radial_mlp']}")
    cfg["avg_num_neighbors"] = float(cfg["avg_num_neighbors"])
    if not cfg["avg_num_neighbors"] > 0:
        raise ValueError(f"avg_num_neighbors must be positive, got {cfg['avg_num_neighbors']}")
    if cfg["atomic_energies"] is None:
        cfg["atomic_energies"] = [0.0] * len(species)
    cfg["atomic_energies"] = [float(e) for e in cfg["atomic_energies"]]
    if len(cfg["atomic_energies"]) != len(species):
        raise ValueError(
            f"atomic_energies has {len(cfg['atomic_energies'])} entries but species has {len(species)}"
        )
    cfg["scale"] = float(cfg["scale"])
    cfg["shift"] = float(cfg["shift"])
    return cfg


def _network_cutoffs(cfg: Mapping[str, Any]) -> list[float]:
    """Cutoff (Å) of every edge network: [intra, inter] or [cutoff]."""
    if cfg["heterogeneous"]:
        return [cfg["cutoffs"][name] for name in RELATIONS]
    return [cfg["cutoff"]]


# --------------------------------------------------------------------------------------------
# graphs
# --------------------------------------------------------------------------------------------


@dataclass
class PhononGraph:
    """The model input of one structure (numpy, before batching).

    Attributes
    ----------
    positions : numpy.ndarray, shape (N, 3), float64, Å
    cell : numpy.ndarray, shape (3, 3), float64, Å
    pbc : numpy.ndarray, shape (3,), bool
    species : numpy.ndarray, shape (N,), int64
        Index into the model's ``species`` list.
    edge_index : numpy.ndarray, shape (2, E), int64
        Rows (receiver ``i``, sender ``j``); edge vector ``r_j + S·cell − r_i``.
    shifts : numpy.ndarray, shape (E, 3), int64
        Integer lattice translation ``S`` of the sender.
    network : numpy.ndarray, shape (E,), int64
        Edge network of each edge (the relation code for a heterogeneous model, 0 otherwise),
        sorted ascending.
    """

    positions: np.ndarray
    cell: np.ndarray
    pbc: np.ndarray
    species: np.ndarray
    edge_index: np.ndarray
    shifts: np.ndarray
    network: np.ndarray

    @property
    def n_atoms(self) -> int:
        return int(self.positions.shape[0])


def _species_index(atoms: Atoms, species: Sequence[int]) -> np.ndarray:
    table = {z: k for k, z in enumerate(species)}
    numbers = atoms.get_atomic_numbers()
    unknown = sorted(set(numbers.tolist()) - set(table))
    if unknown:
        names = [chemical_symbols[z] for z in unknown]
        known = [chemical_symbols[z] for z in species]
        raise ValueError(f"element(s) {names} not known to this model (species {known})")
    return np.array([table[z] for z in numbers], dtype=np.int64)


GRAPH_CONFIG_KEYS = ("species", "heterogeneous", "cutoffs", "cutoff")


def graph_settings(config: Mapping[str, Any]) -> str:
    """The part of a model configuration that :func:`atoms_to_graph` reads, as a hashable string.

    Models whose settings agree (species, heterogeneous switch, per-relation cutoffs or the single cutoff)
    build identical graphs of the same structure, so an evaluation of several models can build them once.
    """
    return json.dumps({k: config.get(k) for k in GRAPH_CONFIG_KEYS}, sort_keys=True)


def atoms_to_graph(atoms: Atoms, config: Mapping[str, Any]) -> PhononGraph:
    """Neighbour graph of ``atoms`` for a model with configuration ``config``.

    A heterogeneous model uses :func:`mlepi_ase.graph.build_graph` with its per-relation cutoffs (the
    layers come from ``atoms.arrays["layer"]`` or are detected, without modifying ``atoms``); a
    homogeneous one uses all pairs within its single cutoff and needs no layer information.
    """
    cfg = config
    species = _species_index(atoms, cfg["species"])
    if cfg["heterogeneous"]:
        # layer detection stores the array on the structure: never on the caller's atoms
        graph = build_graph(atoms if "layer" in atoms.arrays else atoms.copy(), cfg["cutoffs"])
        edge_index, shifts, network = graph.edge_index, graph.shifts, graph.relation
    else:
        i, j, shifts, _ = neighbor_pairs(atoms, cfg["cutoff"])
        edge_index = np.stack([i, j])
        network = np.zeros(len(i), dtype=np.int64)
    order = np.argsort(network, kind="stable")
    return PhononGraph(
        positions=np.asarray(atoms.get_positions(), dtype=np.float64),
        cell=np.array(atoms.cell, dtype=np.float64),
        pbc=np.asarray(atoms.pbc, dtype=bool).copy(),
        species=species,
        edge_index=np.ascontiguousarray(edge_index[:, order]),
        shifts=np.ascontiguousarray(shifts[order]),
        network=np.ascontiguousarray(network[order]),
    )


@dataclass
class GraphBatch:
    """Several :class:`PhononGraph` concatenated into torch tensors (the model's input).

    Attributes
    ----------
    positions : torch.Tensor, (N, 3)
    cell : torch.Tensor, (B, 3, 3)
    pbc : torch.Tensor, (B, 3), bool
    species : torch.Tensor, (N,), int64
    batch : torch.Tensor, (N,), int64
        Graph index of every atom.
    edge_index : torch.Tensor, (2, E), int64
        Global atom indices; edges sorted by network.
    shifts : torch.Tensor, (E, 3), model dtype
    network_ptr : list[int]
        Edges of network ``k`` are ``network_ptr[k]:network_ptr[k+1]``.
    n_graphs : int
    """

    positions: torch.Tensor
    cell: torch.Tensor
    pbc: torch.Tensor
    species: torch.Tensor
    batch: torch.Tensor
    edge_index: torch.Tensor
    shifts: torch.Tensor
    network_ptr: list[int]
    n_graphs: int

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "GraphBatch":
        """Copy to ``device``; floating tensors to ``dtype``."""
        def f(t: torch.Tensor) -> torch.Tensor:
            return t.to(device=device, dtype=dtype)

        def i(t: torch.Tensor) -> torch.Tensor:
            return t.to(device=device)

        return GraphBatch(f(self.positions), f(self.cell), i(self.pbc), i(self.species), i(self.batch),
                          i(self.edge_index), f(self.shifts), list(self.network_ptr), self.n_graphs)

    @property
    def n_atoms(self) -> int:
        return int(self.positions.shape[0])


def collate_graphs(graphs: Sequence[PhononGraph], n_networks: int,
                   dtype: torch.dtype = torch.float64,
                   device: torch.device | str = "cpu") -> GraphBatch:
    """Concatenate graphs into one :class:`GraphBatch` with edges grouped by network."""
    if not graphs:
        raise ValueError("cannot collate an empty list of graphs")
    offsets = np.cumsum([0] + [g.n_atoms for g in graphs])
    edge_index = np.concatenate([g.edge_index + offsets[k] for k, g in enumerate(graphs)], axis=1)
    shifts = np.concatenate([g.shifts for g in graphs], axis=0)
    network = np.concatenate([g.network for g in graphs])
    if network.size and (network.min() < 0 or network.max() >= n_networks):
        raise ValueError(f"edge network codes must be in [0, {n_networks}), got {np.unique(network)}")
    order = np.argsort(network, kind="stable")
    counts = np.bincount(network, minlength=n_networks)
    ptr = [0] + np.cumsum(counts).tolist()
    as_f = dict(dtype=dtype, device=device)
    return GraphBatch(
        positions=torch.as_tensor(np.concatenate([g.positions for g in graphs]), **as_f),
        cell=torch.as_tensor(np.stack([g.cell for g in graphs]), **as_f),
        pbc=torch.as_tensor(np.stack([g.pbc for g in graphs]), device=device),
        species=torch.as_tensor(np.concatenate([g.species for g in graphs]), device=device),
        batch=torch.as_tensor(np.repeat(np.arange(len(graphs)), [g.n_atoms for g in graphs]), device=device),
        edge_index=torch.as_tensor(np.ascontiguousarray(edge_index[:, order]), device=device),
        shifts=torch.as_tensor(shifts[order], **as_f),
        network_ptr=[int(p) for p in ptr],
        n_graphs=len(graphs),
    )


# --------------------------------------------------------------------------------------------
# blocks
# --------------------------------------------------------------------------------------------


class HeteroInteractionBlock(torch.nn.Module):
    """MACE interaction layer with one radial MLP (edge network) per relation.

    The tensor product :math:`Y(\\hat r_{ij}) \\otimes W h_j` is shared; its per-edge weights come
    from the radial MLP of the edge's relation.  Messages of all relations are summed into one
    atomic basis :math:`A_i`, divided by ``avg_num_neighbors``.

    Parameters
    ----------
    node_attrs_irreps, node_feats_irreps, sh_irreps, target_irreps, hidden_irreps
        Irreps of the one-hot species, the input node features, the edge spherical harmonics, the
        atomic basis and the (residual) node features after the product basis.
    num_radial
        Length of each radial embedding (number of Bessel functions).
    radial_mlp
        Hidden widths of each radial MLP.
    n_networks
        Number of edge networks (2 heterogeneous, 1 homogeneous).
    avg_num_neighbors
        Normalisation of the summed messages.
    residual
        If True return the self-connection ``sc`` (MACE's residual block); otherwise the message is
        passed through a species-dependent linear map and ``sc`` is None (MACE's first layer).

    Attributes
    ----------
    use_fused_tp : bool
        Evaluate the edge tensor product with :class:`~mlepi_ase.models.edge_tensor_product.FusedEdgeTensorProduct`
        (default; same numbers to round-off, faster on a CPU, see that module) instead of e3nn's
        ``conv_tp``, which stays in the module and in model files.
    """

    def __init__(self, node_attrs_irreps: o3.Irreps, node_feats_irreps: o3.Irreps, sh_irreps: o3.Irreps,
                 target_irreps: o3.Irreps, hidden_irreps: o3.Irreps, num_radial: int,
                 radial_mlp: Sequence[int], n_networks: int, avg_num_neighbors: float,
                 residual: bool) -> None:
        super().__init__()
        self.avg_num_neighbors = float(avg_num_neighbors)
        self.residual = bool(residual)
        self.linear_up = Linear(node_feats_irreps, node_feats_irreps, internal_weights=True,
                                shared_weights=True)
        irreps_mid, instructions = tp_out_irreps_with_instructions(node_feats_irreps, sh_irreps, target_irreps)
        self.conv_tp = TensorProduct(node_feats_irreps, sh_irreps, irreps_mid, instructions=instructions,
                                     shared_weights=False, internal_weights=False)
        # the same product, fused (no state: model files keep e3nn's module and its buffers)
        self.fused_tp = FusedEdgeTensorProduct(self.conv_tp) if fusable(self.conv_tp) else None
        self.use_fused_tp = self.fused_tp is not None
        self.edge_networks = torch.nn.ModuleList(
            e3nn_nn.FullyConnectedNet([num_radial, *radial_mlp, self.conv_tp.weight_numel],
                                      torch.nn.functional.silu)
            for _ in range(n_networks)
        )
        self.target_irreps = o3.Irreps(target_irreps)
        self.linear = Linear(irreps_mid, self.target_irreps, internal_weights=True, shared_weights=True)
        if self.residual:
            self.skip_tp = FullyConnectedTensorProduct(node_feats_irreps, node_attrs_irreps, hidden_irreps)
        else:
            self.skip_tp = FullyConnectedTensorProduct(self.target_irreps, node_attrs_irreps, self.target_irreps)
        self.reshape = reshape_irreps(self.target_irreps)

    def forward(self, node_attrs: torch.Tensor, node_feats: torch.Tensor, edge_attrs: torch.Tensor,
                edge_feats: torch.Tensor, edge_index: torch.Tensor,
                network_ptr: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Atomic basis (N, channels, (lmax+1)²) and the self-connection (N, hidden) or None.

        ``edge_feats`` (E, num_radial) are the radial embeddings, ``edge_attrs`` (E, sh_dim) the
        spherical harmonics, edges of network ``k`` in ``network_ptr[k]:network_ptr[k+1]``.
        """
        sc = self.skip_tp(node_feats, node_attrs) if self.residual else None
        h = self.linear_up(node_feats)
        weights = torch.cat(
            [net(edge_feats[network_ptr[k]:network_ptr[k + 1]]) for k, net in enumerate(self.edge_networks)],
            dim=0,
        )
        receiver, sender = edge_index[0], edge_index[1]
        if self.use_fused_tp and self.fused_tp is not None:
            atomic = self.fused_tp.scatter_sum(h[sender], edge_attrs, weights, receiver, node_feats.shape[0])
        else:
            messages = self.conv_tp(h[sender], edge_attrs, weights)
            atomic = torch.zeros((node_feats.shape[0], messages.shape[1]), dtype=messages.dtype,
                                 device=messages.device)
            atomic = atomic.index_add(0, receiver, messages)
        atomic = self.linear(atomic) / self.avg_num_neighbors
        if not self.residual:
            atomic = self.skip_tp(atomic, node_attrs)
        return self.reshape(atomic), sc


# --------------------------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------------------------


class HedgeNetPhonon(ConstantsModule):
    """HedgeNet-Phonon energy model (see the module docstring).

    Parameters
    ----------
    config
        Model configuration (see :data:`DEFAULT_PHONON_CONFIG`); validated by
        :func:`normalize_phonon_config`.
    dtype
        ``torch.float32`` or ``torch.float64``.
    device
        Torch device.
    **overrides
        Configuration keys overriding ``config``.
    """

    def __init__(self, config: Mapping[str, Any] | None = None, dtype: torch.dtype = torch.float64,
                 device: torch.device | str = "cpu", **overrides: Any) -> None:
        super().__init__()
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        cfg = normalize_phonon_config(config, **overrides)
        with warnings.catch_warnings():
            # e3nn's code generation scripts its tensor products; TorchScript warns about annotations
            warnings.filterwarnings("ignore", message=".*TorchScript type system.*")
            warnings.filterwarnings("ignore", message=".*torch.jit.script. is deprecated.*")
            self._build(cfg)
        self.to(device=device, dtype=dtype)

    def _build(self, cfg: dict[str, Any]) -> None:
        self._config = cfg
        n_species = len(cfg["species"])
        channels = cfg["num_channels"]
        self.network_cutoffs = _network_cutoffs(cfg)
        n_networks = len(self.network_cutoffs)

        node_attr_irreps = o3.Irreps(f"{n_species}x0e")
        scalar_irreps = o3.Irreps(f"{channels}x0e")
        hidden_irreps = o3.Irreps("+".join(f"{channels}x{l}{'e' if l % 2 == 0 else 'o'}"
                                           for l in range(cfg["max_L"] + 1)))
        sh_irreps = o3.Irreps.spherical_harmonics(cfg["max_ell"])
        interaction_irreps = (sh_irreps * channels).sort()[0].simplify()

        self.node_embedding = LinearNodeEmbeddingBlock(node_attr_irreps, scalar_irreps)
        self.radial_embeddings = torch.nn.ModuleList(
            RadialEmbeddingBlock(r_max=cut, num_bessel=cfg["num_bessel"],
                                 num_polynomial_cutoff=cfg["num_polynomial_cutoff"])
            for cut in self.network_cutoffs
        )
        self.spherical_harmonics = o3.SphericalHarmonics(sh_irreps, normalize=True, normalization="component")
        self.atomic_energies_fn = AtomicEnergiesBlock(np.asarray(cfg["atomic_energies"], dtype=np.float64))
        self.scale_shift = ScaleShiftBlock(scale=cfg["scale"], shift=cfg["shift"])

        self.interactions = torch.nn.ModuleList()
        self.products = torch.nn.ModuleList()
        self.readouts = torch.nn.ModuleList()
        n_int = cfg["num_interactions"]
        node_irreps = scalar_irreps
        for t in range(n_int):
            last = t == n_int - 1
            out_irreps = scalar_irreps if last else hidden_irreps
            inter = HeteroInteractionBlock(
                node_attrs_irreps=node_attr_irreps, node_feats_irreps=node_irreps, sh_irreps=sh_irreps,
                target_irreps=interaction_irreps, hidden_irreps=out_irreps,
                num_radial=cfg["num_bessel"], radial_mlp=cfg["radial_mlp"], n_networks=n_networks,
                avg_num_neighbors=cfg["avg_num_neighbors"], residual=t > 0,
            )
            self.interactions.append(inter)
            self.products.append(EquivariantProductBasisBlock(
                node_feats_irreps=interaction_irreps, target_irreps=out_irreps,
                correlation=cfg["correlation"], num_elements=n_species, use_sc=t > 0,
                use_reduced_cg=False,
            ))
            if last:
                self.readouts.append(NonLinearReadoutBlock(
                    out_irreps, o3.Irreps(f"{cfg['readout_mlp']}x0e"), torch.nn.functional.silu,
                    o3.Irreps("0e"), 1))
            else:
                self.readouts.append(LinearReadoutBlock(out_irreps, o3.Irreps("0e")))
            node_irreps = out_irreps

    # ---- bookkeeping -------------------------------------------------------------------------

    @property
    def config(self) -> dict[str, Any]:
        """A copy of the (plain) model configuration."""
        return copy.deepcopy(self._config)

    @property
    def species(self) -> list[int]:
        """Atomic numbers the model knows, in one-hot order."""
        return list(self._config["species"])

    @property
    def heterogeneous(self) -> bool:
        return bool(self._config["heterogeneous"])

    @property
    def n_networks(self) -> int:
        return len(self.network_cutoffs)

    @property
    def graph_cutoffs(self) -> dict[str, float]:
        """Per-relation cutoffs (Å) of the neighbour graph this model reads."""
        if self.heterogeneous:
            return dict(self._config["cutoffs"])
        return {name: self._config["cutoff"] for name in RELATIONS}

    @torch.no_grad()
    def _refresh_constants(self) -> None:
        """Recompute Wigner-3j, U matrices and Bessel constants directly in the model dtype.

        They are built by e3nn/mace in torch's default dtype (float32); a plain cast would leave a
        float64 model with float32-accurate Clebsch–Gordan coefficients.
        """
        params = list(self.parameters())
        if not params:
            return
        dtype, device = params[0].dtype, params[0].device
        w3j = re.compile(r"_w3j_(\d+)_(\d+)_(\d+)$")
        for name, buf in self.named_buffers():
            m = w3j.search(name)
            if m and buf.is_floating_point():
                l1, l2, l3 = (int(x) for x in m.groups())
                buf.copy_(o3.wigner_3j(l1, l2, l3, dtype=torch.float64).to(device=device, dtype=buf.dtype))
        for module in self.modules():
            if isinstance(module, SymmetricContraction):
                for contraction, mul_ir in zip(module.contractions, module.irreps_out):
                    for nu in range(1, contraction.correlation + 1):
                        buf = getattr(contraction, f"U_matrix_{nu}")
                        u = U_matrix_real(irreps_in=contraction.coupling_irreps,
                                          irreps_out=o3.Irreps(str(mul_ir.ir)), correlation=nu,
                                          use_cueq_cg=False, dtype=torch.float64)[-1]
                        buf.copy_(u.reshape(buf.shape).to(device=device, dtype=buf.dtype))
        for cut, emb in zip(self.network_cutoffs, self.radial_embeddings):
            n = emb.bessel_fn.bessel_weights.numel()
            emb.bessel_fn.bessel_weights.copy_(
                math.pi / cut * torch.arange(1, n + 1, dtype=torch.float64, device=device))
            emb.bessel_fn.prefactor.fill_(math.sqrt(2.0 / cut))
            emb.bessel_fn.r_max.fill_(cut)
            emb.cutoff_fn.r_max.fill_(cut)
        e0 = torch.tensor(self._config["atomic_energies"], dtype=torch.float64)
        self.atomic_energies_fn.atomic_energies.copy_(
            e0.reshape(self.atomic_energies_fn.atomic_energies.shape).to(device=device, dtype=dtype))
        self.scale_shift.scale.fill_(self._config["scale"])
        self.scale_shift.shift.fill_(self._config["shift"])

    def set_energy_normalization(self, atomic_energies: Sequence[float] | None = None,
                                 scale: float | None = None, shift: float | None = None) -> None:
        """Set the fixed isolated-atom energies E0 (eV, one per species), scale and shift (eV).

        Updates both the configuration and the model's buffers (they are not trained).
        """
        if atomic_energies is not None:
            e0 = [float(e) for e in atomic_energies]
            if len(e0) != len(self._config["species"]):
                raise ValueError(f"need {len(self._config['species'])} atomic energies, got {len(e0)}")
            self._config["atomic_energies"] = e0
        if scale is not None:
            if not math.isfinite(scale) or scale <= 0:
                raise ValueError(f"scale must be positive, got {scale!r}")
            self._config["scale"] = float(scale)
        if shift is not None:
            self._config["shift"] = float(shift)
        self._refresh_constants()

    # ---- graph -------------------------------------------------------------------------------

    def graph(self, atoms: Atoms) -> PhononGraph:
        """Neighbour graph of ``atoms`` for this model (see :func:`atoms_to_graph`)."""
        return atoms_to_graph(atoms, self._config)

    def batch(self, structures: Sequence[Atoms | PhononGraph]) -> GraphBatch:
        """Batch of structures on the model's device and dtype."""
        graphs = [s if isinstance(s, PhononGraph) else self.graph(s) for s in structures]
        return collate_graphs(graphs, self.n_networks, dtype=self.dtype, device=self.device)

    # ---- forward -----------------------------------------------------------------------------

    def forward(self, batch: GraphBatch, compute_forces: bool = True, compute_stress: bool = False,
                training: bool = False) -> dict[str, torch.Tensor]:
        """Energies, and optionally forces and stress, of a batch.

        Parameters
        ----------
        batch
            Model input (:meth:`batch`), in the model's dtype and device.
        compute_forces
            Return ``forces`` (N, 3), eV/Å.
        compute_stress
            Return ``stress`` (B, 3, 3), eV/Å³ (ASE sign); needs fully periodic cells.
        training
            Keep the graph of the derivatives (for force/stress losses).

        Returns
        -------
        dict
            ``energy`` (B,) eV, ``node_energy`` (N,) eV, and ``forces`` / ``stress`` / ``virial``
            when requested.
        """
        if batch.positions.dtype != self.dtype:
            raise TypeError(f"batch dtype {batch.positions.dtype} does not match the model dtype {self.dtype}")
        if len(batch.network_ptr) != self.n_networks + 1:
            raise ValueError(
                f"batch has {len(batch.network_ptr) - 1} edge networks, the model has {self.n_networks}"
            )
        if compute_stress and not bool(batch.pbc.all()):
            raise ValueError("stress needs cells periodic in all three directions (atoms.pbc all True)")
        positions = batch.positions
        cell = batch.cell
        grad_inputs: list[torch.Tensor] = []
        if compute_forces or compute_stress:
            positions = positions.detach().requires_grad_(True)
            grad_inputs.append(positions)
        displacement = None
        if compute_stress:
            displacement = torch.zeros((batch.n_graphs, 3, 3), dtype=positions.dtype, device=positions.device,
                                       requires_grad=True)
            grad_inputs.append(displacement)
            strain = 0.5 * (displacement + displacement.transpose(1, 2))
            positions = positions + torch.einsum("ni,nij->nj", positions, strain[batch.batch])
            cell = cell + torch.bmm(cell, strain)

        receiver, sender = batch.edge_index[0], batch.edge_index[1]
        edge_cell = cell[batch.batch[receiver]]
        vectors = positions[sender] - positions[receiver] + torch.einsum("ei,eij->ej", batch.shifts, edge_cell)
        lengths = torch.linalg.norm(vectors, dim=1, keepdim=True)
        edge_attrs = self.spherical_harmonics(vectors)
        ptr = batch.network_ptr
        radial = [emb(lengths[ptr[k]:ptr[k + 1]], None, None, None)[0]
                  for k, emb in enumerate(self.radial_embeddings)]
        edge_feats = torch.cat(radial, dim=0)

        node_attrs = torch.nn.functional.one_hot(batch.species, len(self._config["species"])).to(positions.dtype)
        node_e0 = self.atomic_energies_fn(node_attrs)[:, 0]
        node_feats = self.node_embedding(node_attrs)
        readout_sum = torch.zeros_like(node_e0)
        for inter, prod, readout in zip(self.interactions, self.products, self.readouts):
            atomic, sc = inter(node_attrs, node_feats, edge_attrs, edge_feats, batch.edge_index, ptr)
            node_feats = prod(atomic, sc, node_attrs)
            readout_sum = readout_sum + readout(node_feats)[:, 0]
        head = torch.zeros_like(batch.species)
        node_energy = node_e0 + self.scale_shift(readout_sum, head)
        energy = torch.zeros(batch.n_graphs, dtype=node_energy.dtype, device=node_energy.device)
        energy = energy.index_add(0, batch.batch, node_energy)

        out: dict[str, torch.Tensor] = {"energy": energy, "node_energy": node_energy}
        if grad_inputs:
            grads = torch.autograd.grad(energy.sum(), grad_inputs, create_graph=training,
                                        retain_graph=training, allow_unused=True)
            if compute_forces:
                g = grads[0] if grads[0] is not None else torch.zeros_like(positions)
                out["forces"] = -g
            if compute_stress:
                g = grads[-1] if grads[-1] is not None else torch.zeros_like(displacement)
                volume = torch.abs(torch.linalg.det(batch.cell))
                out["virial"] = -g
                out["stress"] = g / volume[:, None, None]
        return out

    # ---- convenience -------------------------------------------------------------------------

    def predict(self, atoms: Atoms, compute_stress: bool = False) -> dict[str, np.ndarray | float]:
        """Energy (eV), forces (N, 3) eV/Å and optionally the 3×3 stress (eV/Å³) of one structure."""
        out = self(self.batch([atoms]), compute_forces=True, compute_stress=compute_stress)
        res: dict[str, np.ndarray | float] = {
            "energy": float(out["energy"][0].detach().cpu()),
            "forces": out["forces"].detach().cpu().numpy().astype(np.float64),
        }
        if compute_stress:
            res["stress"] = out["stress"][0].detach().cpu().numpy().astype(np.float64)
        return res

    def count_parameters(self) -> int:
        """Number of parameters (weights; constants such as Clebsch–Gordan tensors are buffers)."""
        return int(sum(p.numel() for p in self.parameters()))


# --------------------------------------------------------------------------------------------
# model files
# --------------------------------------------------------------------------------------------


def save_phonon_model(model: HedgeNetPhonon, path: str | os.PathLike, metadata: Mapping[str, Any] | None = None
                      ) -> Path:
    """Write ``model`` to ``path`` atomically (config + state_dict + metadata; see module docstring).

    Parameters
    ----------
    model
        The model.
    path
        Output file.
    metadata
        Extra plain metadata (str/int/float/bool/list/dict) stored under ``metadata``.
    """
    path = Path(path)
    meta: dict[str, Any] = {
        "cutoffs": model.graph_cutoffs,
        "heterogeneous": model.heterogeneous,
        "species": model.species,
        "species_symbols": [chemical_symbols[z] for z in model.species],
        "units": dict(UNITS),
        "package": "mlepi_ase",
        "package_version": __version__,
        "dtype": str(model.dtype).replace("torch.", ""),
    }
    meta.update(copy.deepcopy(dict(metadata or {})))
    payload = {
        "format": MODEL_FORMAT,
        "format_version": MODEL_FORMAT_VERSION,
        "config": model.config,
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "metadata": meta,
    }
    return atomic_torch_save(payload, path)


def read_phonon_model_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate a model file without building the model (``weights_only=True``).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ModelFileError
        If the file is not a loadable plain-weights file (for example it holds a pickle that would
        run code), or it is not a HedgeNet-Phonon model file.
    """
    return read_model_payload(path, MODEL_FORMAT, MODEL_FORMAT_VERSION, "HedgeNet-Phonon")


def load_phonon_model(path: str | os.PathLike, device: torch.device | str = "cpu",
                      dtype: torch.dtype | str | None = None) -> HedgeNetPhonon:
    """Load a HedgeNet-Phonon model file written by :func:`save_phonon_model`.

    Parameters
    ----------
    path
        Model file.
    device
        Torch device of the returned model.
    dtype
        ``torch.float32``/``"float32"`` or ``torch.float64``/``"float64"``; None = the dtype it was saved in.

    Returns
    -------
    HedgeNetPhonon
        In eval mode.
    """
    payload = read_phonon_model_file(path)
    if dtype is None:
        dtype = payload["metadata"].get("dtype", "float64")
    dtype = as_dtype(dtype)
    model = HedgeNetPhonon(payload["config"], dtype=dtype, device=device)
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise ModelFileError(f"model file {str(path)!r}: state_dict does not match its config: {exc}") from exc
    model.metadata = dict(payload["metadata"])  # type: ignore[attr-defined]
    return model.eval()


