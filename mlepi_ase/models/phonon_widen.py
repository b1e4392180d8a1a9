r"""Function-preserving widening of a trained HedgeNet-Phonon (more channels or a wider readout MLP, same
predictions).

Why
---
A wider network has more capacity, but trained from scratch it needs as many optimiser steps as the
narrow one did before it is any good.  Widening a trained network so that it computes *exactly* the
same energy (Net2WiderNet, Chen, Goodfellow & Shlens, ICLR 2016) lets fine-tuning start from the
narrow network's accuracy and use the added channels from there.

How
---
Every trainable tensor of HedgeNet-Phonon is channel-structured: e3nn ``Linear`` maps and internal-
weight tensor products hold one weight block per instruction (path) of shape ``(mul_in, mul_out)``
or ``(mul_1, mul_2, mul_out)``; the radial MLPs' last layer produces one weight per (path, channel)
of the channel-wise (``uvu``) convolution; MACE's symmetric contraction keeps one weight per channel.
A wider model with ``C' > C`` channels is built (its fresh random weights initialise everything new),
and then, block by block,

* the old block is copied into the top-left corner, multiplied by ``w_old / w_new``, the ratio of the
  two blocks' e3nn path normalisations (``1/sqrt(fan-in)``: fan-in grows with the channel count, so
  the copied weights grow by ``sqrt(C'/C)`` where it does);
* the weights from new input channels to old output channels are set to zero,

so the old channels see exactly the old inputs and the new channels feed into nothing at first:
energy, forces and stress are unchanged (to round-off; checked by the tests).  The zero blocks get
non-zero gradients (the new channels' features are not zero), so the added capacity is used as soon
as training starts.  Channel-wise weights (symmetric contraction, convolution) need no zeros: channel
*u* only ever meets channel *u* there.

The hidden layer of the last (non-linear) readout, ``readout_mlp`` scalars, widens the same way: its
first map gets new output units (random weights into them), its second map new input rows that are set
to zero, so the new hidden units add nothing until training moves those rows.  That readout is the only
place where the network is non-linear in its invariant features (the products before it are polynomials),
which is why its width was worth a try (``data/hedgenet_phonon/experiments/readout_width/``: no gain in a
fine-tuning of the shipped model).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .phonon import HedgeNetPhonon, HeteroInteractionBlock, normalize_phonon_config
from .._e3nn import o3
from mace.modules.symmetric_contraction import SymmetricContraction

__all__ = ["widen_phonon_model"]


def widen_phonon_model(model: HedgeNetPhonon, num_channels: int | None = None, seed: int = 0,
                       readout_mlp: int | None = None) -> HedgeNetPhonon:
    """A copy of ``model`` with more channels and/or a wider readout MLP that predicts the same energies and forces.

    Parameters
    ----------
    model
        Trained model (any dtype/device; left unchanged).
    num_channels
        New channel count, at least ``model.config["num_channels"]``; None keeps it.
    seed
        Seed of the random initial weights of everything new (they only matter once training starts).
    readout_mlp
        New number of hidden scalars of the last readout, at least ``model.config["readout_mlp"]``;
        None keeps it.

    Returns
    -------
    HedgeNetPhonon
        Same dtype and device as ``model``, in the same train/eval mode.

    Raises
    ------
    ValueError
        If ``num_channels`` or ``readout_mlp`` is smaller than the model's.
    """
    old_cfg = model.config
    sizes = {"num_channels": num_channels, "readout_mlp": readout_mlp}
    for key, new_size in sizes.items():
        if new_size is not None and int(new_size) < int(old_cfg[key]):
            raise ValueError(f"cannot narrow a model: it has {key} = {old_cfg[key]}, {new_size} requested")
    cfg = normalize_phonon_config(old_cfg, **{k: int(v) for k, v in sizes.items() if v is not None})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        wide = HedgeNetPhonon(cfg, dtype=model.dtype, device=model.device)
    old_modules = dict(model.named_modules())
    done: set[int] = set()  # ids of the parameters already written
    with torch.no_grad():
        for name, new in wide.named_modules():
            old = old_modules[name]
            if isinstance(new, HeteroInteractionBlock):
                for old_net, new_net in zip(old.edge_networks, new.edge_networks, strict=True):
                    _widen_edge_network(old_net, new_net, old.conv_tp, new.conv_tp)
                    done.update(id(p) for p in new_net.parameters())
            elif isinstance(new, SymmetricContraction):
                for p_name, p_new in new.named_parameters():
                    p_old = old.get_parameter(p_name)
                    p_new[..., :p_old.shape[-1]] = p_old  # (elements, params, channels): channel-wise
                    done.add(id(p_new))
            elif isinstance(new, (o3.Linear, o3.TensorProduct)) and isinstance(
                    getattr(new, "weight", None), torch.nn.Parameter):
                _widen_blocks(old, new)
                done.add(id(new.weight))
    for p_name, p_new in wide.named_parameters():
        if id(p_new) in done:
            continue
        p_old = model.get_parameter(p_name)
        if p_old.shape != p_new.shape:
            raise RuntimeError(f"widen_phonon_model does not know how to widen parameter {p_name!r}")
        with torch.no_grad():
            p_new.copy_(p_old)
    return wide.train(model.training)


def _blocks(module: Any) -> list[tuple[Any, int, tuple[int, ...]]]:
    """(instruction, offset into the flat weight, block shape) of each weighted instruction."""
    out, offset = [], 0
    for ins in module.instructions:
        if getattr(ins, "has_weight", True):
            shape = tuple(int(s) for s in ins.path_shape)
            out.append((ins, offset, shape))
            offset += math.prod(shape)
    return out


def _corner(shape: tuple[int, ...]) -> tuple[slice, ...]:
    return tuple(slice(0, s) for s in shape)


def _widen_blocks(old: Any, new: Any) -> None:
    """Copy an e3nn ``Linear`` / internal-weight ``TensorProduct`` into its wider twin (see module doc)."""
    old_w, new_w = old.weight, new.weight
    for (ins_o, off_o, shp_o), (ins_n, off_n, shp_n) in zip(_blocks(old), _blocks(new), strict=True):
        block = new_w[off_n:off_n + math.prod(shp_n)].view(shp_n)
        scale = float(ins_o.path_weight) / float(ins_n.path_weight)
        block[_corner(shp_o)] = old_w[off_o:off_o + math.prod(shp_o)].view(shp_o) * scale
        mode = getattr(ins_n, "connection_mode", "uvw")
        if mode == "uvu":
            continue  # channel-wise: no mixing to cut
        if mode != "uvw":
            raise RuntimeError(f"widen_phonon_model: unsupported connection mode {mode!r}")
        # inputs are every axis but the last; new inputs must not reach old outputs
        n_out_old = shp_o[-1]
        for axis, n_in_old in enumerate(shp_o[:-1]):
            index: list[slice] = [slice(None)] * len(shp_n)
            index[axis] = slice(n_in_old, None)
            index[-1] = slice(0, n_out_old)
            block[tuple(index)] = 0.0


def _widen_edge_network(old_net: Any, new_net: Any, old_tp: Any, new_tp: Any) -> None:
    """Copy a radial MLP whose last layer gives the weights of the channel-wise convolution ``tp``."""
    layers_old, layers_new = list(old_net), list(new_net)
    for lo, ln in zip(layers_old[:-1], layers_new[:-1], strict=True):
        ln.weight.copy_(lo.weight)  # hidden layers do not depend on the channel count
    w_old, w_new = layers_old[-1].weight, layers_new[-1].weight  # (hidden, tp.weight_numel)
    for (ins_o, off_o, shp_o), (ins_n, off_n, shp_n) in zip(_blocks(old_tp), _blocks(new_tp), strict=True):
        scale = float(ins_o.path_weight) / float(ins_n.path_weight)
        cols_new = w_new[:, off_n:off_n + math.prod(shp_n)].view(-1, *shp_n)
        cols_new[(slice(None), *_corner(shp_o))] = w_old[:, off_o:off_o + math.prod(shp_o)].view(-1, *shp_o) * scale
