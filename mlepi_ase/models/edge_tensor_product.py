r"""A fused form of MACE's edge tensor product (``uvu`` with per-edge weights), same numbers, less work.

What it computes
----------------
MACE's interaction layer multiplies every edge's sender features :math:`h_{e,u,a}` (channel *u*,
component *a* of an irrep of degree :math:`l_1`) with the edge's spherical harmonics
:math:`Y_{e,j}` (one copy of each degree :math:`l_2`) and weights the result per edge, channel and
path with the radial network's output :math:`w_{e,p,u}`:

.. math::

    m_{e,u,k}^{(p)} = w_{e,p,u}\, \alpha_p \sum_{a,j} C^{(l_1 l_2 l_3)}_{a j k}\, h_{e,u,a}\, Y_{e,j},

one output block per path :math:`p = (l_1, l_2 \to l_3)`, with the Wigner-3j symbols :math:`C` and the
path normalisation :math:`\alpha_p` of e3nn's ``TensorProduct`` (``connection_mode="uvu"``,
``shared_weights=False``).  e3nn evaluates each path on its own (outer products
:math:`h \otimes Y` per path, then an einsum with :math:`C`, then slices and concatenations); on a
CPU its autograd graph — differentiated twice in training, once for the forces and once for the
loss — spends most of its time allocating, zero-filling and copying edge-sized tensors.

How it is fused
---------------
All paths that read the same input block :math:`l_1` share one contraction.  With the spherical
harmonics folded into the coefficients first,

.. math::

    M_{e,a,(p,k)} = \sum_j Y_{e,j}\, \alpha_p C^{(p)}_{a j k}
    \qquad\text{(one matrix product, } (E, D_2) \times (D_2, d_1 K)\text{)},

the messages of every path of that block are one batched product over the edge index,
:math:`m_{e,(p,k),u} = w_{e,p(k),u} \sum_a M_{e,a,(p,k)} h_{e,u,a}`, laid out components before channels
(for :math:`l_1 = 0` the weights multiply the scalar features first and the components come last, a
broadcast product that keeps nothing of the messages' size for the backward pass).  Inside a group the
paths are ordered by output degree :math:`l_3`; the paths of one :math:`l_3` form a block, a contiguous
run of rows of the product, which its weights multiply by broadcasting over the block's components —
no edge-sized copy of the weights is made.  Each block's messages are summed over the edges of every
receiving atom as soon as they are formed (one edge-sized block alive at a time); the per-atom sums are
then joined and put in e3nn's output order (irrep blocks in instruction order, channel-major inside a
block) by one column gather — on atom- rather than edge-sized tensors.  The blocks are cut from the
product with ``split``, whose backward joins their gradients once (``narrow`` would pad each to the
full size).  The coefficients are built in float64 from e3nn's Wigner-3j symbols and the instructions'
path weights and cast to the model dtype, so the result equals e3nn's to round-off (tests compare both,
values and first and second derivatives).

Cost (``benchmarks/bench_edge_tensor_product.py``, one thread of a 2-core CPU machine beside a one-thread
training, shipped model, float32, ``benchmarks/results/edge_tensor_product_cpu.json``, medians of 7
interleaved calls): with the C library's default malloc settings a training step (8 × 64 atoms) is 1.60×
(1.309 → 0.818 s) and an energy + forces call 1.30× / 1.31× / 1.21× faster than with e3nn's product (64 /
576 / 2304 atoms); with freed memory kept in the process (:mod:`mlepi_ase.allocator`, what the ``mlepi``
command does) 1.73× and 1.32× / 1.35× / 1.97× against e3nn's product with the defaults.  One energy +
forces call of 2304 atoms needs 970 MiB beyond the resident memory before it, e3nn's product 1140 MiB
(fresh processes, default malloc).  The previous layout of this module (one product and one edge-sized
copy of the weights per group, all groups' messages alive at once) was as fast with freed memory kept,
slower with the defaults (training step 1.22×, 1.06× at 2304 atoms) and needed 31–41 % more memory than
e3nn's product (float64, 2304 atoms).

The module holds no parameters and no persistent buffers: model files are unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from .._e3nn import o3

__all__ = ["FusedEdgeTensorProduct", "fusable"]


def fusable(tp: Any) -> bool:
    """Whether an e3nn ``TensorProduct`` has the form this module fuses.

    Every instruction ``uvu`` with a weight, weights per call (``shared_weights=False``), every
    second-input irrep with multiplicity 1, every output block written by exactly one instruction.
    """
    if getattr(tp, "internal_weights", True) or getattr(tp, "shared_weights", True):
        return False
    if any(mul != 1 for mul, _ in tp.irreps_in2):
        return False
    outs = [ins.i_out for ins in tp.instructions]
    if sorted(outs) != list(range(len(tp.irreps_out))):
        return False
    return all(ins.connection_mode == "uvu" and ins.has_weight for ins in tp.instructions)


class FusedEdgeTensorProduct(torch.nn.Module):
    """The e3nn ``uvu`` tensor product ``tp(x1, x2, weight)`` of :func:`fusable` form, fused.

    Parameters
    ----------
    tp
        The e3nn ``TensorProduct`` to reproduce (its irreps, instructions and path weights are read;
        it is not kept).

    Notes
    -----
    Call with ``x1`` (E, irreps_in1.dim), ``x2`` (E, irreps_in2.dim) and ``weight`` (E, weight_numel),
    all of one dtype; returns (E, irreps_out.dim), as e3nn's module does.  Internally the paths are
    grouped by the first-input block they read and, inside a group, into blocks of equal output degree;
    a block's messages are laid out as (E, n_b, d3, mul_g) — path, component, channel — and the blocks
    one after the other, group by group; ``output_index`` maps e3nn's columns to that layout.
    """

    def __init__(self, tp: Any) -> None:
        super().__init__()
        if not fusable(tp):
            raise ValueError("tensor product is not of the fusable form (uvu, per-call weights, "
                             "multiplicity-1 second input, one instruction per output block)")
        in1, in2, out = o3.Irreps(tp.irreps_in1), o3.Irreps(tp.irreps_in2), o3.Irreps(tp.irreps_out)
        self.dim_in2 = in2.dim
        slices1, slices2, slices_out = in1.slices(), in2.slices(), out.slices()

        weight_offsets, offset = [], 0  # e3nn: one (mul,) block of weights per path, in instruction order
        for ins in tp.instructions:
            weight_offsets.append(offset)
            offset += in1[ins.i_in1].mul
        if offset != tp.weight_numel:
            raise ValueError(f"weight layout mismatch: {offset} != {tp.weight_numel}")

        # per group (first-input block): (start column in x1, mul, d1, K); inside a group the paths are
        # ordered by output degree l3, and the paths of one l3 form a block: (k0 in the group, paths, d3).
        # Per path: (l1, l2, l3, j0, alpha, k0).
        self._groups: list[tuple[int, int, int, int]] = []
        self._blocks: list[list[tuple[int, int, int]]] = []
        self._paths: list[list[tuple[int, int, int, int, float, int]]] = []
        source = torch.empty(out.dim, dtype=torch.long)
        column = 0  # first column of the current block in the fused layout
        for i1, (mul, ir1) in enumerate(in1):
            group = [(n, ins) for n, ins in enumerate(tp.instructions) if ins.i_in1 == i1]
            if not group:
                continue
            group.sort(key=lambda item: out[item[1].i_out].ir.l)  # stable: instruction order inside an l3
            u = torch.arange(mul)[:, None]
            paths, blocks, k0 = [], [], 0
            for l3 in sorted({out[ins.i_out].ir.l for _, ins in group}):
                block = [(n, ins) for n, ins in group if out[ins.i_out].ir.l == l3]
                d3 = 2 * l3 + 1
                width = len(block) * d3
                m = torch.arange(d3)[None, :]
                weight_cols = []
                for p, (n, ins) in enumerate(block):
                    paths.append((ir1.l, in2[ins.i_in2].ir.l, l3, slices2[ins.i_in2].start, float(ins.path_weight),
                                  k0 + p * d3))
                    # e3nn column: block start + u * d3 + m  <-  fused column: block column + (p * d3 + m) * mul + u
                    source[(slices_out[ins.i_out].start + u * d3 + m).reshape(-1)] = (
                        column + (p * d3 + m) * mul + u).reshape(-1)
                    weight_cols.append(weight_offsets[n] + u[:, 0])  # weight of (path, u): offset + u
                self.register_buffer(f"weight_index_{len(self._groups)}_{len(blocks)}",
                                     torch.cat(weight_cols), persistent=False)
                blocks.append((k0, len(block), d3))
                k0 += width
                column += mul * width
            self._groups.append((slices1[i1].start, mul, ir1.dim, k0))
            self._blocks.append(blocks)
            self._paths.append(paths)
        self.register_buffer("output_index", source, persistent=False)
        for g in range(len(self._groups)):
            self.register_buffer(f"coefficients_{g}", self._coefficients(g, torch.float64), persistent=False)

    def _coefficients(self, g: int, dtype: torch.dtype) -> torch.Tensor:
        """(D2, d1 · K) matrix folding the second input into the paths of group ``g``, in float64 → dtype."""
        _, _, d1, k_total = self._groups[g]
        c = torch.zeros(self.dim_in2, d1, k_total, dtype=torch.float64)
        for l1, l2, l3, j0, alpha, k0 in self._paths[g]:
            w3j = o3.wigner_3j(l1, l2, l3, dtype=torch.float64)  # (d1, d2, d3)
            c[j0:j0 + 2 * l2 + 1, :, k0:k0 + 2 * l3 + 1] = alpha * w3j.permute(1, 0, 2)
        return c.reshape(self.dim_in2, d1 * k_total).to(dtype)

    @torch.no_grad()
    def refresh_constants(self) -> None:
        """Rebuild the coefficients from float64 in the current dtype/device (after a cast)."""
        for g in range(len(self._groups)):
            buf = getattr(self, f"coefficients_{g}")
            buf.copy_(self._coefficients(g, torch.float64).to(device=buf.device, dtype=buf.dtype))

    def _block_messages(self, x1: torch.Tensor, x2: torch.Tensor, weight: torch.Tensor) -> Iterator[torch.Tensor]:
        """Messages of each block of paths, (E, n_b · d3 · mul_g) each (see the class notes), one block at
        a time (a consumer that reduces each block keeps only one alive).

        The per-edge weights multiply each block by broadcasting over the block's components, so no
        edge-sized copy of the weights is made; for a scalar first input (d1 = 1) they multiply the
        features before the components are formed, so that nothing of the messages' size is kept for
        the backward pass either.
        """
        n_edges = x1.shape[0]
        for g, (start, mul, d1, k_total) in enumerate(self._groups):
            blocks = self._blocks[g]
            widths = [n_paths * d3 for _, n_paths, d3 in blocks]
            h = x1.narrow(1, start, mul * d1).reshape(n_edges, mul, d1)
            folded = (x2 @ getattr(self, f"coefficients_{g}")).reshape(n_edges, d1, k_total)
            # components before channels, so that every block is a contiguous run of (K_b, mul) rows;
            # split, not narrow: the blocks' gradients are then joined once, not each padded to full size
            if d1 == 1:
                pieces = folded.transpose(1, 2).split(widths, dim=1)  # (E, K_b, 1) each
            else:
                pieces = torch.bmm(folded.transpose(1, 2), h.transpose(1, 2)).split(widths, dim=1)  # (E, K_b, mul)
            for b, ((_, n_paths, d3), piece) in enumerate(zip(blocks, pieces)):
                w = weight.index_select(1, getattr(self, f"weight_index_{g}_{b}")).reshape(n_edges, n_paths, 1, mul)
                if d1 == 1:  # weighted scalar features (E, n_b, 1, mul) times components (E, n_b, d3, 1)
                    part = (w * h.reshape(n_edges, 1, 1, mul)) * piece.reshape(n_edges, n_paths, d3, 1)
                else:  # messages (E, n_b, d3, mul) times their weights
                    part = piece.reshape(n_edges, n_paths, d3, mul) * w
                yield part.reshape(n_edges, n_paths * d3 * mul)

    def _e3nn_order(self, parts: list[torch.Tensor]) -> torch.Tensor:
        """Join per-block (rows, mul_g · n_b · d3) parts into e3nn's column order, (rows, irreps_out.dim)."""
        joined = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        return joined.index_select(1, self.output_index)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """Messages (E, irreps_out.dim) of sender features ``x1``, harmonics ``x2``, weights ``weight``,
        in e3nn's column order (a drop-in for e3nn's module)."""
        return self._e3nn_order(list(self._block_messages(x1, x2, weight)))

    def scatter_sum(self, x1: torch.Tensor, x2: torch.Tensor, weight: torch.Tensor, receiver: torch.Tensor,
                    n_nodes: int) -> torch.Tensor:
        """Messages summed per receiving node, (n_nodes, irreps_out.dim) in e3nn's column order.

        Equals ``zeros(n_nodes, D).index_add(0, receiver, forward(x1, x2, weight))``, but each block's
        messages are summed on their own as soon as they are formed (one edge-sized block alive at a time)
        and joined and reordered afterwards, on node- rather than edge-sized tensors.
        """
        sums = []
        for m in self._block_messages(x1, x2, weight):
            sums.append(torch.zeros((n_nodes, m.shape[1]), dtype=m.dtype, device=m.device).index_add(0, receiver, m))
            del m  # free the block before the next one is formed
        return self._e3nn_order(sums)
