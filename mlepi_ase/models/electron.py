r"""HedgeNet-Electron: an E(3)-equivariant tight-binding Hamiltonian model on a heterogeneous graph.

Target
------
The model predicts the real-space blocks :math:`H_{ij}(\mathbf R)` (eV) of an orthogonal local-orbital
Hamiltonian in the package convention (:mod:`mlepi_ase.tb`): atom :math:`j` translated by the lattice
vector :math:`\mathbf R`, edge vector :math:`\mathbf r_{ij} = \mathbf r_j + \mathbf R\cdot\text{cell} -
\mathbf r_i`, and orbitals grouped in shells of angular momentum :math:`l` whose components are in e3nn's
real basis (:mod:`mlepi_ase.orbitals`).

Equivariance
------------
Under an orthogonal transformation :math:`Q` of the structure (rotation or reflection) a block
transforms as :math:`H_{ij} \to D^{(i)}(Q)\, H_{ij}\, D^{(j)}(Q)^T`, with :math:`D^{(i)}` the direct sum
of the Wigner matrices :math:`D^{l}(Q)` (parity :math:`(-1)^l`) of the shells of atom :math:`i`.
The sub-block of a shell pair :math:`(l_1, l_2)` is the tensor product :math:`l_1 \otimes l_2 =
\bigoplus_{L=|l_1-l_2|}^{l_1+l_2} L` with parity :math:`(-1)^{l_1+l_2}`; the model predicts one
equivariant vector :math:`c^{L}` per :math:`L` (irrep ``"Le"``/``"Lo"``) and maps it to the block by the
Wigner-3j (Clebsch–Gordan) coefficients,

.. math::

    H^{l_1 l_2}_{m_1 m_2} = \sum_{L} \sum_{M} C^{l_1 l_2 L}_{m_1 m_2 M}\, c^{L}_{M},

which is equivariant because :math:`C` is invariant, :math:`D^{l_1} C(c) D^{l_2 T} = C(D^{L} c)`.
This is the construction of DeepH-E3 (Gong et al., Nat. Commun. 14, 2848 (2023)); the code here is
our own, built from e3nn 0.4.4 primitives.

Architecture
------------
* Node features: a learned embedding of the species (scalars ``0e``).
* Edge features: a radial basis — Gaussians :math:`\exp(-((r-\mu_k)/w)^2)` on a uniform grid
  :math:`\mu_k = k r_c/(n-1)`, :math:`w = r_c/(n-1)` (default; local functions fit hoppings with sharp
  features, such as the cubic tail of the σ channels that ends at 2.6 Å, far better than global ones),
  or the Bessel basis :math:`\sqrt{2/r_c}\sin(n\pi r/r_c)/r` — with the polynomial envelope
  :math:`u(r/r_c)` (DimeNet, exponent ``p``), and real spherical harmonics
  :math:`Y^{l}(\hat{\mathbf r}_{ij})` up to ``sh_lmax``.
* Heterogeneous message passing: every edge has a relation, ``intra`` (same layer) or ``inter``
  (different layers), each with its own cutoff :math:`r_c` and its own edge network (radial MLP
  producing the tensor-product weights).  Interaction layer :math:`t` updates

  .. math::

      x_i^{(t+1)} = \mathrm{Gate}\Big( W \sum_{r\in\{\mathrm{intra},\mathrm{inter}\}}
      \frac{1}{\bar n_r} \sum_{j\in\mathcal N_r(i)} x_j^{(t)} \otimes_{w_r(r_{ij})} Y(\hat r_{ij})
      \;+\; \mathrm{SC}_{Z_i}(x_i^{(t)}) \Big) \;(+\, x_i^{(t)}),

  with :math:`w_r = \mathrm{MLP}_r(\text{radial basis}) \cdot u(r/r_c)`, so messages vanish smoothly at
  each relation's cutoff, a species-dependent self-connection, and a gated nonlinearity (scalars: SiLU;
  ``l > 0``: scalar sigmoid gates).  Hidden features carry both parities of every :math:`l \ge 1`
  (pseudo-tensors are needed, e.g. the ``1e`` part of a p–p block).  The message-passing range
  (``message_cutoffs``) may be shorter than the range of the predicted blocks (``cutoffs``): the
  environment an atom sees is then local while hoppings are still predicted out to the block cutoff,
  which makes large systems several times cheaper.
* Off-site head (one radial network per relation, one readout per relation and species pair): for an
  edge :math:`(i, j, \mathbf r)` with reduced node features :math:`\tilde x = \mathrm{Lin}(x)`,

  .. math::

      F(i, j, \mathbf r) = \mathrm{Lin}_{r, Z_iZ_j}\Big( [\tilde x_i + \tilde x_j;\, \tilde x_i - \tilde x_j]
      \otimes_{w} Y(\hat{\mathbf r}) \Big)\, u(r/r_c),

  with path weights :math:`w = \mathrm{MLP}_r(\text{radial basis}, s_i + s_j, s_i s_j)` (:math:`s` the
  scalar channels of :math:`x`).  Swapping the edge, :math:`(j, i, -\mathbf r)`, leaves the sum and
  :math:`w` unchanged, flips the difference and multiplies :math:`Y^l` by :math:`(-1)^l`, so every
  tensor-product path of the reversed edge is the forward one times a fixed sign: both directions of a
  pair cost one tensor product.
* On-site head: a linear map of the node features plus a fixed, data-derived invariant offset
  (per species, the mean on-site block projected on the identity of each :math:`(l, l)` pair).

Hermiticity by construction
---------------------------
Per pair of directed edges :math:`e = (i, j, \mathbf R)` and :math:`\bar e = (j, i, -\mathbf R)` only
the canonical one (``e < reverse(e)`` in the sorted graph) is predicted, as

.. math::

    H_{ij}(\mathbf R) = \tfrac12\big[F(i, j, \mathbf r_{ij}) + F(j, i, -\mathbf r_{ij})^T\big],
    \qquad H_{ji}(-\mathbf R) := H_{ij}(\mathbf R)^T,

and on-site blocks are symmetrised, :math:`H_{ii} = \tfrac12 (F_i + F_i^T)`.  The stored Hamiltonian is
therefore exactly Hermitian, and — because the symmetrised expression does not depend on which
direction is called canonical — exactly invariant under permutations of the atoms.

Precision
---------
dtype/device are per model; torch's global default dtype is never changed.  e3nn builds its Wigner-3j
buffers in the default dtype (float32); after every cast this module recomputes them in the model dtype,
so a float64 model is equivariant to float64 round-off.

Model files
-----------
``torch.save`` of a plain dict ``{"format", "format_version", "config", "state_dict", "metadata"}``
(see :func:`save_electron_model`), loaded with ``torch.load(weights_only=True)``.  The metadata records
cutoffs, species, orbital basis, units and package version.
"""

from __future__ import annotations

import contextlib
import copy
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
from torch import nn

from .._files import atomic_torch_save, to_plain
from .. import __version__
from .._e3nn import o3
from ..graph import RELATIONS, build_graph
from ..orbitals import OrbitalBasis
from ..tb import TBHamiltonian
from ._base import ConstantsModule, ModelFileError, as_dtype, read_model_payload
from .edge_tensor_product import FusedEdgeTensorProduct

from e3nn import nn as e3nn_nn  # noqa: E402  (after mlepi_ase._e3nn, see that module)

__all__ = [
    "DEFAULT_ELECTRON_CONFIG",
    "ELECTRON_MODEL_FORMAT",
    "ElectronGraph",
    "HedgeNetElectron",
    "ElectronModelFileError",
    "normalize_electron_config",
    "atoms_to_electron_graph",
    "collate_electron_graphs",
    "save_electron_model",
    "load_electron_model",
    "read_electron_model_file",
    "pair_irreps",
    "pair_block_map",
]

ELECTRON_MODEL_FORMAT = "mlepi_ase.hedgenet_electron"
_FORMAT_VERSION = 1

DEFAULT_ELECTRON_CONFIG: dict[str, Any] = {
    "basis": {"C": [0, 1]},
    "cutoffs": {"intra": 6.5, "inter": 6.5},
    "message_cutoffs": None,
    "num_channels": 16,
    "head_channels": None,
    "max_l": None,
    "sh_lmax": None,
    "num_interactions": 2,
    "num_radial": 8,
    "radial_basis": "gaussian",
    "radial_hidden": 32,
    "envelope_exponent": 6,
    "avg_num_neighbors": {"intra": 1.0, "inter": 1.0},
    "block_scale": 1.0,
    "radial_decay": None,
    "decay_origin": {"intra": 0.0, "inter": 0.0},
}
"""Default model configuration.

``basis``: shells per element (the orbital basis, e.g. ``{"C": [0, 1]}`` or DeepH's s2p2d1
``{"Mo": [0, 0, 1, 1, 2]}``); ``cutoffs``: per relation (Å), the range of the predicted blocks;
``message_cutoffs``: per relation (Å, ≤ ``cutoffs``, default equal), the range of the message passing
(the environment an atom sees; smaller values make large systems much cheaper); ``num_channels``:
multiplicity of the scalar hidden features (halved per step in ``l``); ``head_channels``: the same for
the reduced features entering the off-site head (default ``num_channels // 2``); ``max_l``: largest
``l`` of the hidden features (default: the largest ``L`` of any output block, at least 1); ``sh_lmax``:
largest spherical-harmonic degree of the edge features (default: the same); ``num_radial`` and
``radial_basis`` (``"gaussian"`` or ``"bessel"``): the radial basis; ``radial_hidden``: width of the radial
MLPs; ``envelope_exponent``: of the cutoff envelope; ``radial_decay``: None, or initial decay lengths λ
(Å) per relation of a learnable exponential prior ``exp(−(r − r_0)/λ)`` multiplying the off-site blocks
(hopping integrals of localised orbitals decay exponentially, so errors of far blocks shrink with them);
``decay_origin``: the ``r_0`` per relation (Å); ``avg_num_neighbors``: per-relation message
normalisation; ``block_scale``: output scale (eV).  The last three are set from the training data by
:func:`mlepi_ase.train.electron.train_electron`.
"""


class ElectronModelFileError(ModelFileError):
    """A HedgeNet-Electron model file is missing, corrupt or of another format."""


# --------------------------------------------------------------------------------------- config
def _basis_from_config(basis: Mapping[str, Sequence[Any]]) -> OrbitalBasis:
    ob = OrbitalBasis.from_dict(basis)
    if not ob.equivariant:
        raise ValueError(
            "HedgeNet-Electron needs full angular-momentum shells (integers l); 'pz' shells are not "
            "rotation-closed — use the sp3 basis {'C': [0, 1]} instead"
        )
    return ob


def normalize_electron_config(config: Mapping[str, Any] | None = None, **overrides: Any) -> dict[str, Any]:
    """Complete and validate a model configuration (a plain, JSON-serialisable dict).

    Parameters
    ----------
    config
        Partial configuration; missing keys take :data:`DEFAULT_ELECTRON_CONFIG`.
    **overrides
        Keys that replace those of ``config``.

    Returns
    -------
    dict
        With ``basis`` as ``{symbol: [l, ...]}``, ``species`` (sorted atomic numbers), float cutoffs per
        relation and resolved ``max_l``/``sh_lmax``.
    """
    cfg = copy.deepcopy(DEFAULT_ELECTRON_CONFIG)
    if config is not None:
        unknown = set(config) - set(DEFAULT_ELECTRON_CONFIG) - {"species"}
        if unknown:
            raise KeyError(f"unknown HedgeNet-Electron config key(s) {sorted(unknown)}")
        cfg.update(copy.deepcopy(dict(config)))
    for key, value in overrides.items():
        if key not in DEFAULT_ELECTRON_CONFIG:
            raise KeyError(f"unknown HedgeNet-Electron config key {key!r}")
        cfg[key] = copy.deepcopy(value)
    basis = _basis_from_config(cfg["basis"])
    cfg["basis"] = basis.to_dict()
    cfg["species"] = sorted(int(z) for z in basis.shells)
    cuts = cfg["cutoffs"]
    if not isinstance(cuts, Mapping):
        cuts = {name: cuts for name in RELATIONS}
    if set(cuts) != set(RELATIONS):
        raise KeyError(f"cutoffs must give exactly the relations {RELATIONS}, got {sorted(cuts)}")
    cfg["cutoffs"] = {name: float(cuts[name]) for name in RELATIONS}
    for name, value in cfg["cutoffs"].items():
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"cutoff of relation {name!r} must be positive (Å), got {value!r}")
    mcuts = cfg["message_cutoffs"]
    if mcuts is None:
        mcuts = dict(cfg["cutoffs"])
    elif not isinstance(mcuts, Mapping):
        mcuts = {name: mcuts for name in RELATIONS}
    if set(mcuts) != set(RELATIONS):
        raise KeyError(f"message_cutoffs must give exactly the relations {RELATIONS}, got {sorted(mcuts)}")
    cfg["message_cutoffs"] = {name: float(mcuts[name]) for name in RELATIONS}
    for name, value in cfg["message_cutoffs"].items():
        if not 0 < value <= cfg["cutoffs"][name]:
            raise ValueError(f"message cutoff of relation {name!r} must be in (0, {cfg['cutoffs'][name]}] Å "
                             f"(the block cutoff), got {value!r}")
    if cfg["head_channels"] is None:
        cfg["head_channels"] = max(int(cfg["num_channels"]) // 2, 2)
    avg = cfg["avg_num_neighbors"]
    if not isinstance(avg, Mapping):
        avg = {name: avg for name in RELATIONS}
    cfg["avg_num_neighbors"] = {name: float(avg[name]) for name in RELATIONS}
    if min(cfg["avg_num_neighbors"].values()) <= 0:
        raise ValueError("avg_num_neighbors must be positive")
    lmax_out = max(2 * max(s for s in shells) for shells in basis.shells.values())
    if cfg["max_l"] is None:
        cfg["max_l"] = max(lmax_out, 1)
    if cfg["sh_lmax"] is None:
        cfg["sh_lmax"] = max(lmax_out, 1)
    for key in ("num_channels", "head_channels", "max_l", "sh_lmax", "num_interactions", "num_radial", "radial_hidden",
                "envelope_exponent"):
        cfg[key] = int(cfg[key])
    if cfg["num_interactions"] < 1:
        raise ValueError("num_interactions must be at least 1 (pseudo-tensor outputs need one layer)")
    if cfg["num_channels"] < 2 or cfg["head_channels"] < 2 or cfg["num_radial"] < 1 or cfg["radial_hidden"] < 1:
        raise ValueError("num_channels ≥ 2, num_radial ≥ 1 and radial_hidden ≥ 1 are required")
    if cfg["max_l"] < 1 or cfg["sh_lmax"] < 1:
        raise ValueError("max_l and sh_lmax must be at least 1")
    for key in ("radial_decay", "decay_origin"):
        value = cfg[key]
        if value is None:
            continue
        if not isinstance(value, Mapping):
            value = {name: value for name in RELATIONS}
        if set(value) != set(RELATIONS):
            raise KeyError(f"{key} must give exactly the relations {RELATIONS}, got {sorted(value)}")
        cfg[key] = {name: float(value[name]) for name in RELATIONS}
    if cfg["radial_decay"] is not None and min(cfg["radial_decay"].values()) <= 0:
        raise ValueError(f"radial_decay lengths must be positive (Å), got {cfg['radial_decay']}")
    if cfg["decay_origin"] is None:
        cfg["decay_origin"] = {name: 0.0 for name in RELATIONS}
    if cfg["radial_basis"] not in ("gaussian", "bessel"):
        raise ValueError(f"radial_basis must be 'gaussian' or 'bessel', got {cfg['radial_basis']!r}")
    if cfg["radial_basis"] == "gaussian" and int(cfg["num_radial"]) < 2:
        raise ValueError("a Gaussian radial basis needs num_radial ≥ 2")
    cfg["block_scale"] = float(cfg["block_scale"])
    if not cfg["block_scale"] > 0:
        raise ValueError(f"block_scale must be positive (eV), got {cfg['block_scale']!r}")
    return cfg


# ------------------------------------------------------------------------- irreps and 3j maps
def pair_irreps(shells_a: Sequence[int], shells_b: Sequence[int]) -> tuple[o3.Irreps, list[tuple[int, int, int]]]:
    """Irreps of the block of two atoms with shells ``shells_a`` and ``shells_b``.

    Returns
    -------
    irreps : e3nn.o3.Irreps
        ``⊕_{(a, b)} ⊕_{L=|l_a-l_b|}^{l_a+l_b} 1x(L, (-1)^{l_a+l_b})``, in shell-pair order (not simplified).
    slots : list of (a, b, L)
        Shell indices and ``L`` of each irrep.
    """
    irreps, slots = [], []
    for a, la in enumerate(shells_a):
        for b, lb in enumerate(shells_b):
            parity = (-1) ** (la + lb)
            for big_l in range(abs(la - lb), la + lb + 1):
                irreps.append((1, (big_l, parity)))
                slots.append((a, b, big_l))
    return o3.Irreps(irreps), slots


def pair_block_map(shells_a: Sequence[int], shells_b: Sequence[int], nmax: int) -> torch.Tensor:
    """Linear map from the :func:`pair_irreps` vector to the flattened, zero-padded block.

    ``block[m1, m2] = Σ_L Σ_M C^{l_a l_b L}_{m1 m2 M} c^L_M`` for every shell pair (e3nn's Wigner 3j).

    Returns
    -------
    torch.Tensor, shape (dim(pair_irreps), nmax * nmax), float64
    """
    irreps, slots = pair_irreps(shells_a, shells_b)
    off_a = np.concatenate([[0], np.cumsum([2 * l + 1 for l in shells_a])])
    off_b = np.concatenate([[0], np.cumsum([2 * l + 1 for l in shells_b])])
    if off_a[-1] > nmax or off_b[-1] > nmax:
        raise ValueError(f"blocks of {off_a[-1]}×{off_b[-1]} orbitals do not fit nmax = {nmax}")
    out = torch.zeros(irreps.dim, nmax * nmax, dtype=torch.float64)
    o = 0
    for a, b, big_l in slots:
        la, lb = shells_a[a], shells_b[b]
        c = o3.wigner_3j(la, lb, big_l, dtype=torch.float64)  # (2la+1, 2lb+1, 2L+1)
        rows = off_a[a] + np.arange(2 * la + 1)
        cols = off_b[b] + np.arange(2 * lb + 1)
        flat = (rows[:, None] * nmax + cols[None, :]).reshape(-1)
        out[o : o + 2 * big_l + 1, flat] = c.reshape(-1, 2 * big_l + 1).T
        o += 2 * big_l + 1
    return out


def _hidden_irreps(channels: int, lmax: int) -> o3.Irreps:
    parts = [(channels, (0, 1))]
    for l in range(1, lmax + 1):
        mul = max(channels // (2**l), 2)
        parts += [(mul, (l, -1)), (mul, (l, 1))]
    return o3.Irreps(parts).sort().irreps.simplify()


def _uvu_tensor_product(irreps_in: o3.Irreps, irreps_sh: o3.Irreps, allowed: Sequence[o3.Irrep]):
    """Weight-per-path ('uvu') tensor product x ⊗ Y restricted to output irreps in ``allowed``."""
    allowed = set(allowed)
    mid, instructions = [], []
    for i1, (mul, ir1) in enumerate(irreps_in):
        for i2, (_, ir2) in enumerate(irreps_sh):
            for ir in ir1 * ir2:
                if ir in allowed:
                    instructions.append((i1, i2, len(mid), "uvu", True))
                    mid.append((mul, ir))
    irreps_mid = o3.Irreps(mid)
    tp = o3.TensorProduct(irreps_in, irreps_sh, irreps_mid, instructions,
                          shared_weights=False, internal_weights=False)
    return tp, irreps_mid


# ---------------------------------------------------------------------------------- modules
class _MLP(nn.Module):
    """Plain MLP with SiLU between layers (no activation after the last)."""

    def __init__(self, sizes: Sequence[int]):
        super().__init__()
        layers: list[nn.Module] = []
        for k in range(len(sizes) - 1):
            layers.append(nn.Linear(sizes[k], sizes[k + 1]))
            if k < len(sizes) - 2:
                layers.append(nn.SiLU())
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _bessel(r: torch.Tensor, rc: torch.Tensor, n: int) -> torch.Tensor:
    """Bessel radial basis ``sqrt(2/rc) sin(k π r / rc) / r``, k = 1..n; (E,) → (E, n), 1/Å^{3/2}."""
    k = torch.arange(1, n + 1, dtype=r.dtype, device=r.device)
    return torch.sqrt(2.0 / rc)[:, None] * torch.sin(k[None, :] * math.pi * (r / rc)[:, None]) / r[:, None]


def _gaussian(r: torch.Tensor, rc: torch.Tensor, n: int) -> torch.Tensor:
    """Gaussian radial basis ``exp(−((r − μ_k)/w)²)``, μ_k = k rc/(n−1), w = rc/(n−1); (E,) → (E, n)."""
    k = torch.arange(n, dtype=r.dtype, device=r.device)
    w = rc / (n - 1)
    x = r[:, None] / w[:, None] - k[None, :]
    return torch.exp(-x * x)


def _envelope(x: torch.Tensor, p: int) -> torch.Tensor:
    """DimeNet polynomial envelope ``u(x)``: 1 at 0, zero with 3 continuous derivatives at x ≥ 1."""
    u = (1.0 - (p + 1) * (p + 2) / 2.0 * x**p + p * (p + 2) * x ** (p + 1) - p * (p + 1) / 2.0 * x ** (p + 2))
    return torch.where(x < 1.0, u, torch.zeros_like(x))


class _IrrepsLinear(nn.Module):
    """Equivariant linear map between irreps (weights mix only copies of the same irrep).

    Optionally species-dependent: ``n_species > 1`` gives one weight matrix per species, selected by
    the species index of each row.  Output ``y_{v,m} = Σ_u W_{uv} x_{u,m} / √(fan_in)`` per irrep type;
    irrep types of the output absent from the input give zeros.  Plain torch (no code generation).
    """

    def __init__(self, irreps_in: o3.Irreps, irreps_out: o3.Irreps, n_species: int = 1):
        super().__init__()
        self.irreps_in, self.irreps_out = o3.Irreps(irreps_in), o3.Irreps(irreps_out)
        self.dim_out = self.irreps_out.dim
        self.n_species = n_species

        def index(irreps: o3.Irreps, ir: o3.Irrep) -> np.ndarray:
            rows = []
            for (mul, ir2), sl in zip(irreps, irreps.slices()):
                if ir2 == ir:
                    rows.append(np.arange(sl.start, sl.stop).reshape(mul, ir.dim))
            return np.concatenate(rows) if rows else np.zeros((0, ir.dim), dtype=np.int64)

        self.types: list[tuple[int, int]] = []
        self.weights = nn.ParameterList()
        for k, ir in enumerate(sorted({ir for _, ir in self.irreps_out})):
            idx_in, idx_out = index(self.irreps_in, ir), index(self.irreps_out, ir)
            if len(idx_in) == 0:
                continue
            self.register_buffer(f"in_{k}", torch.as_tensor(idx_in, dtype=torch.int64))
            self.register_buffer(f"out_{k}", torch.as_tensor(idx_out.reshape(-1), dtype=torch.int64))
            shape = (n_species, len(idx_in), len(idx_out)) if n_species > 1 else (len(idx_in), len(idx_out))
            self.weights.append(nn.Parameter(torch.randn(shape, dtype=torch.float64)))
            self.types.append((k, len(idx_in)))

    def forward(self, x: torch.Tensor, species: torch.Tensor | None = None) -> torch.Tensor:
        out = x.new_zeros(x.shape[0], self.dim_out)
        for (k, fan_in), w in zip(self.types, self.weights):
            xt = x[:, getattr(self, f"in_{k}")]  # (B, U, d)
            if self.n_species > 1:
                y = torch.einsum("bud,buv->bvd", xt, w[species])
            else:
                y = torch.einsum("bud,uv->bvd", xt, w)
            out[:, getattr(self, f"out_{k}")] = (y / math.sqrt(fan_in)).reshape(x.shape[0], -1)
        return out


class _Interaction(nn.Module):
    """One heterogeneous message-passing layer (see the module docstring)."""

    def __init__(self, irreps_in: o3.Irreps, irreps_sh: o3.Irreps, hidden: o3.Irreps, n_species: int,
                 num_radial: int, radial_hidden: int, residual: bool):
        super().__init__()
        scalars = o3.Irreps([(m, ir) for m, ir in hidden if ir.l == 0])
        gated = o3.Irreps([(m, ir) for m, ir in hidden if ir.l > 0])
        gates = o3.Irreps(f"{gated.num_irreps}x0e") if gated.num_irreps else o3.Irreps("")
        self.tp, irreps_mid = _uvu_tensor_product(irreps_in, irreps_sh, [ir for _, ir in hidden])
        self.fused_tp = FusedEdgeTensorProduct(self.tp)  # same numbers, faster; no state (model files keep tp)
        self.use_fused_tp = True
        self.radial = nn.ModuleList(
            [_MLP([num_radial, radial_hidden, radial_hidden, self.tp.weight_numel]) for _ in RELATIONS]
        )
        self.gate = e3nn_nn.Gate(scalars, [torch.nn.functional.silu], gates, [torch.sigmoid], gated)
        gate_in = self.gate.irreps_in  # Gate sorts its input irreps: scalars, gates, gated (sorted)
        self.linear = _IrrepsLinear(irreps_mid, gate_in)
        self.self_connection = _IrrepsLinear(irreps_in, gate_in, n_species)
        self.irreps_out = self.gate.irreps_out
        self.residual = residual and self.irreps_out == irreps_in

    def forward(self, x: torch.Tensor, species: torch.Tensor, edges: "_EdgeStream",
                avg: torch.Tensor) -> torch.Tensor:
        agg = x.new_zeros(x.shape[0], self.linear.irreps_in.dim)
        for e in edges:
            w = x.new_empty(len(e.src), self.tp.weight_numel)
            for r in range(len(RELATIONS)):
                m = e.rel_masks[r]
                if m is None:
                    continue
                w[m] = self.radial[r](e.rbf[m])
            w = w * (e.env / avg[e.rel])[:, None]
            if self.use_fused_tp:
                agg = agg + self.fused_tp.scatter_sum(x[e.dst], e.sh, w, e.src, x.shape[0])
            else:
                agg.index_add_(0, e.src, self.tp(x[e.dst], e.sh, w))
        h = self.linear(agg) + self.self_connection(x, species)
        out = self.gate(h)
        return out + x if self.residual else out


@dataclass
class _EdgeChunk:
    src: torch.Tensor
    dst: torch.Tensor
    rel: torch.Tensor
    rel_masks: list
    r: torch.Tensor
    rbf: torch.Tensor
    sh: torch.Tensor
    env: torch.Tensor


class _EdgeStream:
    """Iterates over edge chunks, computing geometry features on the fly (bounded memory)."""

    def __init__(self, model: "HedgeNetElectron", src, dst, vectors, rel, chunk: int | None, cutoffs):
        self.model, self.src, self.dst, self.vectors, self.rel = model, src, dst, vectors, rel
        self.cutoffs = cutoffs
        self.chunk = chunk if chunk else max(len(src), 1)

    def __iter__(self):
        n = len(self.src)
        for start in range(0, n, self.chunk):
            sl = slice(start, min(start + self.chunk, n))
            yield self.model._edge_features(self.src[sl], self.dst[sl], self.vectors[sl], self.rel[sl], self.cutoffs)


class _OffsiteHead(nn.Module):
    """Off-site block head: per-relation radial networks and per-(relation, species pair) readouts.

    For an edge (i, j, r) the input features are ``u = x̃_i + x̃_j`` and ``v = x̃_i − x̃_j`` (x̃ a linear
    reduction of the node features) and the path weights come from an MLP of the radial basis and the
    symmetric scalars ``s_i + s_j``, ``s_i s_j``.  Swapping the edge, (j, i, −r), leaves u and the
    weights unchanged, flips v and multiplies Y^l by (−1)^l, so every tensor-product path of the swapped
    edge equals the original times a fixed sign :attr:`swap_sign`: both directions cost one tensor product.
    """

    def __init__(self, irreps_x: o3.Irreps, irreps_head: o3.Irreps, irreps_sh: o3.Irreps, n_scalars: int,
                 num_radial: int, radial_hidden: int, pair_irreps_out: Mapping[str, o3.Irreps]):
        super().__init__()
        needed = {ir for irreps in pair_irreps_out.values() for _, ir in irreps}
        self.reduce = _IrrepsLinear(irreps_x, irreps_head)
        irreps_in = irreps_head + irreps_head
        self.tp, irreps_mid = _uvu_tensor_product(irreps_in, irreps_sh, sorted(needed))
        self.fused_tp = FusedEdgeTensorProduct(self.tp)  # same numbers, faster; no state (model files keep tp)
        self.use_fused_tp = True
        sign = []
        n_head = len(irreps_head)
        for ins, (mul, ir) in zip(self.tp.instructions, irreps_mid):
            s_uv = 1.0 if ins.i_in1 < n_head else -1.0
            s_y = (-1.0) ** irreps_sh[ins.i_in2].ir.l
            sign += [s_uv * s_y] * (mul * ir.dim)
        self.register_buffer("swap_sign", torch.tensor(sign, dtype=torch.float64))
        self.radial = nn.ModuleList(
            [_MLP([num_radial + 2 * n_scalars, radial_hidden, radial_hidden, self.tp.weight_numel])
             for _ in RELATIONS]
        )
        self.readout = nn.ModuleDict(
            {f"{r}_{key}": _IrrepsLinear(irreps_mid, irreps) for r in range(len(RELATIONS))
             for key, irreps in pair_irreps_out.items()}
        )
        self.n_scalars = n_scalars


@contextlib.contextmanager
def _no_torchscript():
    """Build e3nn modules as plain torch.fx code (no TorchScript) and restore e3nn's defaults after.

    Scripting the generated tensor-product code costs seconds per module at construction and was not
    faster at run time here (CPU, torch 2.13); the setting only affects modules built inside the block.
    """
    import e3nn

    before = e3nn.get_optimization_defaults()
    e3nn.set_optimization_defaults(jit_script_fx=False)
    try:
        yield
    finally:
        e3nn.set_optimization_defaults(**before)


class HedgeNetElectron(ConstantsModule):
    """E(3)-equivariant Hamiltonian model with per-relation edge networks (see the module docstring).

    Parameters
    ----------
    config
        Model configuration (see :data:`DEFAULT_ELECTRON_CONFIG`); completed by
        :func:`normalize_electron_config`.
    dtype
        ``torch.float64`` (physics tests) or ``torch.float32`` (training/inference speed).
    device
        Torch device.

    Examples
    --------
    >>> model = HedgeNetElectron({"basis": {"C": [0, 1]}, "num_channels": 4})
    >>> h = model.predict_hamiltonian(bilayer_graphene("AB"))   # doctest: +SKIP
    """

    def __init__(self, config: Mapping[str, Any] | None = None, dtype: torch.dtype = torch.float64,
                 device: torch.device | str = "cpu"):
        super().__init__()
        with warnings.catch_warnings(), _no_torchscript():
            # e3nn scripts its generated code; TorchScript warns about annotations it cannot type
            warnings.filterwarnings("ignore", message=".*TorchScript type system.*")
            self._build(normalize_electron_config(config), dtype, device)

    def _build(self, cfg: dict[str, Any], dtype: torch.dtype, device: torch.device | str) -> None:
        self._config = cfg
        self.basis = _basis_from_config(cfg["basis"])
        species = cfg["species"]
        self._species = list(species)
        nmax = self.basis.max_norb
        self.nmax = nmax
        n_species = len(species)
        channels = cfg["num_channels"]

        self.irreps_sh = o3.Irreps.spherical_harmonics(cfg["sh_lmax"])
        self.sh = o3.SphericalHarmonics(self.irreps_sh, normalize=True, normalization="component")
        hidden = _hidden_irreps(channels, cfg["max_l"])
        self.embedding = nn.Embedding(n_species, channels)
        layers = []
        irreps = o3.Irreps(f"{channels}x0e")
        for t in range(cfg["num_interactions"]):
            layer = _Interaction(irreps, self.irreps_sh, hidden, n_species, cfg["num_radial"],
                                 cfg["radial_hidden"], residual=t > 0)
            layers.append(layer)
            irreps = layer.irreps_out
        self.interactions = nn.ModuleList(layers)
        self.irreps_x = irreps

        pair_out: dict[str, o3.Irreps] = {}
        self._pair_keys: dict[tuple[int, int], str] = {}
        for a, za in enumerate(species):
            for b, zb in enumerate(species):
                key = f"{a}_{b}"
                pair_out[key] = pair_irreps(self.basis.shells_of(za), self.basis.shells_of(zb))[0]
                self._pair_keys[(a, b)] = key
                self.register_buffer(f"block_map_{key}",
                                     pair_block_map(self.basis.shells_of(za), self.basis.shells_of(zb), nmax))
        self.offsite = _OffsiteHead(self.irreps_x, _hidden_irreps(cfg["head_channels"], cfg["max_l"]),
                                    self.irreps_sh, channels, cfg["num_radial"], cfg["radial_hidden"], pair_out)
        self.onsite = nn.ModuleDict({str(a): _IrrepsLinear(self.irreps_x, pair_out[f"{a}_{a}"])
                                     for a in range(n_species)})
        self.register_buffer("onsite_offset", torch.zeros(n_species, nmax, nmax, dtype=torch.float64))
        self.register_buffer("cutoff_values",
                             torch.tensor([cfg["cutoffs"][r] for r in RELATIONS], dtype=torch.float64))
        if cfg["radial_decay"] is not None:
            self.log_decay = nn.Parameter(torch.log(torch.tensor([cfg["radial_decay"][r] for r in RELATIONS],
                                                                 dtype=torch.float64)))
            self.register_buffer("decay_origin_values",
                                 torch.tensor([cfg["decay_origin"][r] for r in RELATIONS], dtype=torch.float64))
        else:
            self.log_decay = None
        self.register_buffer("message_cutoff_values",
                             torch.tensor([cfg["message_cutoffs"][r] for r in RELATIONS], dtype=torch.float64))
        self.register_buffer("avg_neighbors",
                             torch.tensor([cfg["avg_num_neighbors"][r] for r in RELATIONS], dtype=torch.float64))
        self.to(device=device, dtype=dtype)

    # ------------------------------------------------------------------------ properties
    @property
    def config(self) -> dict[str, Any]:
        """The normalised configuration (a copy)."""
        return copy.deepcopy(self._config)

    @property
    def species(self) -> list[int]:
        """Atomic numbers the model knows, sorted."""
        return list(self._species)

    @property
    def cutoffs(self) -> dict[str, float]:
        """Per-relation cutoffs (Å)."""
        return dict(self._config["cutoffs"])

    def count_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    # ------------------------------------------------------------------------ constants
    @torch.no_grad()
    def _refresh_constants(self) -> None:
        """Recompute e3nn's Wigner-3j buffers and the block maps from float64 in the model dtype."""
        params = list(self.parameters())
        if not params:
            return
        device = params[0].device
        w3j = re.compile(r"_w3j_(\d+)_(\d+)_(\d+)$")
        for name, buf in self.named_buffers():
            m = w3j.search(name)
            if m and buf.is_floating_point():
                l1, l2, l3 = (int(x) for x in m.groups())
                buf.copy_(o3.wigner_3j(l1, l2, l3, dtype=torch.float64).to(device=device, dtype=buf.dtype))
        for (a, b), key in getattr(self, "_pair_keys", {}).items():
            buf = getattr(self, f"block_map_{key}")
            za, zb = self._species[a], self._species[b]
            buf.copy_(pair_block_map(self.basis.shells_of(za), self.basis.shells_of(zb), self.nmax)
                      .to(device=device, dtype=buf.dtype))

    @torch.no_grad()
    def set_onsite_offset(self, offsets: Mapping[int, np.ndarray]) -> None:
        """Set the fixed on-site offset per species from mean on-site blocks (eV).

        Only the rotation-invariant part is kept: for every pair of shells with equal ``l`` the multiple
        of the identity ``(tr B / (2l + 1)) 1`` (other parts of a mean block are not invariant).

        Parameters
        ----------
        offsets
            ``{atomic number: mean on-site block (n, n)}`` in e3nn order, eV.
        """
        out = torch.zeros_like(self.onsite_offset, dtype=torch.float64)
        for z, block in offsets.items():
            a = self._species_index([int(z)])[0]
            shells = self.basis.shells_of(int(z))
            off = np.concatenate([[0], np.cumsum([2 * l + 1 for l in shells])])
            block = np.asarray(block, dtype=np.float64)
            for p, lp in enumerate(shells):
                for q, lq in enumerate(shells):
                    if lp != lq:
                        continue
                    sub = block[off[p] : off[p + 1], off[q] : off[q + 1]]
                    val = np.trace(sub) / (2 * lp + 1)
                    out[a, off[p] : off[p + 1], off[q] : off[q + 1]] = torch.eye(2 * lp + 1) * val
        self.onsite_offset.copy_(out.to(self.onsite_offset))

    def _species_index(self, numbers: Sequence[int]) -> np.ndarray:
        table = {z: k for k, z in enumerate(self._species)}
        out = np.empty(len(numbers), dtype=np.int64)
        for n, z in enumerate(numbers):
            try:
                out[n] = table[int(z)]
            except KeyError:
                known = ", ".join(chemical_symbols[s] for s in self._species)
                raise ValueError(
                    f"element {chemical_symbols[int(z)]} (atom {n}) is not among the model's species ({known})"
                ) from None
        return out

    # ------------------------------------------------------------------------ features
    def _edge_features(self, src, dst, vectors, rel, cutoffs: torch.Tensor) -> _EdgeChunk:
        r = torch.linalg.norm(vectors, dim=1)
        rc = cutoffs[rel]
        if self._config["radial_basis"] == "gaussian":
            rbf = _gaussian(r, rc, self._config["num_radial"])
        else:
            rbf = _bessel(r, rc, self._config["num_radial"])
        env = _envelope(r / rc, self._config["envelope_exponent"])
        masks = []
        for k in range(len(RELATIONS)):
            m = rel == k
            masks.append(m if bool(m.any()) else None)
        return _EdgeChunk(src, dst, rel, masks, r, rbf, self.sh(vectors), env)

    def node_features(self, graph: "ElectronGraph", edge_chunk: int | None = None) -> torch.Tensor:
        """Final node features ``x`` (N, dim irreps_x) after all interaction layers."""
        x = self.embedding(graph.species)
        vectors = graph.edge_vectors()
        rc = self.message_cutoff_values[graph.relation]
        keep = torch.nonzero(torch.linalg.norm(vectors, dim=1) < rc).squeeze(1)
        stream = _EdgeStream(self, graph.edge_index[0, keep], graph.edge_index[1, keep], vectors[keep],
                             graph.relation[keep], edge_chunk, self.message_cutoff_values)
        avg = self.avg_neighbors
        for layer in self.interactions:
            x = layer(x, graph.species, stream, avg)
        return x

    def _offsite(self, x: torch.Tensor, xt: torch.Tensor, species: torch.Tensor, e: _EdgeChunk) -> torch.Tensor:
        """Symmetrised off-site blocks ``½[F(i, j, r) + F(j, i, −r)^T]`` of canonical edges, (chunk, nmax, nmax)."""
        head = self.offsite
        ns = head.n_scalars
        si, sj = x[e.src, :ns], x[e.dst, :ns]
        feats = torch.cat([e.rbf, si + sj, si * sj], dim=1)
        w = x.new_empty(len(e.src), head.tp.weight_numel)
        for r in range(len(RELATIONS)):
            if e.rel_masks[r] is not None:
                w[e.rel_masks[r]] = head.radial[r](feats[e.rel_masks[r]])
        xi, xj = xt[e.src], xt[e.dst]
        mid = (head.fused_tp if head.use_fused_tp else head.tp)(torch.cat([xi + xj, xi - xj], dim=1), e.sh, w)
        mid_swap = mid * head.swap_sign
        nmax, nsp = self.nmax, len(self._species)
        out = x.new_zeros(len(e.src), nmax, nmax)
        pair = species[e.src] * nsp + species[e.dst]
        for r in range(len(RELATIONS)):
            if e.rel_masks[r] is None:
                continue
            for (a, b), key in self._pair_keys.items():
                m = e.rel_masks[r] & (pair == a * nsp + b)
                if not bool(m.any()):
                    continue
                key_ba = self._pair_keys[(b, a)]
                fwd = (head.readout[f"{r}_{key}"](mid[m]) @ getattr(self, f"block_map_{key}")).view(-1, nmax, nmax)
                bwd = (head.readout[f"{r}_{key_ba}"](mid_swap[m]) @ getattr(self, f"block_map_{key_ba}")
                       ).view(-1, nmax, nmax)
                out[m] = 0.5 * (fwd + bwd.transpose(1, 2))
        radial = e.env * self._config["block_scale"]
        if self.log_decay is not None:
            lam = torch.exp(self.log_decay)[e.rel]
            radial = radial * torch.exp(-(e.r - self.decay_origin_values[e.rel]) / lam)
        return out * radial[:, None, None]

    def forward(self, graph: "ElectronGraph", edge_chunk: int | None = None) -> dict[str, torch.Tensor]:
        """Predict on-site and off-site blocks.

        Parameters
        ----------
        graph
            :class:`ElectronGraph` (one structure or a batch from :func:`collate_electron_graphs`).
        edge_chunk
            Process at most this many edges at a time (bounded memory for large systems); None = all.

        Returns
        -------
        dict
            ``"onsite"``: (N, nmax, nmax) blocks ``H_ii(0)``; ``"edges"``: (E, nmax, nmax) blocks
            ``H_ij(R)`` of every directed graph edge (exactly ``edges[reverse] = edges^T``), eV, model dtype.
        """
        x = self.node_features(graph, edge_chunk)
        species = graph.species
        # on-site
        n = x.shape[0]
        onsite = x.new_zeros(n, self.nmax * self.nmax)
        for a in range(len(self._species)):
            m = species == a
            if bool(m.any()):
                onsite[m] = self.onsite[str(a)](x[m]) @ getattr(self, f"block_map_{a}_{a}")
        onsite = onsite.view(n, self.nmax, self.nmax) * self._config["block_scale"]
        onsite = 0.5 * (onsite + onsite.transpose(1, 2)) + self.onsite_offset[species]
        # off-site: canonical edges only, symmetrised over both directions
        canon = graph.canonical
        rev = graph.reverse[canon]
        vec = graph.edge_vectors()[canon]
        stream = _EdgeStream(self, graph.edge_index[0, canon], graph.edge_index[1, canon], vec,
                             graph.relation[canon], edge_chunk, self.cutoff_values)
        xt = self.offsite.reduce(x)
        parts = [self._offsite(x, xt, species, e) for e in stream]
        canon_blocks = torch.cat(parts) if parts else x.new_zeros(0, self.nmax, self.nmax)
        edges = x.new_zeros(graph.edge_index.shape[1], self.nmax, self.nmax)
        edges[canon] = canon_blocks
        edges[rev] = canon_blocks.transpose(1, 2)
        return {"onsite": onsite, "edges": edges}

    # ------------------------------------------------------------------------ convenience
    def graph(self, atoms: Atoms) -> "ElectronGraph":
        """:func:`atoms_to_electron_graph` with this model's cutoffs and species."""
        return atoms_to_electron_graph(atoms, self._config)

    @torch.no_grad()
    def predict_hamiltonian(self, atoms: Atoms, edge_chunk: int | None = 200_000) -> TBHamiltonian:
        """Predicted :class:`~mlepi_ase.tb.TBHamiltonian` of ``atoms`` (float64 blocks, eV).

        On-site blocks ``(i, i, 0)`` come first, then one block per directed graph edge (both halves of
        every pair), the layout of the reference Slater–Koster models.
        """
        g = self.graph(atoms)
        return self.hamiltonian_from_graph(g, self(g.to(self.device, self.dtype), edge_chunk=edge_chunk))

    def hamiltonian_from_graph(self, graph: "ElectronGraph", out: Mapping[str, torch.Tensor]) -> TBHamiltonian:
        """Assemble a :class:`TBHamiltonian` from a single-structure graph and the model output."""
        if graph.atoms_info is None:
            raise ValueError("the graph carries no structure information (a collated batch?)")
        info = graph.atoms_info
        n = graph.n_atoms
        pairs = np.concatenate([np.stack([np.arange(n), np.arange(n)], axis=1),
                                graph.edge_index.cpu().numpy().T])
        shifts = np.concatenate([np.zeros((n, 3), dtype=np.int64), info["shifts"]])
        blocks = torch.cat([out["onsite"], out["edges"]]).detach().to("cpu", torch.float64).numpy()
        return TBHamiltonian(cell=info["cell"], positions=info["positions"], numbers=info["numbers"],
                             basis=self.basis, pairs=pairs, shifts=shifts, blocks=blocks, pbc=info["pbc"],
                             layers=info["layers"])


# ------------------------------------------------------------------------------------ graphs
@dataclass
class ElectronGraph:
    """Model input for one structure (or a batch of structures).

    Attributes
    ----------
    species : torch.Tensor, shape (N,), int64
        Index of each atom's element in the model's species list.
    positions : torch.Tensor, shape (N, 3), Å
    edge_index : torch.Tensor, shape (2, E), int64
        Directed edges ``(i, j)``, full list sorted by (i, j, R) within each structure.
    shift_vectors : torch.Tensor, shape (E, 3), Å
        ``R · cell`` of every edge, so the edge vector is ``positions[j] + shift_vectors − positions[i]``.
    relation : torch.Tensor, shape (E,), int64
        0 intra, 1 inter.
    reverse : torch.Tensor, shape (E,), int64
        Index of the edge ``(j, i, −R)``.
    canonical : torch.Tensor, shape (E/2,), int64
        Edges with ``index < reverse`` (one per pair).
    n_atoms : int
    atoms_info : dict or None
        ``cell, positions, numbers, pbc, layers, shifts`` (numpy) of a single structure.
    """

    species: torch.Tensor
    positions: torch.Tensor
    edge_index: torch.Tensor
    shift_vectors: torch.Tensor
    relation: torch.Tensor
    reverse: torch.Tensor
    canonical: torch.Tensor
    n_atoms: int
    atoms_info: dict | None = None

    def edge_vectors(self) -> torch.Tensor:
        """``r_j + R·cell − r_i`` (E, 3), Å."""
        return self.positions[self.edge_index[1]] + self.shift_vectors - self.positions[self.edge_index[0]]

    @property
    def n_edges(self) -> int:
        return int(self.edge_index.shape[1])

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "ElectronGraph":
        """Copy with float tensors in ``dtype`` and all tensors on ``device``."""

        def f(t):
            return t.to(device=device, dtype=dtype)

        def i(t):
            return t.to(device=device)

        return ElectronGraph(i(self.species), f(self.positions), i(self.edge_index), f(self.shift_vectors),
                             i(self.relation), i(self.reverse), i(self.canonical), self.n_atoms, self.atoms_info)


def atoms_to_electron_graph(atoms: Atoms, config: Mapping[str, Any]) -> ElectronGraph:
    """Heterogeneous graph of ``atoms`` for a model with configuration ``config``.

    Parameters
    ----------
    atoms
        Structure (layers from ``arrays["layer"]``, detected when absent).
    config
        Model configuration (``cutoffs``, ``basis``/``species``).

    Returns
    -------
    ElectronGraph
        float64 tensors on the CPU (cast with :meth:`ElectronGraph.to`).
    """
    cfg = normalize_electron_config(config) if "species" not in config else config
    species = list(cfg["species"])
    table = {z: k for k, z in enumerate(species)}
    numbers = atoms.get_atomic_numbers()
    bad = [n for n, z in enumerate(numbers) if int(z) not in table]
    if bad:
        known = ", ".join(chemical_symbols[z] for z in species)
        raise ValueError(f"element {chemical_symbols[int(numbers[bad[0]])]} (atom {bad[0]}) is not among "
                         f"the model's species ({known}); {len(bad)} such atoms")
    g = build_graph(atoms, cfg["cutoffs"])
    rev = g.reverse_edges()
    idx = np.arange(g.n_edges)
    cell = np.array(atoms.cell, dtype=np.float64)
    info = {"cell": cell, "positions": atoms.get_positions(), "numbers": numbers.astype(np.int64),
            "pbc": np.array(atoms.pbc, dtype=bool), "layers": g.layers, "shifts": g.shifts}
    return ElectronGraph(
        species=torch.as_tensor(np.array([table[int(z)] for z in numbers], dtype=np.int64)),
        positions=torch.as_tensor(atoms.get_positions(), dtype=torch.float64),
        edge_index=torch.as_tensor(g.edge_index, dtype=torch.int64),
        shift_vectors=torch.as_tensor(g.shifts.astype(np.float64) @ cell, dtype=torch.float64),
        relation=torch.as_tensor(g.relation, dtype=torch.int64),
        reverse=torch.as_tensor(rev, dtype=torch.int64),
        canonical=torch.as_tensor(idx[idx < rev], dtype=torch.int64),
        n_atoms=len(atoms),
        atoms_info=info,
    )


def collate_electron_graphs(graphs: Sequence[ElectronGraph]) -> ElectronGraph:
    """Concatenate graphs into one disconnected batch graph (node and edge indices offset)."""
    if len(graphs) == 1:
        return graphs[0]
    node_off, edge_off = 0, 0
    parts: dict[str, list] = {k: [] for k in ("species", "positions", "edge_index", "shift_vectors",
                                               "relation", "reverse", "canonical")}
    for g in graphs:
        parts["species"].append(g.species)
        parts["positions"].append(g.positions)
        parts["edge_index"].append(g.edge_index + node_off)
        parts["shift_vectors"].append(g.shift_vectors)
        parts["relation"].append(g.relation)
        parts["reverse"].append(g.reverse + edge_off)
        parts["canonical"].append(g.canonical + edge_off)
        node_off += g.n_atoms
        edge_off += g.n_edges
    return ElectronGraph(
        species=torch.cat(parts["species"]), positions=torch.cat(parts["positions"]),
        edge_index=torch.cat(parts["edge_index"], dim=1), shift_vectors=torch.cat(parts["shift_vectors"]),
        relation=torch.cat(parts["relation"]), reverse=torch.cat(parts["reverse"]),
        canonical=torch.cat(parts["canonical"]), n_atoms=node_off, atoms_info=None,
    )


# ------------------------------------------------------------------------------ model files


def save_electron_model(model: HedgeNetElectron, path: str | os.PathLike,
                        metadata: Mapping[str, Any] | None = None) -> Path:
    """Write a model file (atomically): config + state_dict + metadata.

    Parameters
    ----------
    model
        The model.
    path
        Target file (``.pt``).
    metadata
        Extra JSON-like entries (training information, metrics); the cutoffs, species, basis, units,
        dtype and package/library versions are always recorded.

    Returns
    -------
    pathlib.Path
    """
    import e3nn

    path = Path(path)
    meta = {
        "cutoffs": model.cutoffs,
        "species": [chemical_symbols[z] for z in model.species],
        "basis": model.basis.to_dict(),
        "orbital_order": "e3nn (p = x, y, z)",
        "units": {"energy": "eV", "length": "Angstrom"},
        "dtype": str(model.dtype).replace("torch.", ""),
        "mlepi_ase_version": __version__,
        "torch_version": str(torch.__version__),
        "e3nn_version": str(e3nn.__version__),
        "n_parameters": model.count_parameters(),
    }
    if metadata:
        meta.update(copy.deepcopy(dict(metadata)))
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {"format": ELECTRON_MODEL_FORMAT, "format_version": _FORMAT_VERSION,
               "config": to_plain(model.config), "state_dict": state, "metadata": to_plain(meta)}
    return atomic_torch_save(payload, path)


_LEGACY_CONFIG_VALUES: dict[str, Any] = {"radial_basis": "bessel"}
"""Values of configuration keys that model files written before the key existed were built with (files
without ``radial_basis`` used the Bessel basis); keys missing from a file and not listed here are refused."""


def read_electron_model_file(path: str | os.PathLike) -> dict[str, Any]:
    """Load and validate a model file's dict (``torch.load(weights_only=True)``) without building the model.

    Raises ``FileNotFoundError`` for a missing file and :class:`ElectronModelFileError` for an unsafe, corrupt,
    foreign or too new one.
    """
    return read_model_payload(path, ELECTRON_MODEL_FORMAT, _FORMAT_VERSION, "HedgeNet-Electron",
                              ElectronModelFileError)


def load_electron_model(path: str | os.PathLike, device: torch.device | str = "cpu",
                        dtype: torch.dtype | str | None = None) -> HedgeNetElectron:
    """Build a :class:`HedgeNetElectron` from a model file.

    Parameters
    ----------
    path
        File written by :func:`save_electron_model`.
    device
        Torch device.
    dtype
        float32/float64; default: the dtype the model was saved in.
    """
    payload = read_electron_model_file(path)
    config = {**_LEGACY_CONFIG_VALUES, **payload["config"]}
    missing = sorted(set(DEFAULT_ELECTRON_CONFIG) - set(config))
    if missing:
        # a default filled in for a key the file never had could silently change the model's function
        raise ElectronModelFileError(f"{path}: the stored configuration lacks {missing} (written by an older "
                                     f"version of mlepi_ase); retrain or add the keys explicitly")
    dt = as_dtype(dtype if dtype is not None else payload["metadata"].get("dtype", "float32"))
    model = HedgeNetElectron(config, dtype=dt, device=device)
    try:
        model.load_state_dict({k: v.to(device=device) for k, v in payload["state_dict"].items()})
    except RuntimeError as exc:
        raise ElectronModelFileError(f"{path}: state_dict does not match its config: {exc}") from exc
    model.to(dtype=dt)
    model.metadata = payload["metadata"]
    model.eval()
    return model
