"""ASE calculator for HedgeNet-Phonon models.

:class:`HedgeNetPhononCalculator` loads a model file (:func:`mlepi_ase.models.phonon.load_phonon_model`,
``torch.load(weights_only=True)``) and returns energy, free energy (equal to the energy: the model has
no electronic entropy), forces (autograd, ``F = −∂E/∂r``), per-atom energies and, for cells periodic in
all three directions, the stress ``σ = V⁻¹ ∂E/∂ε`` in ASE's Voigt order ``(xx, yy, zz, yz, xz, xy)``
(eV/Å³; ``V`` is the full cell volume, vacuum included — the same convention as
:class:`mlepi_ase.reference.ReferenceForceField`).  ASE's result cache is honoured: a property is
recomputed only when the atoms (positions, cell, pbc, numbers or the ``layer`` array) changed.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from ..models._base import as_dtype
from ..models.phonon import HedgeNetPhonon, load_phonon_model
from ..structures import layer_changes

__all__ = ["HedgeNetPhononCalculator"]


class HedgeNetPhononCalculator(Calculator):
    """ASE calculator evaluating a HedgeNet-Phonon model.

    Parameters
    ----------
    model_path
        Model file written by :func:`mlepi_ase.models.phonon.save_phonon_model` (or ``None`` when
        ``model`` is given).
    device
        Torch device (``"cpu"``, ``"cuda"``, ...).
    dtype
        ``"float64"`` (default; use it for finite-difference phonons) or ``"float32"``.
    model
        An in-memory :class:`~mlepi_ase.models.phonon.HedgeNetPhonon` instead of a file; it is moved
        to ``device``/``dtype`` in place (``Module.to``) and put in eval mode.
    **kwargs
        Passed to :class:`ase.calculators.calculator.Calculator`.

    Notes
    -----
    A heterogeneous model needs the layer of every atom: ``atoms.arrays["layer"]``, or flat layers
    that :func:`mlepi_ase.structures.get_layers` can detect (the caller's atoms are not modified).
    """

    implemented_properties = ("energy", "free_energy", "forces", "stress", "energies")

    def __init__(self, model_path: str | os.PathLike | None = None, device: str | torch.device = "cpu",
                 dtype: str | torch.dtype = "float64", model: HedgeNetPhonon | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if (model_path is None) == (model is None):
            raise ValueError("give exactly one of model_path or model")
        self.torch_dtype = as_dtype(dtype)
        self.device = torch.device(device)
        if model is None:
            model = load_phonon_model(model_path, device=self.device, dtype=self.torch_dtype)
            for p in model.parameters():
                p.requires_grad_(False)  # our own copy: no parameter gradients needed
            self.model_path = str(model_path)
        else:
            model = model.to(device=self.device, dtype=self.torch_dtype)  # in place, as torch does
            self.model_path = None
        self.model = model.eval()
        self.n_model_calls = 0
        """Number of model evaluations so far (to check caching)."""

    @property
    def metadata(self) -> dict[str, Any]:
        """The model file's metadata (cutoffs, species, units, package version, training info)."""
        return dict(getattr(self.model, "metadata", {}))

    def check_state(self, atoms: Atoms, tol: float = 1e-15) -> list[str]:
        """ASE's checks plus a change of ``atoms.arrays["layer"]`` (reported as ``"layers"``)."""
        changes = super().check_state(atoms, tol=tol)
        return changes or layer_changes(self.atoms, atoms)

    def calculate(self, atoms: Atoms | None = None, properties: Sequence[str] = ("energy",),
                  system_changes: Sequence[str] = tuple(all_changes)) -> None:
        """Evaluate the requested properties (energy always; forces and stress when asked).

        Raises
        ------
        PropertyNotImplementedError
            ``stress`` for a structure that is not periodic in all three directions.
        ValueError
            Elements unknown to the model, undetectable layers, NaN positions.
        """
        super().calculate(atoms, properties, system_changes)
        props = set(properties)
        want_stress = "stress" in props
        if want_stress and not all(self.atoms.pbc):
            raise PropertyNotImplementedError("stress needs a cell periodic in all three directions")
        want_forces = "forces" in props
        work = self.atoms.copy()  # layer detection must not modify the caller's atoms
        batch = self.model.batch([work])
        with torch.set_grad_enabled(want_forces or want_stress):
            out = self.model(batch, compute_forces=want_forces, compute_stress=want_stress)
        self.n_model_calls += 1
        energy = float(out["energy"][0].detach().cpu())
        self.results["energy"] = energy
        self.results["free_energy"] = energy
        self.results["energies"] = out["node_energy"].detach().cpu().numpy().astype(np.float64)
        if want_forces:
            self.results["forces"] = out["forces"].detach().cpu().numpy().astype(np.float64)
        if want_stress:
            self.results["stress"] = full_3x3_to_voigt_6_stress(
                out["stress"][0].detach().cpu().numpy().astype(np.float64))
