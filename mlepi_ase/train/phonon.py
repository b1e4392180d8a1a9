r"""Training HedgeNet-Phonon on energies, forces and stresses (``mlepi train-phonon config.yaml``).

Loss
----
For a batch of :math:`B` structures with :math:`N_b` atoms each (MACE's weighted loss),

.. math::

    L = w_E \frac1B \sum_b \Big(\frac{E_b - \hat E_b}{N_b}\Big)^2
      + w_F \frac{1}{3N} \sum_{i\alpha} w_{b(i)} (F_{i\alpha} - \hat F_{i\alpha})^2
      + w_\sigma \frac{1}{9B} \sum_{b\alpha\beta} (\sigma_{b\alpha\beta} - \hat\sigma_{b\alpha\beta})^2,

energies in eV, forces in eV/Å, stresses in eV/Å³.  The per-configuration force weights
:math:`w_b` are 1 (``force_weighting: uniform``, MACE's choice) or, with ``force_weighting: relative``,
:math:`w_b = \langle F^2\rangle / (\langle F^2\rangle_b + F_0^2)` — relative force errors, so that
small-displacement configurations, which fix the harmonic force constants and hence the phonon
frequencies, weigh as much as large thermal ones (:math:`F_0` = ``force_weight_floor``).

``force_loss: huber`` replaces the squared force term by Huber's function of the weighted residual
:math:`r = \sqrt{w_b}\,(F - \hat F)`, scaled to match it for small residuals,

.. math::

    \rho_\delta(r) = r^2 \ (|r| \le \delta), \qquad 2\delta|r| - \delta^2 \ (|r| > \delta),

with :math:`\delta` = ``force_loss_delta`` (eV/Å): residuals beyond :math:`\delta` count linearly, as in
the mean absolute error by which the force accuracy is judged, so the few large errors (bent sites of
hot configurations) pull less on the fit of the many typical ones.  ``mse`` (default) is MACE's loss.  Forces
(and stresses) are derivatives of the model energy, so their loss is differentiated through the
autograd graph of the derivative (``create_graph=True``).

Normalisation taken from the training set before training (kept fixed): the isolated-atom energies
:math:`E^0_Z` by least squares of :math:`E_b \approx \sum_Z n_{bZ} E^0_Z`, the scale
:math:`s` = RMS of the force components, and ``avg_num_neighbors`` = mean number of graph edges per atom.

``init_model`` starts from the weights and normalisation of an existing model file instead
(fine-tuning, e.g. with a lower learning rate or another force weighting); with ``widen_channels: C``
that model is first widened to ``C`` channels without changing its predictions
(:func:`mlepi_ase.models.phonon_widen.widen_phonon_model`), so the fine-tuning starts from its accuracy
with more capacity; ``widen_readout: H`` likewise widens the hidden layer of its last readout MLP to ``H``
scalars.

Optimisation: Adam (AMSGrad) with an exponential moving average (EMA) of the weights; the EMA
weights are validated, checkpointed and shipped.  Learning-rate schedule: reduce-on-plateau of the
validation loss (default), exponential or cosine decay per epoch (``cosine`` anneals over ``max_epochs``), or
``cosine_time``: a cosine anneal over the wall-clock budget ``max_time_minutes``, updated every step,

.. math::

    \eta(t) = \eta_\min + \tfrac12 (\eta_0 - \eta_\min)\big(1 + \cos(\pi \min(t/T, 1))\big),

so a run reaches the end of its anneal when its time is up on any machine (a GPU or a 2-core CPU) without
guessing the number of epochs beforehand; a resumed run continues from the elapsed time stored in its
checkpoint.  The price is that two runs on machines of different speed see different schedules.  Early
stopping after ``patience`` epochs without validation improvement, or at ``max_epochs`` /
``max_time_minutes`` (checked after each epoch; with ``cosine_time`` the budget bounds the whole run,
resumes included, otherwise each invocation).  A ``cosine_time`` run stops at the epoch boundary nearest the
end of its budget (:func:`cosine_time_finished`): it does not start an epoch that would spend more than half
its steps past the end of the anneal at ``min_lr``, so it overruns the budget by at most about half an
epoch instead of a whole one at the floor rate.  The model file holds the
epoch with the lowest validation loss (``select_model: lowest_valid_loss``, default) or the last epoch
(``last_epoch``: for a fixed annealing schedule, or when a few outlier configurations dominate the
weighted validation loss so that its minimum is a poor pick).

Checkpoints (``checkpoint.pt`` in the output folder, written atomically every epoch) hold the model,
EMA, optimiser and scheduler states, the epoch, the history and the numpy/torch RNG states, all
loadable with ``torch.load(weights_only=True)``; ``resume`` continues a stopped run exactly (on CPU the
resumed run reproduces the uninterrupted one).  Outputs: the best (EMA) model file, ``history.json``
(per-epoch losses and errors), ``metrics.json`` (errors of the best model on every dataset;
``evaluate_train_set: false`` leaves out the training set, whose evaluation costs about a third of an
epoch) and ``train.log``.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from ase import Atoms
from ase.stress import voigt_6_to_full_3x3_stress

from .._files import atomic_json, atomic_torch_save
from .. import __version__
from . import check_num_threads, check_positive_int
from ..models._base import as_dtype
from ..models.phonon import (
    HedgeNetPhonon,
    PhononGraph,
    atoms_to_graph,
    collate_graphs,
    normalize_phonon_config,
    read_phonon_model_file,
    save_phonon_model,
)
from ..models.phonon_widen import widen_phonon_model
from ..phonon_dataset import REF_ENERGY, REF_FORCES, REF_STRESS, read_phonon_dataset
from .schedule import cosine_time_finished, cosine_time_lr, last_epoch_seconds

__all__ = [
    "DEFAULT_TRAIN_CONFIG",
    "PhononDataset",
    "load_train_config",
    "read_training_configs",
    "train_phonon",
    "evaluate",
    "cosine_time_lr",
    "cosine_time_finished",
    "fit_normalization",
]

DEFAULT_TRAIN_CONFIG: dict[str, Any] = {
    "train_file": None,
    "valid_file": None,
    "test_files": {},
    "output_dir": "hedgenet_phonon_run",
    "model_file": "hedgenet_phonon.pt",
    "model": {},
    "init_model": None,
    "widen_channels": None,
    "widen_readout": None,
    "dtype": "float32",
    "device": "cpu",
    "seed": 0,
    "num_threads": None,
    "batch_size": 4,
    "max_epochs": 100,
    "max_time_minutes": None,
    "lr": 0.01,
    "min_lr": 1e-5,
    "weight_decay": 0.0,
    "energy_weight": 1.0,
    "forces_weight": 100.0,
    "force_weighting": "uniform",
    "force_weight_floor": 0.1,
    "force_loss": "mse",
    "force_loss_delta": 0.01,
    "stress_weight": 0.0,
    "ema_decay": 0.99,
    "scheduler": "plateau",
    "scheduler_factor": 0.5,
    "scheduler_patience": 5,
    "scheduler_gamma": 0.98,
    "patience": 20,
    "select_model": "lowest_valid_loss",
    "clip_grad_norm": 10.0,
    "progress": True,
    "evaluate_train_set": True,
}
"""Defaults of the training configuration (paths relative to the YAML file's folder)."""

SCHEDULERS = ("plateau", "exponential", "cosine", "cosine_time", "none")
FORCE_WEIGHTINGS = ("uniform", "relative")
FORCE_LOSSES = ("mse", "huber")
MODEL_SELECTIONS = ("lowest_valid_loss", "last_epoch")


def load_train_config(config: str | os.PathLike | Mapping[str, Any]) -> dict[str, Any]:
    """Read a training configuration (YAML file or dict), fill defaults, resolve paths.

    Relative paths (``train_file``, ``valid_file``, ``test_files`` values, ``output_dir``) are taken
    relative to the YAML file's folder (the current folder for a dict).  ``train_file`` is one extended
    XYZ file or a list of parts read in order, each a path or ``{file: path, repeat: n, config_types:
    [...]}`` (see :func:`read_training_configs`), e.g. the dataset once plus its small rattles three more
    times plus a second set twice::

        train_file:
          - ../out/phonon_dataset_large/train.xyz
          - {file: ../out/phonon_dataset_large/train.xyz, config_types: [rattle_0.003, rattle_0.01], repeat: 3}
          - {file: ../out/phonon_dataset_slides/train.xyz, repeat: 2}

    ``num_threads``: null (torch's default) or a positive integer.

    Raises
    ------
    KeyError
        Unknown keys.
    ValueError
        Missing ``train_file``, bad numbers, unknown scheduler or dtype.
    """
    import yaml

    if isinstance(config, Mapping):
        raw, base = dict(config), Path.cwd()
    else:
        path = Path(config)
        if not path.is_file():
            raise FileNotFoundError(f"training config {str(path)!r} does not exist")
        with open(path) as fh:
            raw = yaml.safe_load(fh) or {}
        if not isinstance(raw, dict):
            raise ValueError(f"training config {str(path)!r} must be a YAML mapping")
        base = path.resolve().parent
    cfg = copy.deepcopy(DEFAULT_TRAIN_CONFIG)
    unknown = set(raw) - set(cfg)
    if unknown:
        raise KeyError(f"unknown training config key(s) {sorted(unknown)}; known: {sorted(cfg)}")
    cfg.update(copy.deepcopy(raw))
    if not cfg["train_file"]:
        raise ValueError("the training config needs train_file (extended XYZ with REF_energy/REF_forces, "
                         "or a list of such files)")

    def resolve(p: str | None) -> str | None:
        return None if p is None else str((base / p).resolve()) if not os.path.isabs(p) else str(p)

    cfg["train_file"] = _train_parts(cfg["train_file"], resolve)
    cfg["valid_file"] = resolve(cfg["valid_file"])
    if isinstance(cfg["test_files"], (list, tuple)):
        cfg["test_files"] = {Path(p).stem: p for p in cfg["test_files"]}
    cfg["test_files"] = {str(k): resolve(v) for k, v in dict(cfg["test_files"] or {}).items()}
    cfg["output_dir"] = resolve(cfg["output_dir"])
    cfg["init_model"] = resolve(cfg["init_model"])
    if cfg["init_model"] is not None and cfg["model"]:
        raise ValueError("give either model (a new model) or init_model (fine-tune an existing one), not both")
    for key in ("widen_channels", "widen_readout"):
        if cfg[key] is not None:
            if cfg["init_model"] is None:
                raise ValueError(f"{key} widens init_model: give init_model too")
            check_positive_int(cfg[key], key)
    normalize_phonon_config(cfg["model"])  # validate early
    as_dtype(cfg["dtype"])
    if cfg["scheduler"] not in SCHEDULERS:
        raise ValueError(f"scheduler must be one of {SCHEDULERS}, got {cfg['scheduler']!r}")
    if cfg["scheduler"] == "cosine_time" and not (cfg["max_time_minutes"] is not None
                                                  and float(cfg["max_time_minutes"]) > 0):
        raise ValueError("scheduler cosine_time anneals over the time budget: set max_time_minutes > 0")
    for key in ("batch_size", "max_epochs", "patience", "scheduler_patience"):
        cfg[key] = int(cfg[key])
        if cfg[key] < 1:
            raise ValueError(f"{key} must be a positive integer, got {cfg[key]}")
    for key in ("lr", "energy_weight", "forces_weight", "stress_weight", "min_lr", "weight_decay"):
        cfg[key] = float(cfg[key])
        if not math.isfinite(cfg[key]) or cfg[key] < 0:
            raise ValueError(f"{key} must be a non-negative number, got {cfg[key]}")
    if not cfg["lr"] > 0:
        raise ValueError("lr must be positive")
    if cfg["force_weighting"] not in FORCE_WEIGHTINGS:
        raise ValueError(f"force_weighting must be one of {FORCE_WEIGHTINGS}, got {cfg['force_weighting']!r}")
    cfg["force_weight_floor"] = float(cfg["force_weight_floor"])
    if not cfg["force_weight_floor"] > 0:
        raise ValueError(f"force_weight_floor must be a positive force in eV/Å, got {cfg['force_weight_floor']}")
    if cfg["force_loss"] not in FORCE_LOSSES:
        raise ValueError(f"force_loss must be one of {FORCE_LOSSES}, got {cfg['force_loss']!r}")
    cfg["force_loss_delta"] = float(cfg["force_loss_delta"])
    if not (math.isfinite(cfg["force_loss_delta"]) and cfg["force_loss_delta"] > 0):
        raise ValueError(f"force_loss_delta must be a positive force in eV/Å, got {cfg['force_loss_delta']}")
    check_num_threads(cfg["num_threads"])
    if not 0 <= float(cfg["ema_decay"]) < 1:
        raise ValueError(f"ema_decay must be in [0, 1), got {cfg['ema_decay']}")
    if cfg["select_model"] not in MODEL_SELECTIONS:
        raise ValueError(f"select_model must be one of {MODEL_SELECTIONS}, got {cfg['select_model']!r}")
    return cfg


TRAIN_PART_KEYS = ("file", "repeat", "config_types")


def _train_parts(spec: Any, resolve: Callable[[str], str | None]) -> str | list[dict[str, Any]]:
    """Resolve ``train_file``: one path (kept a string), or a list of parts, each a path or a mapping
    ``{file: path, repeat: 1, config_types: null}`` (normalised to that mapping with an absolute path)."""
    if isinstance(spec, (str, os.PathLike)):
        return resolve(os.fspath(spec))
    if not isinstance(spec, (list, tuple)):
        raise ValueError(f"train_file must be a path or a list of parts, got {type(spec).__name__}")
    parts = []
    for k, part in enumerate(spec):
        part = {"file": part} if isinstance(part, (str, os.PathLike)) else dict(part)
        unknown = set(part) - set(TRAIN_PART_KEYS)
        if unknown or "file" not in part:
            raise KeyError(f"train_file part {k}: keys must be among {TRAIN_PART_KEYS} and include 'file', "
                           f"got {sorted(part)}")
        repeat = check_positive_int(part.get("repeat", 1), f"train_file part {k}: repeat")
        types = part.get("config_types")
        if types is not None:
            types = [types] if isinstance(types, str) else [str(t) for t in types]
            if not types:
                raise ValueError(f"train_file part {k}: config_types is empty (omit it to take every configuration)")
        parts.append({"file": resolve(os.fspath(part["file"])), "repeat": repeat, "config_types": types})
    return parts


def read_training_configs(train_file: str | os.PathLike | Sequence[Mapping[str, Any]]) -> list[Atoms]:
    """The training configurations named by a resolved ``train_file`` (see :func:`load_train_config`).

    A list of parts is read in order; each part keeps the configurations whose ``config_type`` is in its
    ``config_types`` (all when null) and repeats that selection ``repeat`` times (the whole selection
    ``repeat`` times over, as ``list * repeat``): repeating a kind of configuration weighs it more
    without writing a new file.

    Raises
    ------
    ValueError
        A part's ``config_types`` selects nothing (the types in that file are named).
    """
    if isinstance(train_file, (str, os.PathLike)):
        return read_phonon_dataset(train_file)
    configs: list[Atoms] = []
    files: dict[str, list[Atoms]] = {}  # a file named by several parts is read once
    for part in train_file:
        if part["file"] not in files:
            files[part["file"]] = read_phonon_dataset(part["file"])
        found = files[part["file"]]
        if part["config_types"] is not None:
            wanted = set(part["config_types"])
            selected = [a for a in found if a.info.get("config_type", "default") in wanted]
            if not selected:
                present = sorted({str(a.info.get("config_type", "default")) for a in found})
                raise ValueError(f"{part['file']}: no configuration of type {sorted(wanted)} (present: {present})")
            found = selected
        configs.extend(found * part["repeat"])
    return configs


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------


@dataclass
class PhononDataset:
    """Graphs and reference labels of a list of configurations (numpy, model-independent dtype).

    Attributes
    ----------
    graphs : list of PhononGraph
    energies : numpy.ndarray, (M,), eV
    forces : list of numpy.ndarray, (N_m, 3), eV/Å
    stresses : numpy.ndarray, (M, 3, 3), eV/Å³, NaN where unknown
    n_atoms : numpy.ndarray, (M,), int
    species_counts : numpy.ndarray, (M, n_species), int
    config_types : list of str
    """

    graphs: list[PhononGraph]
    energies: np.ndarray
    forces: list[np.ndarray]
    stresses: np.ndarray
    n_atoms: np.ndarray
    species_counts: np.ndarray
    config_types: list[str]

    @classmethod
    def from_atoms(cls, configs: Sequence[Atoms], model_config: Mapping[str, Any]) -> "PhononDataset":
        """Build graphs for ``model_config`` (normalised) and collect the ``REF_*`` labels."""
        graphs, energies, forces, stresses, counts, types = [], [], [], [], [], []
        n_species = len(model_config["species"])
        for a in configs:
            g = atoms_to_graph(a, model_config)
            graphs.append(g)
            energies.append(float(a.info[REF_ENERGY]))
            forces.append(np.asarray(a.arrays[REF_FORCES], dtype=np.float64))
            if REF_STRESS in a.info:
                s = np.asarray(a.info[REF_STRESS], dtype=np.float64)
                stresses.append(voigt_6_to_full_3x3_stress(s) if s.shape == (6,) else s.reshape(3, 3))
            else:
                stresses.append(np.full((3, 3), np.nan))
            counts.append(np.bincount(g.species, minlength=n_species))
            types.append(str(a.info.get("config_type", "default")))
        return cls(graphs, np.array(energies), forces, np.array(stresses),
                   np.array([g.n_atoms for g in graphs]), np.array(counts), types)

    @classmethod
    def from_file(cls, path: str | os.PathLike, model_config: Mapping[str, Any]) -> "PhononDataset":
        return cls.from_atoms(read_phonon_dataset(path), model_config)

    def __len__(self) -> int:
        return len(self.graphs)

    def force_weights(self, weighting: str = "uniform", floor: float = 0.1) -> np.ndarray:
        """Weight of every configuration in the force loss, shape (M,).

        ``"uniform"``: 1.  ``"relative"``: ``w_m = ⟨F²⟩ / (⟨F²⟩_m + floor²)`` with ``⟨F²⟩_m`` the mean squared
        reference force component of configuration ``m`` and ``⟨F²⟩`` that of the whole set, so the loss
        weighs relative rather than absolute force errors: small-displacement configurations (the
        harmonic regime that sets phonon frequencies) count as much as large thermal ones.
        """
        if weighting == "uniform":
            return np.ones(len(self))
        if weighting != "relative":
            raise ValueError(f"unknown force weighting {weighting!r}")
        msq = np.array([np.mean(f ** 2) for f in self.forces])
        return float(np.mean(np.concatenate(self.forces) ** 2)) / (msq + floor ** 2)

    def batch(self, indices: Sequence[int], n_networks: int, dtype: torch.dtype, device: torch.device | str,
              force_weights: np.ndarray | None = None) -> tuple[Any, dict[str, torch.Tensor]]:
        """Model input and targets (``energy`` (B,), ``forces`` (N, 3), ``stress`` (B, 3, 3), ``n_atoms``,
        ``force_weight`` (N, 1) per atom from the per-configuration ``force_weights``, default 1)."""
        batch = collate_graphs([self.graphs[k] for k in indices], n_networks, dtype=dtype, device=device)
        f = dict(dtype=dtype, device=device)
        targets = {
            "energy": torch.as_tensor(self.energies[list(indices)], **f),
            "forces": torch.as_tensor(np.concatenate([self.forces[k] for k in indices]), **f),
            "stress": torch.as_tensor(self.stresses[list(indices)], **f),
            "n_atoms": torch.as_tensor(self.n_atoms[list(indices)], **f),
        }
        w = np.ones(len(self)) if force_weights is None else np.asarray(force_weights)
        targets["force_weight"] = torch.as_tensor(np.repeat(w[list(indices)], self.n_atoms[list(indices)]),
                                                  **f)[:, None]
        return batch, targets


def fit_normalization(data: PhononDataset) -> dict[str, Any]:
    """E0 per species (least squares), force RMS scale and mean neighbour count of a training set."""
    e0, *_ = np.linalg.lstsq(data.species_counts.astype(np.float64), data.energies, rcond=None)
    forces = np.concatenate(data.forces)
    scale = float(np.sqrt(np.mean(forces ** 2)))
    if not scale > 0:
        scale = 1.0
    edges = sum(g.edge_index.shape[1] for g in data.graphs)
    atoms = int(data.n_atoms.sum())
    return {"atomic_energies": [float(e) for e in e0], "scale": scale, "shift": 0.0,
            "avg_num_neighbors": max(edges / atoms, 1.0)}


# --------------------------------------------------------------------------------------------
# loss and evaluation
# --------------------------------------------------------------------------------------------


def _loss(out: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor], cfg: Mapping[str, Any]
          ) -> torch.Tensor:
    de = (out["energy"] - targets["energy"]) / targets["n_atoms"]
    loss = cfg["energy_weight"] * torch.mean(de ** 2)
    fw = targets.get("force_weight")
    df = out["forces"] - targets["forces"]
    r = df if fw is None else torch.sqrt(fw) * df
    if cfg.get("force_loss", DEFAULT_TRAIN_CONFIG["force_loss"]) == "huber":
        delta = float(cfg.get("force_loss_delta", DEFAULT_TRAIN_CONFIG["force_loss_delta"]))
        rho = 2.0 * torch.nn.functional.huber_loss(r, torch.zeros_like(r), reduction="none", delta=delta)
    else:
        rho = r ** 2
    loss = loss + cfg["forces_weight"] * torch.mean(rho)
    if cfg["stress_weight"] > 0:
        ok = ~torch.isnan(targets["stress"]).flatten(1).any(dim=1)
        if bool(ok.any()):
            loss = loss + cfg["stress_weight"] * torch.mean((out["stress"][ok] - targets["stress"][ok]) ** 2)
    return loss


def evaluate(model: HedgeNetPhonon, data: PhononDataset, cfg: Mapping[str, Any] | None = None,
             batch_size: int = 8) -> dict[str, float]:
    """Errors of ``model`` on ``data``.

    Returns
    -------
    dict
        ``loss`` (with the weights of ``cfg``, when given), ``energy_mae_meV_per_atom``,
        ``energy_rmse_meV_per_atom``, ``forces_mae_meV_per_A``, ``forces_rmse_meV_per_A``,
        ``stress_mae_meV_per_A3`` (when labels exist), ``n_configs``.
    """
    want_stress = bool(np.isfinite(data.stresses).all())
    weights = None
    if cfg is not None:
        weights = data.force_weights(cfg.get("force_weighting", DEFAULT_TRAIN_CONFIG["force_weighting"]),
                                     cfg.get("force_weight_floor", DEFAULT_TRAIN_CONFIG["force_weight_floor"]))
    de, df, ds, losses = [], [], [], []
    model_was_training = model.training
    model.eval()
    for start in range(0, len(data), batch_size):
        idx = list(range(start, min(start + batch_size, len(data))))
        batch, targets = data.batch(idx, model.n_networks, model.dtype, model.device, weights)
        out = model(batch, compute_forces=True, compute_stress=want_stress)
        out = {k: v.detach() for k, v in out.items()}
        if cfg is not None:
            c = dict(cfg)
            if not want_stress:
                c["stress_weight"] = 0.0
            losses.append(float(_loss(out, targets, c)) * len(idx))
        de.append(((out["energy"] - targets["energy"]) / targets["n_atoms"]).cpu().numpy())
        df.append((out["forces"] - targets["forces"]).cpu().numpy().ravel())
        if want_stress:
            ds.append((out["stress"] - targets["stress"]).cpu().numpy().ravel())
    model.train(model_was_training)
    de_a, df_a = np.concatenate(de), np.concatenate(df)
    res = {
        "n_configs": len(data),
        "energy_mae_meV_per_atom": 1e3 * float(np.mean(np.abs(de_a))),
        "energy_rmse_meV_per_atom": 1e3 * float(np.sqrt(np.mean(de_a ** 2))),
        "forces_mae_meV_per_A": 1e3 * float(np.mean(np.abs(df_a))),
        "forces_rmse_meV_per_A": 1e3 * float(np.sqrt(np.mean(df_a ** 2))),
    }
    if want_stress:
        res["stress_mae_meV_per_A3"] = 1e3 * float(np.mean(np.abs(np.concatenate(ds))))
    if cfg is not None:
        res["loss"] = sum(losses) / len(data)
    return res


# --------------------------------------------------------------------------------------------
# EMA
# --------------------------------------------------------------------------------------------


class _EMA:
    """Exponential moving average of a model's parameters, ``θ̄ ← d θ̄ + (1 − d) θ``.

    The decay ramps up as ``min(d, (1 + n)/(10 + n))`` over the first updates (n = update count).
    """

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = float(decay)
        self.n_updates = 0
        self.shadow = {k: p.detach().clone() for k, p in model.named_parameters()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.n_updates += 1
        d = min(self.decay, (1 + self.n_updates) / (10 + self.n_updates))
        for k, p in model.named_parameters():
            self.shadow[k].mul_(d).add_(p.detach(), alpha=1 - d)

    @torch.no_grad()
    def swap(self, model: torch.nn.Module) -> None:
        """Exchange the model's parameters with the averaged ones (call twice to restore)."""
        for k, p in model.named_parameters():
            tmp = p.detach().clone()
            p.copy_(self.shadow[k])
            self.shadow[k] = tmp

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "n_updates": self.n_updates, "shadow": dict(self.shadow)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.decay = float(state["decay"])
        self.n_updates = int(state["n_updates"])
        for k, v in state["shadow"].items():
            self.shadow[k].copy_(v)


def _make_scheduler(optimizer: torch.optim.Optimizer, cfg: Mapping[str, Any]):
    kind = cfg["scheduler"]
    if kind == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=cfg["scheduler_factor"],
                                                          patience=cfg["scheduler_patience"], min_lr=cfg["min_lr"])
    if kind == "exponential":
        return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=float(cfg["scheduler_gamma"]))
    if kind == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg["max_epochs"], eta_min=cfg["min_lr"])
    return None


def _rng_state(gen: np.random.Generator) -> dict[str, Any]:
    st = gen.bit_generator.state
    # large Python ints are fine for weights_only; make sure nothing else sneaks in
    return json.loads(json.dumps(st))


# --------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------


def train_phonon(config: str | os.PathLike | Mapping[str, Any], resume: bool = True,
                 log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train HedgeNet-Phonon as configured (see :data:`DEFAULT_TRAIN_CONFIG`).

    Parameters
    ----------
    config
        YAML file or dict.
    resume
        Continue from ``<output_dir>/checkpoint.pt`` when it exists (otherwise start afresh).
    log
        Extra sink for log lines (they always go to ``<output_dir>/train.log``).

    Returns
    -------
    dict
        ``model_file``, ``metrics`` (per dataset, best EMA model), ``epochs``, ``stopped`` (reason),
        ``history`` (per-epoch records).

    Raises
    ------
    FileNotFoundError
        ``valid_file`` or a ``test_files`` entry does not exist (checked before training starts, since the
        test files are read only at the end).
    """
    from tqdm.auto import tqdm

    cfg = load_train_config(config)
    missing = [f"{label} {path}" for label, path in
               [("valid_file", cfg["valid_file"])] + [(f"test_files[{k!r}]", v) for k, v in cfg["test_files"].items()]
               if path is not None and not Path(path).is_file()]
    if missing:  # found now, not after hours of training when the final errors are computed
        raise FileNotFoundError("training config names files that do not exist: " + "; ".join(missing))
    out_dir = Path(cfg["output_dir"])
    out_dir.mkdir(parents=True, exist_ok=True)
    log_path = out_dir / "train.log"

    def say(msg: str) -> None:
        line = f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {msg}"
        with open(log_path, "a") as fh:
            fh.write(line + "\n")
        if log is not None:
            log(line)

    if cfg["num_threads"]:
        torch.set_num_threads(int(cfg["num_threads"]))
    dtype = as_dtype(cfg["dtype"])
    device = torch.device(cfg["device"])
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but CUDA is not available")
    ckpt_path = out_dir / "checkpoint.pt"
    checkpoint = None
    if resume and ckpt_path.is_file():
        checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        model_cfg = checkpoint["model_config"]
        say(f"resuming from {ckpt_path} after epoch {checkpoint['epoch']}")
    elif cfg["init_model"] is not None:
        init = read_phonon_model_file(cfg["init_model"])
        model_cfg = normalize_phonon_config(init["config"])
        say(f"fine-tuning {cfg['init_model']} (its normalisation is kept)")
    else:
        model_cfg = normalize_phonon_config(cfg["model"])

    train_configs = read_training_configs(cfg["train_file"])
    train = PhononDataset.from_atoms(train_configs, model_cfg)
    valid = PhononDataset.from_file(cfg["valid_file"], model_cfg) if cfg["valid_file"] else None
    if checkpoint is None and cfg["init_model"] is None:
        model_cfg.update(fit_normalization(train))
        say(f"normalisation: E0 = {model_cfg['atomic_energies']} eV, scale = {model_cfg['scale']:.4f} eV/Å, "
            f"avg_num_neighbors = {model_cfg['avg_num_neighbors']:.2f}")
    torch.manual_seed(int(cfg["seed"]))
    model = HedgeNetPhonon(model_cfg, dtype=dtype, device=device)
    if checkpoint is None and cfg["init_model"] is not None:
        model.load_state_dict(init["state_dict"])
        if cfg["widen_channels"] is not None or cfg["widen_readout"] is not None:
            narrow = model.count_parameters()
            model = widen_phonon_model(model, cfg["widen_channels"], seed=int(cfg["seed"]),
                                       readout_mlp=cfg["widen_readout"])
            grown = [f"{label}{model_cfg[key]} -> {model.config[key]}{unit}"
                     for key, label, unit in (("num_channels", "", " channels"), ("readout_mlp", "readout MLP ", ""))
                     if model.config[key] != model_cfg[key]]
            say(f"widened {', '.join(grown)} ({narrow} -> {model.count_parameters()} parameters; same predictions)")
    ema = _EMA(model, cfg["ema_decay"])
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"], amsgrad=True)
    scheduler = _make_scheduler(optimizer, cfg)
    gen = np.random.default_rng(int(cfg["seed"]))
    history: list[dict[str, Any]] = []
    start_epoch, best_loss, best_epoch, elapsed_before = 0, math.inf, -1, 0.0
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        ema.load_state_dict(checkpoint["ema"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        if scheduler is not None and checkpoint.get("scheduler") is not None:
            scheduler.load_state_dict(checkpoint["scheduler"])
        gen.bit_generator.state = checkpoint["numpy_rng"]
        torch.set_rng_state(checkpoint["torch_rng"])
        history = list(checkpoint["history"])
        start_epoch = int(checkpoint["epoch"]) + 1
        best_loss, best_epoch = float(checkpoint["best_loss"]), int(checkpoint["best_epoch"])
        elapsed_before = float(checkpoint.get("elapsed_s", 0.0))
    say(f"model: {'heterogeneous' if model.heterogeneous else 'homogeneous'}, {model.count_parameters()} "
        f"parameters, cutoffs {model.graph_cutoffs}, dtype {dtype}, device {device}; "
        f"{len(train)} train / {len(valid) if valid else 0} valid configurations")

    train_weights = train.force_weights(cfg["force_weighting"], cfg["force_weight_floor"])
    model_file = out_dir / cfg["model_file"]
    stopped = "max_epochs"
    t0 = time.perf_counter()
    budget = None if cfg["max_time_minutes"] is None else 60.0 * float(cfg["max_time_minutes"])
    epochs = range(start_epoch, cfg["max_epochs"])
    if best_epoch >= 0 and start_epoch - 1 - best_epoch >= cfg["patience"]:
        stopped, epochs = "early_stopping", range(0)
    elif (cfg["scheduler"] == "cosine_time" and checkpoint is not None
          and cosine_time_finished(elapsed_before, last_epoch_seconds(history), budget)):
        stopped, epochs = "time_limit", range(0)  # the run already ended at its budget's nearest epoch boundary
    bar = tqdm(epochs, initial=start_epoch, total=cfg["max_epochs"], desc="train-phonon",
               disable=not cfg["progress"])
    for epoch in bar:
        epoch_t0 = time.perf_counter()
        model.train()
        order = gen.permutation(len(train))
        train_loss, n_seen = 0.0, 0
        for start in range(0, len(order), cfg["batch_size"]):
            idx = order[start:start + cfg["batch_size"]].tolist()
            if cfg["scheduler"] == "cosine_time":
                step_lr = cosine_time_lr(elapsed_before + time.perf_counter() - t0, budget, cfg["lr"], cfg["min_lr"])
                for group in optimizer.param_groups:
                    group["lr"] = step_lr
            batch, targets = train.batch(idx, model.n_networks, dtype, device, train_weights)
            optimizer.zero_grad(set_to_none=True)
            out = model(batch, compute_forces=True, compute_stress=cfg["stress_weight"] > 0, training=True)
            loss = _loss(out, targets, cfg)
            loss.backward()
            if cfg["clip_grad_norm"]:
                torch.nn.utils.clip_grad_norm_(model.parameters(), float(cfg["clip_grad_norm"]))
            optimizer.step()
            ema.update(model)
            train_loss += float(loss.detach()) * len(idx)
            n_seen += len(idx)
        train_loss /= max(n_seen, 1)
        ema.swap(model)
        val = evaluate(model, valid if valid is not None else train, cfg)
        improved = val["loss"] < best_loss
        if improved:
            best_loss, best_epoch = val["loss"], epoch
        if improved or cfg["select_model"] == "last_epoch":
            save_phonon_model(model, model_file, metadata={"training": {
                "epoch": epoch, "valid": val, "train_file": cfg["train_file"], "dtype": str(dtype),
                "config": _plain_cfg(cfg)}})
        ema.swap(model)
        lr = optimizer.param_groups[0]["lr"]
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            scheduler.step(val["loss"])
        elif scheduler is not None:
            scheduler.step()
        now = time.perf_counter()
        elapsed = elapsed_before + now - t0
        record = {"epoch": epoch, "train_loss": train_loss, "lr": lr, "elapsed_s": elapsed, "epoch_s": now - epoch_t0,
                  **{f"valid_{k}": v for k, v in val.items()}}
        history.append(record)
        say(f"epoch {epoch:4d}  train loss {train_loss:.4e}  valid loss {val['loss']:.4e}  "
            f"E {val['energy_rmse_meV_per_atom']:.2f} meV/atom  F {val['forces_mae_meV_per_A']:.1f} meV/Å (MAE)  "
            f"lr {lr:.2e}{'  *' if improved else ''}")
        if cfg["progress"]:
            bar.set_postfix(loss=f"{train_loss:.3e}", val=f"{val['loss']:.3e}",
                            F_mae=f"{val['forces_mae_meV_per_A']:.1f}meV/Å")
        atomic_torch_save({
            "format": "mlepi_ase.hedgenet_phonon.checkpoint",
            "package_version": __version__,
            "model_config": model.config,
            "model": model.state_dict(),
            "ema": ema.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "numpy_rng": _rng_state(gen),
            "torch_rng": torch.get_rng_state(),
            "history": history,
            "epoch": epoch,
            "best_loss": best_loss,
            "best_epoch": best_epoch,
            "elapsed_s": elapsed,
        }, ckpt_path)
        atomic_json(out_dir / "history.json", history)
        if epoch - best_epoch >= cfg["patience"]:
            stopped = "early_stopping"
            break
        # cosine_time: the budget is the whole run's (resumes included), where the anneal ends; the run stops at
        # the epoch boundary nearest that end
        if cfg["scheduler"] == "cosine_time":
            spent = elapsed
            out_of_time = cosine_time_finished(spent, record["epoch_s"], budget)
        else:
            spent = time.perf_counter() - t0
            out_of_time = budget is not None and spent >= budget
        if out_of_time:
            stopped = "time_limit"
            say(f"time budget: {spent / 60:.2f} of {budget / 60:.2f} min used, the last epoch took "
                f"{record['epoch_s'] / 60:.2f} min")
            break
    bar.close()
    say(f"stopped ({stopped}); best epoch {best_epoch}, valid loss {best_loss:.4e}")

    from ..models.phonon import load_phonon_model

    metrics: dict[str, Any] = {}
    if model_file.is_file():
        best = load_phonon_model(model_file, device=device, dtype=dtype)
        if cfg["evaluate_train_set"]:
            metrics["train"] = evaluate(best, train, cfg)
        if valid is not None:
            metrics["valid"] = evaluate(best, valid, cfg)
        for name, path in cfg["test_files"].items():
            metrics[name] = evaluate(best, PhononDataset.from_file(path, best.config), cfg)
        for name, m in metrics.items():
            say(f"best model on {name}: E RMSE {m['energy_rmse_meV_per_atom']:.2f} meV/atom, "
                f"F MAE {m['forces_mae_meV_per_A']:.2f} meV/Å, F RMSE {m['forces_rmse_meV_per_A']:.2f} meV/Å")
        atomic_json(out_dir / "metrics.json", {"model_file": model_file.name, "best_epoch": best_epoch,
                                               "stopped": stopped, "metrics": metrics})
    return {"model_file": str(model_file), "metrics": metrics, "epochs": len(history), "stopped": stopped,
            "best_epoch": best_epoch, "history": history}


def export_checkpoint_model(checkpoint: str | os.PathLike, path: str | os.PathLike, use_ema: bool = True
                            ) -> Path:
    """Write the weights of a training checkpoint's last epoch as a model file.

    The trainer keeps the model of the epoch with the lowest validation loss in ``model_file``; this
    exports the state after the last finished epoch instead (for example at the end of a learning-rate
    anneal, when the weighted validation loss is too noisy to pick an epoch by).

    Parameters
    ----------
    checkpoint
        ``<output_dir>/checkpoint.pt`` written by :func:`train_phonon` (read with ``weights_only=True``).
    path
        Model file to write (:func:`mlepi_ase.models.phonon.save_phonon_model` format).
    use_ema
        Export the exponential moving average of the weights (what the trainer validates and saves), not
        the raw optimiser iterate.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != "mlepi_ase.hedgenet_phonon.checkpoint":
        raise ValueError(f"{str(checkpoint)!r} is not a HedgeNet-Phonon training checkpoint")
    model = HedgeNetPhonon(ckpt["model_config"], dtype=next(iter(ckpt["model"].values())).dtype)
    model.load_state_dict(ckpt["model"])
    if use_ema:
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(ckpt["ema"]["shadow"][name])
    last = ckpt["history"][-1] if ckpt["history"] else {}
    meta = {"training": {"epoch": int(ckpt["epoch"]), "exported_from": "checkpoint", "ema": bool(use_ema),
                         "valid": {k[len("valid_"):]: v for k, v in last.items() if k.startswith("valid_")}}}
    return save_phonon_model(model, path, metadata=meta)


def _plain_cfg(cfg: Mapping[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(dict(cfg), default=str))
