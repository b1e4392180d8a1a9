r"""Training and evaluation of HedgeNet-Electron (``mlepi train-electron config.yaml``).

Loss
----
Mean squared error over every stored matrix element of the predicted blocks: on-site blocks
:math:`H_{ii}(0)` and off-site blocks :math:`H_{ij}(\mathbf R)` of every directed edge of the model's
graph (per-relation cutoffs), with masks for

* blocks the data does not hold (an edge of the model graph without a target block is left out, not
  treated as zero: DFT folders drop small blocks), and
* padding orbitals of species with fewer orbitals than the largest (heteronuclear bases),

divided by ``block_scale²`` (the RMS of the target off-site elements), optionally weighted per relation
(``loss_weights``: on-site, intra, inter).  Target blocks outside the model's cutoffs are counted and
reported (they bound what the model can reproduce).  Metrics: mean absolute error in meV per relation
(``onsite``, ``intra``, ``inter``) and overall.

Data
----
* the HDF5 dataset of :func:`mlepi_ase.models.electron_data.make_electron_dataset` (splits ``train``,
  ``valid``, ``test_6x6``); and/or
* users' DeepH processed folders (``deeph_folders``: glob patterns; read with
  :func:`mlepi_ase.io.deeph.read_deeph`, OpenMX orbital order converted to e3nn order), split at random
  into train/valid by ``valid_fraction`` unless ``deeph_valid_folders`` is given.  Overlaps are not learned
  (the model predicts H only).

Run
---
Adam with a cosine learning-rate decay over the planned steps, gradient clipping, per-epoch validation,
an atomic checkpoint after every epoch (``checkpoint.pt``: model, optimizer, step count, random states,
history), the best model by validation MAE as a model file, optional wall-time limit, and ``--resume``.
CPU or CUDA (``training.device``), float32 or float64 (``training.dtype``).  At the end the best model
is evaluated on the test splits: block MAE per relation and band-energy errors within ``band_window``
of the Fermi level at the supercell's Γ, M, K (:func:`band_energy_errors`), written to ``metrics.json``.

The per-run files in ``output.dir``: ``config.yaml`` (the full configuration), ``train.log``,
``history.json``, ``checkpoint.pt``, ``model.pt`` (best), ``metrics.json``.
"""

from __future__ import annotations

import copy
import glob
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from .._files import atomic_json, atomic_torch_save, to_plain
from .. import __version__
from . import check_num_threads
from .schedule import cosine_lr, cosine_time_finished, cosine_time_lr, last_epoch_seconds
from ..graph import RELATIONS, _edge_keys
from ..models.electron import (
    ElectronGraph,
    HedgeNetElectron,
    atoms_to_electron_graph,
    collate_electron_graphs,
    load_electron_model,
    normalize_electron_config,
    save_electron_model,
)
from ..tb import TBHamiltonian

__all__ = [
    "DEFAULT_TRAIN_ELECTRON_CONFIG",
    "normalize_train_config",
    "ElectronSample",
    "prepare_samples",
    "collate_samples",
    "block_errors",
    "evaluate_model",
    "band_energy_errors",
    "load_training_data",
    "train_electron",
]

DEFAULT_TRAIN_ELECTRON_CONFIG: dict[str, Any] = {
    "data": {
        "dataset": None,
        "train_split": "train",
        "valid_split": "valid",
        "test_splits": [],
        "deeph_folders": [],
        "deeph_valid_folders": [],
        "valid_fraction": 0.1,
        "max_train": None,
        "max_valid": None,
    },
    "model": {},
    "training": {
        "epochs": 20,
        "batch_size": 2,
        "lr": 5e-3,
        "lr_min_factor": 0.01,
        "lr_schedule": "cosine",
        "weight_decay": 0.0,
        "grad_clip": 10.0,
        "loss_weights": {"onsite": 1.0, "intra": 1.0, "inter": 1.0},
        "seed": 0,
        "device": "cpu",
        "dtype": "float32",
        "num_threads": None,
        "time_limit_s": None,
        "init_model": None,
        "progress": True,
    },
    "evaluation": {
        "band_window": 1.0,
        "band_kpoints": ["G", "M", "K"],
        "max_band_structures": 4,
    },
    "output": {"dir": "electron_run", "model": "model.pt"},
}
"""Default training configuration (a YAML file overrides keys section by section).

``data.dataset``: HDF5 file of ``mlepi make-dataset electron``; ``data.deeph_folders``: glob patterns of
DeepH folders; ``model``: :data:`mlepi_ase.models.electron.DEFAULT_ELECTRON_CONFIG` keys (the basis is
taken from the data when absent; ``avg_num_neighbors``, ``block_scale`` and ``decay_origin`` are always
set from the training data); ``training.time_limit_s``: stop (with checkpoint and model) once the whole run
(resumes included) has trained this many seconds: at the first epoch end past it, or with ``cosine_time`` at
the epoch boundary nearest it (:func:`~mlepi_ase.train.schedule.cosine_time_finished`); a resumed run whose
time is up trains nothing more;
``training.init_model``: start from the weights and configuration of an existing model file (fine-tuning,
e.g. on users' DFT folders; a fresh optimizer); ``training.lr_schedule``: ``"cosine"`` (over the planned steps), ``"cosine_time"`` (over
``time_limit_s`` of wall time: finishes the decay whatever the machine's load) or ``"constant"``.
"""


def normalize_train_config(config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Merge ``config`` into :data:`DEFAULT_TRAIN_ELECTRON_CONFIG` section by section; unknown keys raise."""
    cfg = copy.deepcopy(DEFAULT_TRAIN_ELECTRON_CONFIG)
    for section, values in (config or {}).items():
        if section not in cfg:
            raise KeyError(f"unknown section {section!r} in the training configuration; known: {sorted(cfg)}")
        if values is None:
            continue
        if not isinstance(values, Mapping):
            raise ValueError(f"section {section!r} must be a mapping")
        if section != "model":
            unknown = set(values) - set(cfg[section])
            if unknown:
                raise KeyError(f"unknown key(s) {sorted(unknown)} in section {section!r}; known: {sorted(cfg[section])}")
        cfg[section].update(copy.deepcopy(dict(values)))
    if cfg["data"]["dataset"] is None and not cfg["data"]["deeph_folders"]:
        raise ValueError("the training configuration names no data: set data.dataset or data.deeph_folders")
    t = cfg["training"]
    if int(t["epochs"]) < 1 or int(t["batch_size"]) < 1 or not float(t["lr"]) > 0:
        raise ValueError("training.epochs ≥ 1, training.batch_size ≥ 1 and training.lr > 0 are required")
    check_num_threads(t["num_threads"], "training.num_threads")
    return cfg


# ------------------------------------------------------------------------------------ samples
@dataclass
class ElectronSample:
    """One training structure: model graph plus aligned targets.

    Attributes
    ----------
    graph : ElectronGraph
    target_onsite : torch.Tensor, (N, n, n), eV
    target_edges : torch.Tensor, (E, n, n), eV
        Target block of every directed graph edge (zero where absent).
    mask_onsite, mask_edges : torch.Tensor, bool, same shapes
        Valid elements (target present and inside both atoms' orbital counts).
    n_dropped : int
        Target off-site blocks outside the model graph (beyond the cutoffs).
    max_dropped : float
        Largest |element| among them (eV).
    name : str
    """

    graph: ElectronGraph
    target_onsite: torch.Tensor
    target_edges: torch.Tensor
    mask_onsite: torch.Tensor
    mask_edges: torch.Tensor
    n_dropped: int
    max_dropped: float
    name: str = ""


def _check_basis(h: TBHamiltonian, model_cfg: Mapping[str, Any], name: str) -> None:
    basis = model_cfg["basis"]
    for z in np.unique(h.numbers):
        from ase.data import chemical_symbols

        sym = chemical_symbols[int(z)]
        if sym not in basis:
            raise ValueError(f"{name}: element {sym} is not in the model's orbital basis {basis}")
        if list(h.basis.shells_of(int(z))) != list(basis[sym]):
            raise ValueError(f"{name}: basis mismatch for {sym}: data has shells {list(h.basis.shells_of(int(z)))}, "
                             f"model expects {basis[sym]}")


def prepare_samples(hamiltonians: Sequence[TBHamiltonian], model_config: Mapping[str, Any],
                    names: Sequence[str] | None = None) -> list[ElectronSample]:
    """Build graphs (model cutoffs) and align the target blocks of every Hamiltonian.

    Parameters
    ----------
    hamiltonians
        Reference Hamiltonians (e3nn orbital order, eV).
    model_config
        Normalised model configuration.
    names
        Labels used in error messages.

    Returns
    -------
    list of ElectronSample
    """
    cfg = model_config if "species" in model_config else normalize_electron_config(model_config)
    from ..orbitals import OrbitalBasis

    basis = OrbitalBasis.from_dict(cfg["basis"])
    out = []
    for k, h in enumerate(hamiltonians):
        name = names[k] if names is not None else f"structure {k}"
        _check_basis(h, cfg, name)
        g = atoms_to_electron_graph(h.to_atoms(), cfg)
        nmax = basis.max_norb
        if h.blocks.shape[1] != nmax:
            raise ValueError(f"{name}: blocks padded to {h.blocks.shape[1]} orbitals, model basis needs {nmax}")
        if np.iscomplexobj(h.blocks) and np.max(np.abs(h.blocks.imag), initial=0.0) > 1e-10:
            raise ValueError(f"{name}: complex real-space blocks (spin-orbit?) are not supported")
        blocks = np.real(h.blocks).astype(np.float64)
        keys = _edge_keys(h.pairs[:, 0], h.pairs[:, 1], h.shifts)
        order = np.argsort(keys)
        skeys = keys[order]
        n = h.n_atoms
        idx_on = np.arange(n)
        on_keys = _edge_keys(idx_on, idx_on, np.zeros((n, 3), dtype=np.int64))
        ei = g.edge_index.numpy()
        info = g.atoms_info
        e_keys = _edge_keys(ei[0], ei[1], info["shifts"])

        def lookup(q):
            pos = np.clip(np.searchsorted(skeys, q), 0, max(len(skeys) - 1, 0))
            found = skeys[pos] == q if len(skeys) else np.zeros(len(q), dtype=bool)
            return order[pos], found

        pos_on, found_on = lookup(on_keys)
        pos_e, found_e = lookup(e_keys)
        norb = basis.norb_per_atom(h.numbers)
        a = np.arange(nmax)

        def elem_mask(i, j):
            return (a[None, :, None] < norb[i][:, None, None]) & (a[None, None, :] < norb[j][:, None, None])

        t_on = np.where(found_on[:, None, None], blocks[pos_on], 0.0)
        m_on = elem_mask(idx_on, idx_on) & found_on[:, None, None]
        t_e = np.where(found_e[:, None, None], blocks[pos_e], 0.0) if len(pos_e) else np.zeros((0, nmax, nmax))
        m_e = elem_mask(ei[0], ei[1]) & found_e[:, None, None]
        used = np.zeros(len(keys), dtype=bool)
        used[pos_on[found_on]] = True
        used[pos_e[found_e]] = True
        dropped = ~used
        out.append(ElectronSample(
            graph=g,
            target_onsite=torch.as_tensor(t_on), target_edges=torch.as_tensor(t_e),
            mask_onsite=torch.as_tensor(m_on), mask_edges=torch.as_tensor(m_e),
            n_dropped=int(dropped.sum()),
            max_dropped=float(np.max(np.abs(blocks[dropped]), initial=0.0)),
            name=name,
        ))
    return out


def collate_samples(samples: Sequence[ElectronSample]) -> ElectronSample:
    """Concatenate samples into one batch sample."""
    if len(samples) == 1:
        return samples[0]
    return ElectronSample(
        graph=collate_electron_graphs([s.graph for s in samples]),
        target_onsite=torch.cat([s.target_onsite for s in samples]),
        target_edges=torch.cat([s.target_edges for s in samples]),
        mask_onsite=torch.cat([s.mask_onsite for s in samples]),
        mask_edges=torch.cat([s.mask_edges for s in samples]),
        n_dropped=sum(s.n_dropped for s in samples),
        max_dropped=max(s.max_dropped for s in samples),
        name="batch",
    )


def _sample_to(s: ElectronSample, device, dtype) -> ElectronSample:
    return ElectronSample(s.graph.to(device, dtype), s.target_onsite.to(device, dtype),
                          s.target_edges.to(device, dtype), s.mask_onsite.to(device), s.mask_edges.to(device),
                          s.n_dropped, s.max_dropped, s.name)


def block_errors(pred: Mapping[str, torch.Tensor], sample: ElectronSample) -> dict[str, torch.Tensor]:
    """Sums of squared and absolute errors and element counts per relation (``onsite``, ``intra``, ``inter``).

    Returns
    -------
    dict
        ``{"sq": (3,), "abs": (3,), "count": (3,)}`` tensors in the order onsite, intra, inter (eV², eV, 1).
    """
    d_on = (pred["onsite"] - sample.target_onsite) * sample.mask_onsite
    d_e = (pred["edges"] - sample.target_edges) * sample.mask_edges
    rel = sample.graph.relation
    sq, ab, cnt = [], [], []
    sq.append(d_on.pow(2).sum())
    ab.append(d_on.abs().sum())
    cnt.append(sample.mask_onsite.sum())
    for r in range(len(RELATIONS)):
        m = rel == r
        sq.append(d_e[m].pow(2).sum())
        ab.append(d_e[m].abs().sum())
        cnt.append(sample.mask_edges[m].sum())
    return {"sq": torch.stack(sq), "abs": torch.stack(ab), "count": torch.stack(cnt).to(d_on.dtype)}


_PARTS = ("onsite",) + RELATIONS


def _metrics_from_sums(sq: np.ndarray, ab: np.ndarray, cnt: np.ndarray) -> dict[str, float]:
    out = {}
    for k, name in enumerate(_PARTS):
        c = max(cnt[k], 1.0)
        out[f"mae_{name}_meV"] = 1e3 * ab[k] / c
        out[f"rmse_{name}_meV"] = 1e3 * math.sqrt(sq[k] / c)
    c = max(cnt.sum(), 1.0)
    out["mae_meV"] = 1e3 * ab.sum() / c
    out["rmse_meV"] = 1e3 * math.sqrt(sq.sum() / c)
    out["n_elements"] = int(cnt.sum())
    return out


@torch.no_grad()
def evaluate_model(model: HedgeNetElectron, samples: Sequence[ElectronSample], batch_size: int = 1,
                   edge_chunk: int | None = None) -> dict[str, float]:
    """Block MAE/RMSE (meV) per relation of ``model`` on ``samples``."""
    model.eval()
    sums = [np.zeros(3), np.zeros(3), np.zeros(3)]
    for start in range(0, len(samples), batch_size):
        batch = _sample_to(collate_samples(samples[start : start + batch_size]), model.device, model.dtype)
        err = block_errors(model(batch.graph, edge_chunk=edge_chunk), batch)
        for k, key in enumerate(("sq", "abs", "count")):
            sums[k] += err[key].double().cpu().numpy()
    return _metrics_from_sums(*sums)


def _special_kpoints(cell: np.ndarray, names: Sequence[str]) -> np.ndarray:
    from ase.cell import Cell

    pts = Cell(np.asarray(cell)).bandpath(pbc=[True, True, False], npoints=0).special_points
    missing = [n for n in names if n not in pts]
    if missing:
        raise ValueError(f"special points {missing} are not defined for this cell (available: {sorted(pts)})")
    return np.array([pts[n] for n in names])


def band_energy_errors(reference: TBHamiltonian, predicted: TBHamiltonian, window: float = 1.0,
                       kpoints: Sequence[str] = ("G", "M", "K"), electrons_per_orbital_pair: float = 1.0
                       ) -> dict[str, Any]:
    """Band-energy errors of ``predicted`` against ``reference`` within ``±window`` of the Fermi level.

    The Fermi level is the reference's mid-gap energy at half filling of the orbitals (the sp3 carbon
    model has 4 electrons in 4 orbitals per atom, so the lowest ``n_orbitals / 2`` states are occupied),
    taken over the listed k-points: ``E_F = ½ (max_k E_{n/2−1}(k) + min_k E_{n/2}(k))``.  States are
    matched by index (both spectra sorted).

    Parameters
    ----------
    reference, predicted
        Hamiltonians of the same structure.
    window
        Half width (eV) of the energy window around E_F.
    kpoints
        Special points of the (super)cell's hexagonal Brillouin zone (ASE names).

    Returns
    -------
    dict
        ``fermi_level`` (eV), ``max_abs_meV``, ``mean_abs_meV`` and per k-point ``per_k``
        (``{name: {"max_abs_meV", "n_states"}}``).
    """
    k = _special_kpoints(reference.cell, kpoints)
    e_ref = reference.eigh(k)
    e_pred = predicted.eigh(k)
    n = e_ref.shape[1]
    homo = n // 2 - 1
    ef = 0.5 * (e_ref[:, homo].max() + e_ref[:, homo + 1].min())
    per_k = {}
    errs = []
    for name, er, ep in zip(kpoints, e_ref, e_pred):
        sel = np.abs(er - ef) <= window
        d = np.abs(ep[sel] - er[sel])
        errs.append(d)
        per_k[name] = {"max_abs_meV": float(1e3 * d.max(initial=0.0)), "n_states": int(sel.sum())}
    allerr = np.concatenate(errs)
    return {"fermi_level": float(ef), "max_abs_meV": float(1e3 * allerr.max(initial=0.0)),
            "mean_abs_meV": float(1e3 * allerr.mean()) if len(allerr) else 0.0, "per_k": per_k}


# ----------------------------------------------------------------------------------- data loading
def _expand(patterns: Sequence[str], base: Path) -> list[Path]:
    out: list[Path] = []
    for p in patterns:
        pat = str(p if os.path.isabs(p) else base / p)
        hits = sorted(glob.glob(pat))
        if not hits:
            raise FileNotFoundError(f"no DeepH folder matches {p!r}")
        out += [Path(h) for h in hits if Path(h).is_dir()]
    return out


def load_training_data(cfg: Mapping[str, Any], base: Path | None = None,
                       rng: np.random.Generator | None = None) -> dict[str, list[tuple[TBHamiltonian, str]]]:
    """Hamiltonians per role (``train``, ``valid``, and each test split) named by their source.

    Parameters
    ----------
    cfg
        Normalised training configuration.
    base
        Folder relative paths are taken from (the config file's folder).
    rng
        Generator for the random train/valid split of DeepH folders.
    """
    from ..io.deeph import read_deeph
    from ..models.electron_data import read_electron_dataset

    base = base or Path.cwd()
    d = cfg["data"]
    roles: dict[str, list[tuple[TBHamiltonian, str]]] = {"train": [], "valid": []}
    if d["dataset"]:
        path = Path(d["dataset"])
        path = path if path.is_absolute() else base / path
        roles["train"] += [(h, f"{path.name}:{d['train_split']}:{k}")
                           for k, (h, _) in enumerate(read_electron_dataset(path, d["train_split"], d["max_train"]))]
        if d["valid_split"]:
            roles["valid"] += [(h, f"{path.name}:{d['valid_split']}:{k}")
                               for k, (h, _) in enumerate(read_electron_dataset(path, d["valid_split"], d["max_valid"]))]
        for split in d["test_splits"] or []:
            roles[f"test:{split}"] = [(h, f"{path.name}:{split}:{k}")
                                      for k, (h, _) in enumerate(read_electron_dataset(path, split))]
    if d["deeph_folders"]:
        folders = _expand(d["deeph_folders"], base)
        hams = [(read_deeph(f), str(f)) for f in folders]
        if d["deeph_valid_folders"]:
            roles["train"] += hams
            roles["valid"] += [(read_deeph(f), str(f)) for f in _expand(d["deeph_valid_folders"], base)]
        else:
            gen = rng or np.random.default_rng(0)
            order = gen.permutation(len(hams))
            n_valid = int(round(float(d["valid_fraction"]) * len(hams)))
            if len(hams) > 1:
                n_valid = min(max(n_valid, 1), len(hams) - 1)
            else:
                n_valid = 0
            roles["valid"] += [hams[k] for k in order[:n_valid]]
            roles["train"] += [hams[k] for k in order[n_valid:]]
        if d["max_train"]:
            roles["train"] = roles["train"][: int(d["max_train"])]
    if not roles["train"]:
        raise ValueError("no training structures were found in the configured data")
    return roles


# ---------------------------------------------------------------------------------------- training
def _data_statistics(samples: Sequence[ElectronSample], model_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Per-relation message-passing neighbour counts, RMS off-site element and mean on-site blocks."""
    counts = np.zeros(len(RELATIONS))
    shortest = np.full(len(RELATIONS), np.inf)
    atoms = 0
    sq, n_el = 0.0, 0
    onsite_sum: dict[int, np.ndarray] = {}
    onsite_n: dict[int, int] = {}
    mc = np.array([model_cfg["message_cutoffs"][r] for r in RELATIONS])
    species = model_cfg["species"]
    for s in samples:
        g = s.graph
        d = torch.linalg.norm(g.edge_vectors(), dim=1).numpy()
        rel = g.relation.numpy()
        keep = d < mc[rel]
        for r in range(len(RELATIONS)):
            counts[r] += np.count_nonzero(keep & (rel == r))
            if np.any(rel == r):
                shortest[r] = min(shortest[r], float(d[rel == r].min()))
        atoms += g.n_atoms
        m = s.mask_edges.numpy()
        sq += float(np.sum(s.target_edges.numpy()[m] ** 2))
        n_el += int(m.sum())
        sp = g.species.numpy()
        for a in np.unique(sp):
            z = species[int(a)]
            sel = sp == a
            onsite_sum[z] = onsite_sum.get(z, 0.0) + s.target_onsite.numpy()[sel].sum(axis=0)
            onsite_n[z] = onsite_n.get(z, 0) + int(sel.sum())
    avg = {r: max(float(counts[k] / max(atoms, 1)), 1.0) for k, r in enumerate(RELATIONS)}
    scale = math.sqrt(sq / n_el) if n_el else 1.0
    origin = {r: float(shortest[k]) if np.isfinite(shortest[k]) else 0.0 for k, r in enumerate(RELATIONS)}
    return {"avg_num_neighbors": avg, "block_scale": scale if scale > 0 else 1.0, "decay_origin": origin,
            "onsite_mean": {z: onsite_sum[z] / onsite_n[z] for z in onsite_sum}}


def _numpy_state(gen: np.random.Generator) -> str:
    return json.dumps(gen.bit_generator.state)


def _set_numpy_state(gen: np.random.Generator, state: str) -> None:
    gen.bit_generator.state = json.loads(state)


class _Logger:
    def __init__(self, path: Path | None, echo: Callable[[str], None] | None):
        self.path, self.echo = path, echo

    def __call__(self, msg: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {msg}"
        if self.path is not None:
            with open(self.path, "a") as fh:
                fh.write(line + "\n")
        if self.echo is not None:
            self.echo(line)


def train_electron(config: Mapping[str, Any], resume: bool = False, base_dir: str | os.PathLike | None = None,
                   log: Callable[[str], None] | None = print) -> dict[str, Any]:
    """Train HedgeNet-Electron (see the module docstring).

    Parameters
    ----------
    config
        Training configuration (merged into :data:`DEFAULT_TRAIN_ELECTRON_CONFIG`).
    resume
        Continue from ``output.dir/checkpoint.pt`` when it exists.
    base_dir
        Folder relative data/output paths refer to (default: the current directory).
    log
        Called with progress lines (also written to ``train.log``).

    Returns
    -------
    dict
        ``{"model_path", "history", "best", "metrics"}``.
    """
    import yaml
    from tqdm.auto import tqdm

    cfg = normalize_train_config(config)
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    out_dir = Path(cfg["output"]["dir"])
    out_dir = out_dir if out_dir.is_absolute() else base / out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = out_dir / "checkpoint.pt"
    if not (resume and ckpt_path.exists()) and (out_dir / "train.log").exists():
        (out_dir / "train.log").unlink()  # a fresh run starts a fresh log
    say = _Logger(out_dir / "train.log", log)
    t_cfg = cfg["training"]
    if t_cfg["num_threads"]:
        torch.set_num_threads(int(t_cfg["num_threads"]))
    device = torch.device(t_cfg["device"])
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("training.device is 'cuda' but no CUDA device is available")
    dtype = {"float32": torch.float32, "float64": torch.float64}.get(str(t_cfg["dtype"]))
    if dtype is None:
        raise ValueError(f"training.dtype must be float32 or float64, got {t_cfg['dtype']!r}")
    gen = np.random.default_rng(int(t_cfg["seed"]))
    torch.manual_seed(int(t_cfg["seed"]))

    ckpt = None
    if resume and ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        say(f"resuming from {ckpt_path} (epoch {ckpt['epoch']} done)")

    roles = load_training_data(cfg, base, gen)
    model_cfg = dict(cfg["model"])
    if "basis" not in model_cfg:
        model_cfg["basis"] = roles["train"][0][0].basis.to_dict()
    init = None
    if ckpt is not None:
        model_cfg = ckpt["model_config"]
    elif t_cfg["init_model"]:
        init_path = Path(t_cfg["init_model"])
        init_path = init_path if init_path.is_absolute() else base / init_path
        init = load_electron_model(init_path, device=device, dtype=dtype)
        model_cfg = init.config
        say(f"starting from the weights of {init_path} (its configuration replaces the model section)")
    model_cfg = normalize_electron_config(model_cfg)
    t0 = time.perf_counter()
    samples = {role: prepare_samples([h for h, _ in items], model_cfg, [n for _, n in items])
               for role, items in roles.items()}
    for role, ss in samples.items():
        dropped = sum(s.n_dropped for s in ss)
        worst = max((s.max_dropped for s in ss), default=0.0)
        say(f"{role}: {len(ss)} structures, {sum(s.graph.n_atoms for s in ss)} atoms, "
            f"{sum(s.graph.n_edges for s in ss)} edges; {dropped} target blocks outside the model cutoffs "
            f"(largest element {1e3 * worst:.3g} meV)")
    say(f"graphs and targets prepared in {time.perf_counter() - t0:.1f} s")

    if ckpt is None and init is not None:
        model = init
        model.train()
    elif ckpt is None:
        stats = _data_statistics(samples["train"], model_cfg)
        model_cfg["avg_num_neighbors"] = stats["avg_num_neighbors"]
        model_cfg["block_scale"] = stats["block_scale"]
        if model_cfg["radial_decay"] is not None:
            model_cfg["decay_origin"] = stats["decay_origin"]
        model_cfg = normalize_electron_config(model_cfg)
        model = HedgeNetElectron(model_cfg, dtype=dtype, device=device)
        model.set_onsite_offset(stats["onsite_mean"])
        say(f"data statistics: avg neighbours {stats['avg_num_neighbors']}, block scale {stats['block_scale']:.4f} eV")
    else:
        model = HedgeNetElectron(model_cfg, dtype=dtype, device=device)
        model.load_state_dict(ckpt["model_state"])
    say(f"model: {model.count_parameters()} parameters, cutoffs {model.cutoffs}, "
        f"message cutoffs {model_cfg['message_cutoffs']}, {dtype}, {device}")
    full_cfg = copy.deepcopy(cfg)
    full_cfg["model"] = model.config
    with open(out_dir / "config.yaml", "w") as fh:
        yaml.safe_dump(full_cfg, fh, sort_keys=False)

    epochs, bs = int(t_cfg["epochs"]), int(t_cfg["batch_size"])
    train_s = samples["train"]
    steps_per_epoch = math.ceil(len(train_s) / bs)
    total_steps = epochs * steps_per_epoch
    opt = torch.optim.Adam(model.parameters(), lr=float(t_cfg["lr"]), weight_decay=float(t_cfg["weight_decay"]))
    lr0, lr_min = float(t_cfg["lr"]), float(t_cfg["lr_min_factor"])
    schedule = str(t_cfg["lr_schedule"])
    if schedule not in ("cosine", "cosine_time", "constant"):
        raise ValueError(f"training.lr_schedule must be 'cosine', 'cosine_time' or 'constant', got {schedule!r}")
    if schedule == "cosine_time" and not t_cfg["time_limit_s"]:
        raise ValueError("training.lr_schedule 'cosine_time' needs training.time_limit_s")

    time_limit = float(t_cfg["time_limit_s"]) if t_cfg["time_limit_s"] else None

    def lr_at(step: int, elapsed: float) -> float:
        if schedule == "constant":
            return lr0
        if schedule == "cosine":
            return cosine_lr(step, max(total_steps, 1), lr0, lr0 * lr_min)
        return cosine_time_lr(elapsed, time_limit, lr0, lr0 * lr_min)

    def time_is_up(elapsed: float, epoch_s: float) -> bool:
        """cosine_time: the epoch boundary nearest the end of the anneal; otherwise the first one past the limit."""
        if time_limit is None:
            return False
        if schedule == "cosine_time":
            return cosine_time_finished(elapsed, epoch_s, time_limit)
        return elapsed > time_limit

    history: list[dict[str, Any]] = []
    best = {"epoch": -1, "valid_mae_meV": float("inf")}
    start_epoch, global_step = 0, 0
    if ckpt is not None:
        opt.load_state_dict(ckpt["optimizer_state"])
        history = json.loads(ckpt["history"])
        best = json.loads(ckpt["best"])
        start_epoch = int(ckpt["epoch"])
        global_step = int(ckpt["step"])
        _set_numpy_state(gen, ckpt["numpy_rng"])
        torch.set_rng_state(ckpt["torch_rng"])
    weights = torch.tensor([float(t_cfg["loss_weights"].get(p, 1.0)) for p in _PARTS], dtype=dtype, device=device)
    scale2 = model_cfg["block_scale"] ** 2
    model_path = out_dir / cfg["output"]["model"]
    valid_s = samples["valid"] or train_s[: max(1, len(train_s) // 10)]
    t_start = time.perf_counter()
    elapsed_before = float(ckpt["elapsed_s"]) if ckpt is not None else 0.0
    stopped_early = False
    epoch_range = range(start_epoch, epochs)
    if ckpt is not None and time_is_up(elapsed_before, last_epoch_seconds(history)):
        say(f"the checkpoint's run already used its time limit ({elapsed_before:.1f} of {time_limit:g} s); "
            "nothing more to train")
        stopped_early, epoch_range = True, range(0)
    for epoch in epoch_range:
        epoch_t0 = time.perf_counter()
        model.train()
        order = gen.permutation(len(train_s))
        sums = [np.zeros(3), np.zeros(3), np.zeros(3)]
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{epochs}", leave=False,
                   disable=not t_cfg["progress"], file=sys.stderr)
        for step in bar:
            idx = order[step * bs : (step + 1) * bs]
            batch = _sample_to(collate_samples([train_s[k] for k in idx]), device, dtype)
            pred = model(batch.graph)
            err = block_errors(pred, batch)
            loss = (weights * err["sq"]).sum() / err["count"].sum().clamp(min=1.0) / scale2
            lr = lr_at(global_step, elapsed_before + time.perf_counter() - t_start)
            for group in opt.param_groups:
                group["lr"] = lr
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if t_cfg["grad_clip"]:
                torch.nn.utils.clip_grad_norm_(model.parameters(), float(t_cfg["grad_clip"]))
            opt.step()
            global_step += 1
            for k, key in enumerate(("sq", "abs", "count")):
                sums[k] += err[key].detach().double().cpu().numpy()
            bar.set_postfix(loss=f"{loss.item():.3e}")
        train_m = _metrics_from_sums(*sums)
        valid_m = evaluate_model(model, valid_s, batch_size=bs)
        now = time.perf_counter()
        elapsed = elapsed_before + now - t_start
        rec = to_plain({"epoch": epoch + 1, "lr": lr, "elapsed_s": elapsed, "epoch_s": now - epoch_t0,
                        "train": train_m, "valid": valid_m})
        history.append(rec)
        say(f"epoch {epoch + 1}/{epochs} lr {rec['lr']:.2e} | train MAE {train_m['mae_meV']:.3f} meV | valid MAE "
            f"{valid_m['mae_meV']:.3f} meV (onsite {valid_m['mae_onsite_meV']:.3f}, intra "
            f"{valid_m['mae_intra_meV']:.3f}, inter {valid_m['mae_inter_meV']:.3f}) | {elapsed:.0f} s")
        if valid_m["mae_meV"] < best["valid_mae_meV"]:
            best = {"epoch": epoch + 1, "valid_mae_meV": valid_m["mae_meV"], "valid": valid_m}
            save_electron_model(model, model_path, metadata={
                "training": {"epoch": epoch + 1, "valid": valid_m, "config": full_cfg["training"],
                             "n_train": len(train_s), "data": cfg["data"]}})
        atomic_torch_save({
            "epoch": epoch + 1, "model_state": model.state_dict(), "model_config": model.config,
            "optimizer_state": opt.state_dict(), "step": global_step,
            "history": json.dumps(history), "best": json.dumps(best), "numpy_rng": _numpy_state(gen),
            "torch_rng": torch.get_rng_state(), "elapsed_s": elapsed, "package_version": __version__,
        }, ckpt_path)
        atomic_json(out_dir / "history.json", history)
        if time_is_up(elapsed, rec["epoch_s"]):
            say(f"time limit: {elapsed:.1f} of {time_limit:g} s used after epoch {epoch + 1} (it took "
                f"{rec['epoch_s']:.0f} s); stopping")
            stopped_early = True
            break

    if not model_path.exists():  # e.g. resumed after the last epoch with no model written
        save_electron_model(model, model_path)
    best_model = load_electron_model(model_path, device=device, dtype=dtype)
    metrics: dict[str, Any] = {"best_epoch": best["epoch"], "valid": best.get("valid"),
                               "epochs_run": len(history), "stopped_early": stopped_early,
                               "train_time_s": history[-1]["elapsed_s"] if history else 0.0}
    ev = cfg["evaluation"]
    for role, ss in samples.items():
        if not role.startswith("test:"):
            continue
        split = role.split(":", 1)[1]
        m = evaluate_model(best_model, ss)
        bands = []
        for h, _ in roles[role][: int(ev["max_band_structures"])]:
            pred_h = best_model.predict_hamiltonian(h.to_atoms())
            bands.append(band_energy_errors(h, pred_h, float(ev["band_window"]), ev["band_kpoints"]))
        m["band_errors"] = {
            "window_eV": float(ev["band_window"]), "kpoints": list(ev["band_kpoints"]),
            "n_structures": len(bands),
            "max_abs_meV": max((b["max_abs_meV"] for b in bands), default=None),
            "mean_abs_meV": float(np.mean([b["mean_abs_meV"] for b in bands])) if bands else None,
            "per_structure": bands,
        }
        metrics[f"test_{split}" if not split.startswith("test") else split] = m
        say(f"{split}: block MAE {m['mae_meV']:.3f} meV (onsite {m['mae_onsite_meV']:.3f}, intra "
            f"{m['mae_intra_meV']:.3f}, inter {m['mae_inter_meV']:.3f}); band errors within ±"
            f"{ev['band_window']} eV: max {m['band_errors']['max_abs_meV']} meV")
    metrics = to_plain(metrics)
    atomic_json(out_dir / "metrics.json", metrics)
    return {"model_path": str(model_path), "history": history, "best": best, "metrics": metrics}
