r"""Hamiltonian datasets for HedgeNet-Electron: generation (``mlepi make-dataset electron``) and HDF5 I/O.

What is generated
-----------------
Displaced supercells of AB bilayer graphene labelled by the embedded sp3 Slater–Koster reference
(:class:`mlepi_ase.reference.slater_koster.SlaterKosterSP3`, basis s, p per carbon):

* **thermal** configurations of the training supercell (default 4×4×1, 64 atoms) at several
  temperatures.  With ``thermal_method = "phonons"`` (default) they are drawn from the harmonic
  Williams–Lax distribution of the reference force field's force constants
  (:func:`mlepi_ase.sampling.sample_configurations`, quantum widths
  :math:`\sigma_\nu^2 = (\hbar/2\omega_\nu)\coth(\hbar\omega_\nu/2k_BT)`); with ``"rattle"`` (no LAMMPS
  needed) every Cartesian component gets an i.i.d. Gaussian of width
  :math:`\sigma(T) = \sigma_{300}\sqrt{T/300\,\mathrm K}` (classical equipartition scaling,
  :math:`\sigma_{300}` = ``rattle_300K``, default 0.07 Å, the size of graphene's thermal displacements);
* **rattled** configurations (i.i.d. Gaussian displacements of fixed amplitudes);
* **stacking** configurations: the top layer rigidly slid by a random in-plane vector (covering AA, AB,
  BA and saddle-point stackings, the local stackings of a twisted bilayer) and moved to a random
  interlayer distance in ``interlayer_range``, plus a thermal-size rattle — as in DeepH's bilayer data,
  so that a model trained on them transfers to twisted bilayers;
* a **held-out** set of thermal configurations of a larger supercell (default 6×6×1 at 300 K).

The training supercell's configurations are split at random into ``train`` and ``valid``; the held-out
set is the split ``test_<n>x<m>``.

File format (``electron_dataset.h5``, version 1)
------------------------------------------------
Root attributes: ``format = "mlepi_ase.electron_dataset"``, ``format_version = 1``, ``basis`` (JSON,
``{symbol: [l, ...]}``), ``orbital_order = "e3nn"`` (p = x, y, z), ``units`` (JSON: eV, Å),
``reference`` (text), ``package_version``.  One group per structure, ``structures/<000000>``, with
datasets

====================  ======================  =======================================================
``cell``              (3, 3) float64, Å       lattice vectors as rows
``positions``         (N, 3) float64, Å
``numbers``           (N,) int64
``pbc``               (3,) bool
``layers``            (N,) int64              layer index (0 bottom, 1 top)
``pairs``             (B, 2) int64            atoms ``(i, j)`` of every block (0-based)
``shifts``            (B, 3) int64            lattice translation ``R`` of ``j``
``blocks``            (B, n, n) float64, eV   ``H_ij(R)`` in e3nn order, zero-padded to n = max orbitals
====================  ======================  =======================================================

and attributes ``split`` (``train``/``valid``/``test_6x6``/...), ``config_type`` and ``info`` (JSON of the
generator's per-structure information: temperature, slide, interlayer distance, ...).  The blocks are those
of :meth:`TBHamiltonian` (both halves ``(i, j, R)`` and ``(j, i, −R)`` of every pair, on-site blocks
included).  A summary ``dataset.json`` (settings, seed, counts, timings) sits next to the file.
"""

from __future__ import annotations

import copy
import json
import os
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import h5py
import numpy as np
from ase import Atoms

from .._files import atomic_json, atomic_write, to_plain
from .. import __version__
from ..orbitals import OrbitalBasis
from ..structures import bilayer_graphene
from ..tb import TBHamiltonian

__all__ = [
    "DATASET_FORMAT",
    "DEFAULT_ELECTRON_DATASET",
    "ElectronDatasetError",
    "write_electron_dataset",
    "read_electron_dataset",
    "dataset_splits",
    "thermal_rattles",
    "make_electron_dataset",
]

DATASET_FORMAT = "mlepi_ase.electron_dataset"
_FORMAT_VERSION = 1

DEFAULT_ELECTRON_DATASET: dict[str, Any] = {
    "stacking": "AB",
    "lattice_constant": 2.46,
    "interlayer": 3.35,
    "vacuum": 20.0,
    "train_supercell": [4, 4],
    "test_supercell": [6, 6],
    "thermal_method": "phonons",
    "temperatures": [100.0, 300.0, 600.0],
    "n_thermal": [16, 48, 16],
    "rattle_300K": 0.07,
    "rattle_amplitudes": [0.02, 0.1],
    "n_rattle": [8, 8],
    "n_stacking": 64,
    "interlayer_range": [3.1, 3.9],
    "stacking_rattle": 0.05,
    "valid_fraction": 0.1,
    "test_temperature": 300.0,
    "n_test": 8,
    "reference_cutoff": 6.5,
    "relax_fmax": 1e-4,
    "fc_distance": 0.01,
}
"""Default settings of :func:`make_electron_dataset` (a plain dict; a YAML file may override keys)."""


class ElectronDatasetError(ValueError):
    """A Hamiltonian dataset file is missing, corrupt or inconsistent."""


def _rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


# ------------------------------------------------------------------------------------------ I/O
def write_electron_dataset(path: str | os.PathLike, items: Iterable[tuple[TBHamiltonian, str, Mapping[str, Any]]],
                           reference: str = "", compression: int = 4) -> Path:
    """Write Hamiltonians into one HDF5 dataset file (atomically; format in the module docstring).

    Parameters
    ----------
    path
        Output file.
    items
        ``(hamiltonian, split, info)`` triples; all must share one orbital basis.
    reference
        Free text naming the reference that labelled the data.
    compression
        gzip level of the block arrays.

    Returns
    -------
    pathlib.Path
    """
    def write(tmp: Path) -> None:
        basis = None
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = DATASET_FORMAT
            f.attrs["format_version"] = _FORMAT_VERSION
            f.attrs["orbital_order"] = "e3nn"
            f.attrs["units"] = json.dumps({"energy": "eV", "length": "Angstrom"})
            f.attrs["reference"] = reference
            f.attrs["package_version"] = __version__
            grp = f.create_group("structures")
            n = 0
            for h, split, info in items:
                if basis is None:
                    basis = h.basis
                elif h.basis.to_dict() != basis.to_dict():
                    raise ElectronDatasetError("all Hamiltonians of a dataset must share one orbital basis")
                g = grp.create_group(f"{n:06d}")
                g.create_dataset("cell", data=h.cell)
                g.create_dataset("positions", data=h.positions)
                g.create_dataset("numbers", data=h.numbers)
                g.create_dataset("pbc", data=h.pbc)
                layers = h.layers if h.layers is not None else np.zeros(h.n_atoms, dtype=np.int64) - 1
                g.create_dataset("layers", data=np.asarray(layers, dtype=np.int64))
                g.create_dataset("pairs", data=h.pairs, compression="gzip", compression_opts=compression)
                g.create_dataset("shifts", data=h.shifts, compression="gzip", compression_opts=compression)
                g.create_dataset("blocks", data=h.blocks, compression="gzip", compression_opts=compression,
                                 shuffle=True)
                g.attrs["split"] = str(split)
                g.attrs["config_type"] = str(info.get("config_type", ""))
                g.attrs["info"] = json.dumps(to_plain(info))
                n += 1
            if basis is None:
                raise ElectronDatasetError("no Hamiltonians to write")
            f.attrs["basis"] = json.dumps(basis.to_dict())
            f.attrs["n_structures"] = n

    return atomic_write(path, write)


def _open_dataset(path: str | os.PathLike) -> h5py.File:
    path = Path(path)
    if not path.is_file():
        raise ElectronDatasetError(f"dataset file {path} does not exist")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ElectronDatasetError(f"cannot open {path} as HDF5: {exc}") from exc
    if f.attrs.get("format") != DATASET_FORMAT:
        f.close()
        raise ElectronDatasetError(f"{path} is not a HedgeNet-Electron dataset (format {f.attrs.get('format')!r})")
    if int(f.attrs.get("format_version", 0)) > _FORMAT_VERSION:
        f.close()
        raise ElectronDatasetError(f"{path} has a newer format version than this package reads")
    return f


def dataset_splits(path: str | os.PathLike) -> dict[str, int]:
    """Number of structures per split of a dataset file."""
    with _open_dataset(path) as f:
        out: dict[str, int] = {}
        for g in f["structures"].values():
            s = str(g.attrs["split"])
            out[s] = out.get(s, 0) + 1
    return out


def read_electron_dataset(path: str | os.PathLike, split: str | Sequence[str] | None = None,
                          limit: int | None = None) -> list[tuple[TBHamiltonian, dict[str, Any]]]:
    """Read the Hamiltonians of a dataset file.

    Parameters
    ----------
    path
        File written by :func:`write_electron_dataset`.
    split
        Keep only this split (or these splits); None = all.
    limit
        Keep at most this many structures.

    Returns
    -------
    list of (TBHamiltonian, info)
        ``info`` holds the generator's information plus ``split`` and ``config_type``.
    """
    splits = None if split is None else ({split} if isinstance(split, str) else set(split))
    out = []
    with _open_dataset(path) as f:
        basis = OrbitalBasis.from_dict(json.loads(f.attrs["basis"]))
        available = {str(g.attrs["split"]) for g in f["structures"].values()}
        if splits is not None and not splits & available:
            raise ElectronDatasetError(f"{path} has no split {sorted(splits)}; available: {sorted(available)}")
        for name in sorted(f["structures"]):
            g = f["structures"][name]
            s = str(g.attrs["split"])
            if splits is not None and s not in splits:
                continue
            try:
                layers = np.asarray(g["layers"], dtype=np.int64)
                h = TBHamiltonian(
                    cell=np.asarray(g["cell"]), positions=np.asarray(g["positions"]), numbers=np.asarray(g["numbers"]),
                    basis=basis, pairs=np.asarray(g["pairs"]), shifts=np.asarray(g["shifts"]),
                    blocks=np.asarray(g["blocks"]), pbc=np.asarray(g["pbc"]),
                    layers=None if np.any(layers < 0) else layers,
                )
            except (KeyError, ValueError) as exc:
                raise ElectronDatasetError(f"{path}: structure {name} is corrupt: {exc}") from exc
            info = json.loads(g.attrs.get("info", "{}"))
            info.update({"split": s, "config_type": str(g.attrs.get("config_type", ""))})
            out.append((h, info))
            if limit is not None and len(out) >= limit:
                break
    return out


# -------------------------------------------------------------------------------- generation
def thermal_rattles(atoms: Atoms, temperature: float, n: int, sigma_300K: float = 0.07,
                    rng: np.random.Generator | int | None = None) -> list[Atoms]:
    """Gaussian stand-in for thermal configurations: σ(T) = σ_300 √(T / 300 K) per Cartesian component.

    Parameters
    ----------
    atoms
        Structure (``layer`` array kept).
    temperature
        K, ≥ 0.
    n
        Number of configurations.
    sigma_300K
        Displacement width at 300 K (Å).
    rng
        Random generator or seed.

    Returns
    -------
    list of ase.Atoms
        ``info``: ``config_type = "thermal_<T>K"``, ``temperature``, ``sampling = "gaussian"``, ``rattle_std``.
    """
    if not np.isfinite(temperature) or temperature < 0:
        raise ValueError(f"temperature must be ≥ 0 K, got {temperature!r}")
    gen = _rng(rng)
    sigma = float(sigma_300K) * np.sqrt(float(temperature) / 300.0)
    out = []
    for k in range(int(n)):
        a = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
        if "layer" in atoms.arrays:
            a.set_array("layer", np.asarray(atoms.arrays["layer"]).copy())
        a.positions += gen.normal(scale=sigma, size=a.positions.shape)
        a.info.update({"config_type": f"thermal_{temperature:g}K", "temperature": float(temperature),
                       "sampling": "gaussian", "rattle_std": sigma, "sample_index": k})
        out.append(a)
    return out


def _per_entry(values: Any, n: int, name: str) -> list[int]:
    if np.isscalar(values):
        return [int(values)] * n
    values = [int(v) for v in values]
    if len(values) != n:
        raise ValueError(f"{name} needs {n} entries, got {len(values)}")
    return values


def make_electron_dataset(output_dir: str | os.PathLike, settings: Mapping[str, Any] | None = None,
                          rng: np.random.Generator | int | None = None, progress: bool = True,
                          log: Callable[[str], None] | None = print) -> dict[str, Any]:
    """Generate, label, split and write the HedgeNet-Electron dataset (see the module docstring).

    Parameters
    ----------
    output_dir
        Output folder (created); receives ``electron_dataset.h5`` and ``dataset.json``.
    settings
        Overrides of :data:`DEFAULT_ELECTRON_DATASET`; unknown keys raise ``KeyError``.
    rng
        Random generator or seed (reproducible from an int seed).
    progress
        tqdm progress bar while labelling.
    log
        Called with one-line progress messages (None: silent).

    Returns
    -------
    dict
        The contents of ``dataset.json``: settings, seed, ``files``, ``counts`` per split and type.
    """
    from tqdm.auto import tqdm

    from ..phonon_dataset import rattled_configurations, stacking_configurations
    from ..reference.slater_koster import SlaterKosterSP3

    cfg = copy.deepcopy(DEFAULT_ELECTRON_DATASET)
    unknown = set(settings or {}) - set(cfg)
    if unknown:
        raise KeyError(f"unknown electron dataset setting(s) {sorted(unknown)}; known: {sorted(cfg)}")
    cfg.update(copy.deepcopy(dict(settings or {})))
    if cfg["thermal_method"] not in ("phonons", "rattle"):
        raise ValueError(f"thermal_method must be 'phonons' or 'rattle', got {cfg['thermal_method']!r}")
    seed = rng if isinstance(rng, (int, np.integer)) else None
    gen = _rng(rng)
    say = log or (lambda msg: None)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    temperatures = [float(t) for t in cfg["temperatures"]]
    n_thermal = _per_entry(cfg["n_thermal"], len(temperatures), "n_thermal")
    amplitudes = [float(a) for a in cfg["rattle_amplitudes"]]
    n_rattle = _per_entry(cfg["n_rattle"], len(amplitudes), "n_rattle")
    train_size = tuple(int(x) for x in cfg["train_supercell"])
    test_size = tuple(int(x) for x in cfg["test_supercell"])

    unit = bilayer_graphene(cfg["stacking"], size=(1, 1), a=float(cfg["lattice_constant"]),
                            interlayer=float(cfg["interlayer"]), vacuum=float(cfg["vacuum"]))
    if cfg["thermal_method"] == "phonons":
        from ..phonons import compute_force_constants, relax_positions
        from ..reference import ReferenceForceField
        from ..sampling import sample_configurations

        calc = ReferenceForceField()
        unit = relax_positions(unit, calc, fmax=float(cfg["relax_fmax"]))
        say(f"relaxed unit cell with the reference force field (interlayer "
            f"{unit.positions[unit.arrays['layer'] == 1, 2].mean() - unit.positions[unit.arrays['layer'] == 0, 2].mean():.3f} Å)")

        def thermal(size, temps, counts):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fc = compute_force_constants(unit, calc, [size[0], size[1], 1], distance=float(cfg["fc_distance"]),
                                             progress=progress)
                modes = fc.supercell_modes()
                configs = []
                for t, n in zip(temps, counts):
                    if n > 0:
                        configs += sample_configurations(modes, t, n, rng=gen, record_amplitudes=False)
            return modes.atoms, configs
    else:
        def thermal(size, temps, counts):
            cell = unit.repeat((size[0], size[1], 1))
            configs = []
            for t, n in zip(temps, counts):
                configs += thermal_rattles(cell, t, n, float(cfg["rattle_300K"]), rng=gen)
            return cell, configs

    supercell, configs = thermal(train_size, temperatures, n_thermal)
    say(f"{len(configs)} thermal {train_size[0]}x{train_size[1]} configurations ({cfg['thermal_method']})")
    configs += rattled_configurations(supercell, amplitudes, n_rattle, rng=gen)
    if int(cfg["n_stacking"]) > 0:
        configs += stacking_configurations(supercell, int(cfg["n_stacking"]), cfg["interlayer_range"],
                                           float(cfg["stacking_rattle"]), rng=gen)
    n_valid = int(round(float(cfg["valid_fraction"]) * len(configs)))
    order = gen.permutation(len(configs))
    splits = ["train"] * len(configs)
    for k in order[:n_valid]:
        splits[k] = "valid"
    test_tag = f"test_{test_size[0]}x{test_size[1]}"
    _, held_out = thermal(test_size, [float(cfg["test_temperature"])], [int(cfg["n_test"])])
    configs += held_out
    splits += [test_tag] * len(held_out)

    reference = SlaterKosterSP3(cutoff=float(cfg["reference_cutoff"]))
    items = []
    for atoms, split in tqdm(list(zip(configs, splits)), desc="labelling (SlaterKosterSP3)", disable=not progress):
        info = {k: v for k, v in atoms.info.items() if k not in ("mode_amplitudes",)}
        items.append((reference.get_hamiltonian(atoms), split, info))
    path = write_electron_dataset(out / "electron_dataset.h5", items,
                                  reference=f"SlaterKosterSP3(cutoff={cfg['reference_cutoff']})")

    counts: dict[str, dict[str, int]] = {}
    for atoms, split in zip(configs, splits):
        c = counts.setdefault(split, {})
        key = str(atoms.info.get("config_type"))
        c[key] = c.get(key, 0) + 1
    summary = {
        "kind": "electron",
        "package_version": __version__,
        "settings": cfg,
        "seed": None if seed is None else int(seed),
        "reference": "SlaterKosterSP3",
        "basis": reference.basis.to_dict(),
        "files": {"dataset": path.name},
        "n_atoms": {f"{train_size[0]}x{train_size[1]}": len(supercell), test_tag: len(held_out[0]) if held_out else 0},
        "counts": counts,
        "units": {"energy": "eV", "length": "Angstrom"},
        "wall_time_s": round(time.perf_counter() - t_start, 2),
    }
    atomic_json(out / "dataset.json", to_plain(summary))
    say(f"wrote {len(items)} Hamiltonians to {path} in {summary['wall_time_s']:.0f} s")
    return summary
