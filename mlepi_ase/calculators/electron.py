"""Hamiltonian calculator backed by a trained HedgeNet-Electron model.

:class:`HedgeNetElectronCalculator` implements the :class:`~mlepi_ase.tb.HamiltonianCalculator`
interface: ``get_hamiltonian(atoms)`` returns the same :class:`~mlepi_ase.tb.TBHamiltonian` type as the
reference Slater–Koster models and the DeepH reader (on-site blocks ``(i, i, 0)`` first, then one block
per directed edge of the model's heterogeneous graph; e3nn orbital order; eV; float64 blocks), so H(k),
the eigen-solvers, unfolding and the observables consume it unchanged.

Large systems: the graph is built once (vesin cell lists, linear scaling); the model then streams the
edges in chunks of ``edge_chunk`` for message passing and for the block heads under ``torch.no_grad``,
so the working memory of the network is bounded by the chunk size (the result, ``B × n × n`` float64
blocks, is the only O(N) array besides the graph).  For the 11,164-atom twisted bilayer with 6.5 Å
cutoffs (about 0.9 M directed edges) see ``benchmarks/bench_tbg_electron.py``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import torch
from ase import Atoms

from ..models.electron import HedgeNetElectron, load_electron_model
from ..orbitals import OrbitalBasis
from ..structures import check_positions
from ..tb import HamiltonianCalculator, TBHamiltonian

__all__ = ["HedgeNetElectronCalculator"]


class HedgeNetElectronCalculator(HamiltonianCalculator):
    """Tight-binding Hamiltonians predicted by HedgeNet-Electron.

    Parameters
    ----------
    model
        Path of a model file (:func:`mlepi_ase.models.electron.save_electron_model`) or a
        :class:`~mlepi_ase.models.electron.HedgeNetElectron` instance.
    device
        Torch device (``"cpu"``, ``"cuda"``).
    dtype
        Inference precision (``"float32"``/``"float64"`` or a torch dtype); default: the model file's.
        The returned blocks are always float64.
    edge_chunk
        Edges processed at a time (bounds the network's working memory; about 1 kB per edge in float32
        for the shipped model).  None processes all edges at once.

    Attributes
    ----------
    basis : OrbitalBasis
        The model's orbital basis (e3nn order within shells).
    model : HedgeNetElectron
    timings : dict
        Wall times (s) of the last call: ``graph``, ``model``, ``assemble``.

    Examples
    --------
    >>> calc = HedgeNetElectronCalculator("data/hedgenet_electron/model.pt")  # doctest: +SKIP
    >>> h = calc.get_hamiltonian(bilayer_graphene("AB", size=(6, 6)))       # doctest: +SKIP
    >>> h.eigh([[0, 0, 0]])                                                  # doctest: +SKIP
    """

    def __init__(self, model: str | os.PathLike | HedgeNetElectron, device: str | torch.device = "cpu",
                 dtype: str | torch.dtype | None = None, edge_chunk: int | None = 100_000):
        if isinstance(model, HedgeNetElectron):
            self.model = model.to(device=device)
            if dtype is not None:
                from ..models._base import as_dtype

                self.model = self.model.to(dtype=as_dtype(dtype))
            self.model_path = None
        else:
            path = Path(model)
            self.model = load_electron_model(path, device=device, dtype=dtype)
            self.model_path = str(path)
        self.model.eval()
        if edge_chunk is not None and int(edge_chunk) < 1:
            raise ValueError(f"edge_chunk must be a positive number of edges or None, got {edge_chunk!r}")
        self.edge_chunk = None if edge_chunk is None else int(edge_chunk)
        self.basis: OrbitalBasis = self.model.basis
        self.timings: dict[str, float] = {}

    @property
    def cutoffs(self) -> dict[str, float]:
        """Per-relation cutoffs (Å) of the predicted blocks."""
        return self.model.cutoffs

    @property
    def metadata(self) -> dict[str, Any]:
        """The model file's metadata (empty for an in-memory model)."""
        return dict(getattr(self.model, "metadata", {}) or {})

    def get_hamiltonian(self, atoms: Atoms) -> TBHamiltonian:
        """Predicted tight-binding Hamiltonian of ``atoms``.

        Parameters
        ----------
        atoms
            Structure made of the model's species; layers from ``arrays["layer"]`` (detected when
            absent, see :func:`mlepi_ase.structures.get_layers`).

        Returns
        -------
        TBHamiltonian
            float64 blocks (eV), orthogonal basis, both halves of every pair (exactly Hermitian).
        """
        if not isinstance(atoms, Atoms):
            raise TypeError(f"get_hamiltonian needs an ase.Atoms, got {type(atoms).__name__}")
        check_positions(atoms)
        t0 = time.perf_counter()
        graph = self.model.graph(atoms)
        t1 = time.perf_counter()
        with torch.no_grad():
            out = self.model(graph.to(self.model.device, self.model.dtype), edge_chunk=self.edge_chunk)
        t2 = time.perf_counter()
        h = self.model.hamiltonian_from_graph(graph, out)
        del out
        t3 = time.perf_counter()
        self.timings = {"graph": t1 - t0, "model": t2 - t1, "assemble": t3 - t2, "n_edges": graph.n_edges}
        return h

    def __repr__(self) -> str:
        src = self.model_path or "in-memory model"
        return (f"HedgeNetElectronCalculator({src!r}, device={str(self.model.device)!r}, "
                f"dtype={str(self.model.dtype).replace('torch.', '')!r}, edge_chunk={self.edge_chunk})")
