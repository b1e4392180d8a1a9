r"""Reference datasets for HedgeNet-Phonon: displaced supercells of AB bilayer graphene.

What is generated
-----------------
Starting from the AB bilayer unit cell, relaxed at fixed cell with the reference force field
(:class:`mlepi_ase.reference.ReferenceForceField`, REBO + Kolmogorov–Crespi), the generator builds

* **thermal** configurations of the training supercell (default 4×4×1, 64 atoms) at several
  temperatures, drawn from the harmonic Williams–Lax distribution of the *reference* force constants
  (:func:`mlepi_ase.sampling.sample_configurations`, quantum widths
  :math:`\sigma_\nu^2 = (\hbar/2\omega_\nu)\coth(\hbar\omega_\nu/2k_BT)`), so the model sees exactly
  the displacement statistics it will later be used for;
* **rattled** configurations: i.i.d. Gaussian displacements of several amplitudes (Å, per Cartesian
  component), which probe directions the harmonic sampling visits rarely; the small amplitudes
  (0.003–0.01 Å, well below the zero-point motion that every quantum thermal sample carries, even at
  50 K) pin down the harmonic force constants, i.e. the phonon frequencies;
* **stacking** configurations: the top layer rigidly slid by a random in-plane vector and moved to a
  random interlayer distance, plus a small rattle — they cover the inter-layer (Kolmogorov–Crespi)
  energy landscape far from the ground stacking;
* **slide** configurations: the top layer of the relaxed bilayer rigidly slid by a small in-plane vector
  (random direction, length uniform up to ``slide_max``) and moved by a small interlayer change (uniform
  within ``±slide_interlayer_delta``), no rattle.  Their forces are the inter-layer restoring forces alone,
  about 1 meV/Å per atom for a 0.05 Å slide; they pin the curvature of the stacking energy at its minimum,
  which sets the Γ-point shear and breathing frequencies (ω² = K / μ with K the curvature per cell and μ
  half the mass of one layer).  In the thermal and rattled configurations these forces are hidden under
  intra-layer forces of 0.2–5 eV/Å;

labels them with the reference force field (energy, forces, stress) and writes them as extended XYZ
with MACE's keys: ``REF_energy`` (eV) and ``REF_stress`` (Voigt ``xx yy zz yz xz xy``, eV/Å³, ASE sign)
in ``info``, ``REF_forces`` (eV/Å) and ``layer`` in ``arrays``, plus ``config_type``.  The 4×4×1 set is
split at random into train/valid/test files; a **held-out** test set of thermal configurations of a
larger supercell (default 6×6×1 at 300 K) checks transfer to cells the model never saw.  The reference
force constants of both supercells are saved as phonopy yaml files next to the data.

Files in the output folder: ``train.xyz``, ``valid.xyz``, ``test.xyz``, ``test_6x6.xyz`` (name from the
supercell), ``reference_phonons_4x4.yaml``, ``reference_phonons_6x6.yaml``, ``unitcell.xyz`` and
``dataset.json`` (settings, counts, seed, timings).  All files are written atomically.
"""

from __future__ import annotations

import copy
import os
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator

from ._files import atomic_json, atomic_write
from . import __version__
from .structures import bilayer_graphene

__all__ = [
    "DEFAULT_PHONON_DATASET",
    "REF_ENERGY",
    "REF_FORCES",
    "REF_STRESS",
    "rattled_configurations",
    "stacking_configurations",
    "slide_configurations",
    "label_configurations",
    "split_configurations",
    "write_extxyz",
    "read_phonon_dataset",
    "make_phonon_dataset",
]

REF_ENERGY = "REF_energy"
REF_FORCES = "REF_forces"
REF_STRESS = "REF_stress"
_XYZ_DECIMALS = 8  # ASE's extxyz writes positions as %16.8f

DEFAULT_PHONON_DATASET: dict[str, Any] = {
    "stacking": "AB",
    "lattice_constant": 2.46,
    "interlayer": 3.35,
    "vacuum": 20.0,
    "train_supercell": [4, 4],
    "test_supercell": [6, 6],
    "temperatures": [50.0, 150.0, 300.0, 600.0, 1000.0],
    "n_thermal": [16, 16, 40, 24, 12],
    "rattle_amplitudes": [0.003, 0.01, 0.03, 0.06],
    "n_rattle": [32, 24, 16, 8],
    "n_stacking": 32,
    "interlayer_range": [3.0, 4.2],
    "stacking_rattle": 0.01,
    "n_slide": 16,
    "slide_max": 0.2,
    "slide_interlayer_delta": 0.05,
    "valid_fraction": 0.1,
    "test_fraction": 0.1,
    "test_temperature": 300.0,
    "n_test_thermal": 16,
    "relax_fmax": 1e-5,
    "fc_distance": 0.01,
}
"""Default settings of :func:`make_phonon_dataset` (a plain dict; a YAML file may override keys)."""


def _rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def rattled_configurations(atoms: Atoms, amplitudes: Sequence[float], n_per_amplitude: Sequence[int] | int,
                           rng: np.random.Generator | int | None = None) -> list[Atoms]:
    """Copies of ``atoms`` with i.i.d. Gaussian displacements.

    Parameters
    ----------
    atoms
        Reference structure (keeps its ``layer`` array).
    amplitudes
        Standard deviations (Å) of every Cartesian displacement component.
    n_per_amplitude
        Number of configurations per amplitude (one int for all, or one per amplitude).
    rng
        Random generator or seed.

    Returns
    -------
    list of ase.Atoms
        ``info["config_type"] = "rattle_<amplitude>"``, ``info["rattle_amplitude"]`` (Å).
    """
    gen = _rng(rng)
    counts = [int(n_per_amplitude)] * len(amplitudes) if np.isscalar(n_per_amplitude) else list(n_per_amplitude)
    if len(counts) != len(amplitudes):
        raise ValueError(f"need one count per rattle amplitude: {len(counts)} counts, {len(amplitudes)} amplitudes")
    out = []
    for amp, n in zip(amplitudes, counts):
        if not np.isfinite(amp) or amp < 0:
            raise ValueError(f"rattle amplitude must be a non-negative length in Å, got {amp!r}")
        for _ in range(int(n)):
            a = _clean_copy(atoms)
            a.positions += gen.normal(scale=amp, size=a.positions.shape)
            a.info["config_type"] = f"rattle_{amp:g}"
            a.info["rattle_amplitude"] = float(amp)
            out.append(a)
    return out


def stacking_configurations(atoms: Atoms, n: int, interlayer_range: Sequence[float] = (3.0, 4.2),
                            rattle: float = 0.01, rng: np.random.Generator | int | None = None) -> list[Atoms]:
    """Bilayers with the top layer rigidly slid and moved to a random interlayer distance.

    Parameters
    ----------
    atoms
        Bilayer with ``arrays["layer"]`` (0 bottom, 1 top) and an in-plane cell ``cell[0], cell[1]``.
    n
        Number of configurations.
    interlayer_range
        Uniform range (Å) of the new distance between the mean planes of the two layers.
    rattle
        Gaussian displacement (Å) added to every atom afterwards.
    rng
        Random generator or seed.

    Returns
    -------
    list of ase.Atoms
        ``info`` keys ``config_type = "stacking"``, ``slide`` (3,) Å, ``interlayer`` (Å).
    """
    gen = _rng(rng)
    top = _two_layers(atoms, "stacking")
    lo, hi = (float(x) for x in interlayer_range)
    if not 0 < lo <= hi:
        raise ValueError(f"interlayer_range must be 0 < low <= high (Å), got {interlayer_range!r}")
    z = atoms.positions[:, 2]
    d0 = z[top].mean() - z[~top].mean()
    cell = np.asarray(atoms.cell)
    out = []
    for _ in range(int(n)):
        a = _clean_copy(atoms)
        frac = gen.random(2)
        slide = frac[0] * cell[0] + frac[1] * cell[1]
        slide[2] = 0.0
        d = gen.uniform(lo, hi)
        a.positions[top] += slide + np.array([0.0, 0.0, d - d0])
        a.positions += gen.normal(scale=rattle, size=a.positions.shape)
        a.wrap()
        a.info["config_type"] = "stacking"
        a.info["slide"] = slide
        a.info["interlayer"] = float(d)
        out.append(a)
    return out


def slide_configurations(atoms: Atoms, n: int, max_slide: float = 0.2, interlayer_delta: float = 0.05,
                         rng: np.random.Generator | int | None = None) -> list[Atoms]:
    """Bilayers with the top layer rigidly moved by a small slide and a small interlayer change.

    Parameters
    ----------
    atoms
        Bilayer with ``arrays["layer"]`` (0 bottom, 1 top), normally the relaxed ground stacking.
    n
        Number of configurations.
    max_slide
        Largest in-plane slide (Å); the length is uniform in ``[0, max_slide]``, the direction uniform.
    interlayer_delta
        Largest change of the interlayer distance (Å); uniform in ``[-interlayer_delta, interlayer_delta]``.
    rng
        Random generator or seed.

    Returns
    -------
    list of ase.Atoms
        ``info`` keys ``config_type = "slide"``, ``slide`` (3,) Å (in-plane slide and z change of the top
        layer).  The bottom layer is unchanged; nothing is rattled.
    """
    gen = _rng(rng)
    top = _two_layers(atoms, "slide")
    if not (max_slide >= 0 and interlayer_delta >= 0):
        raise ValueError(f"max_slide and interlayer_delta must be >= 0 (Å), got {max_slide}, {interlayer_delta}")
    out = []
    for _ in range(int(n)):
        a = _clean_copy(atoms)
        phi = gen.uniform(0.0, 2.0 * np.pi)
        length = gen.uniform(0.0, max_slide)
        shift = np.array([length * np.cos(phi), length * np.sin(phi), gen.uniform(-interlayer_delta,
                                                                                   interlayer_delta)])
        a.positions[top] += shift
        a.wrap()
        a.info["config_type"] = "slide"
        a.info["slide"] = shift
        out.append(a)
    return out


def _two_layers(atoms: Atoms, kind: str) -> np.ndarray:
    """Boolean mask of the top layer; raises unless ``arrays["layer"]`` holds exactly layers 0 and 1."""
    if "layer" not in atoms.arrays:
        raise ValueError(f"{kind} configurations need atoms.arrays['layer'] (0 bottom, 1 top)")
    layers = np.asarray(atoms.arrays["layer"])
    if set(np.unique(layers).tolist()) != {0, 1}:
        raise ValueError(f"{kind} configurations need exactly two layers 0 and 1, got {np.unique(layers)}")
    return layers == 1


def _clean_copy(atoms: Atoms) -> Atoms:
    """Copy with positions, cell, numbers, masses and layer only (no calculator, no extra arrays)."""
    a = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    if "layer" in atoms.arrays:
        a.set_array("layer", np.asarray(atoms.arrays["layer"], dtype=np.int64).copy())
    for key in ("config_type", "temperature", "sampling", "sample_index"):
        if key in atoms.info:
            a.info[key] = copy.deepcopy(atoms.info[key])
    return a


def label_configurations(configs: Sequence[Atoms], calculator: Calculator, stress: bool = True,
                         progress: bool = True, desc: str = "labelling") -> list[Atoms]:
    """Reference energies, forces (and stress) under MACE's keys.

    Parameters
    ----------
    configs
        Structures (not modified).
    calculator
        ASE calculator giving energy (eV), forces (eV/Å) and, with ``stress``, stress (eV/Å³).
    stress
        Also store ``REF_stress`` (Voigt, 6).
    progress
        tqdm progress bar.

    Returns
    -------
    list of ase.Atoms
        Clean copies, positions rounded to the 8 decimals (Å) that extended XYZ stores, with
        ``info["REF_energy"]``, ``arrays["REF_forces"]`` and ``info["REF_stress"]``.
    """
    from tqdm.auto import tqdm

    out = []
    for atoms in tqdm(configs, desc=desc, disable=not progress, leave=False):
        a = _clean_copy(atoms)
        # extended XYZ stores positions with 8 decimals: label exactly what will be written
        a.positions = np.round(a.positions, _XYZ_DECIMALS)
        a.calc = calculator
        energy = float(a.get_potential_energy())
        forces = np.array(a.get_forces(), dtype=np.float64)
        s = np.array(a.get_stress(voigt=True), dtype=np.float64) if stress else None
        a.calc = None
        if not np.isfinite(energy) or not np.all(np.isfinite(forces)):
            raise ValueError(f"the calculator returned non-finite energy/forces for a {a.info.get('config_type')} "
                             "configuration")
        a.info[REF_ENERGY] = energy
        a.arrays[REF_FORCES] = forces
        if s is not None:
            a.info[REF_STRESS] = s
        out.append(a)
    return out


def split_configurations(configs: Sequence[Atoms], valid_fraction: float, test_fraction: float,
                         rng: np.random.Generator | int | None = None) -> dict[str, list[Atoms]]:
    """Random train/valid/test split, stratified by ``info["config_type"]``.

    Every configuration type contributes ``round(fraction × count)`` configurations to valid and test
    (at least one each when the fraction is positive and the type has ≥ 3 members).

    Returns
    -------
    dict
        ``{"train": [...], "valid": [...], "test": [...]}``.
    """
    gen = _rng(rng)
    for name, f in (("valid_fraction", valid_fraction), ("test_fraction", test_fraction)):
        if not 0 <= f < 1:
            raise ValueError(f"{name} must be in [0, 1), got {f!r}")
    if valid_fraction + test_fraction >= 1:
        raise ValueError("valid_fraction + test_fraction must be < 1")
    groups: dict[str, list[int]] = {}
    for k, a in enumerate(configs):
        groups.setdefault(str(a.info.get("config_type", "default")), []).append(k)
    split: dict[str, list[int]] = {"train": [], "valid": [], "test": []}
    for idx in groups.values():
        idx = list(gen.permutation(idx))
        n = len(idx)
        n_valid = int(round(valid_fraction * n))
        n_test = int(round(test_fraction * n))
        if n >= 3:
            n_valid = max(n_valid, 1 if valid_fraction > 0 else 0)
            n_test = max(n_test, 1 if test_fraction > 0 else 0)
        split["valid"] += idx[:n_valid]
        split["test"] += idx[n_valid:n_valid + n_test]
        split["train"] += idx[n_valid + n_test:]
    return {name: [configs[k] for k in sorted(ids)] for name, ids in split.items()}


def write_extxyz(path: str | os.PathLike, configs: Sequence[Atoms]) -> Path:
    """Write configurations as extended XYZ atomically (temporary file + rename)."""
    from ase.io import write

    return atomic_write(path, lambda tmp: write(tmp, list(configs), format="extxyz"))


def read_phonon_dataset(path: str | os.PathLike, require_stress: bool = False) -> list[Atoms]:
    """Read an extended XYZ dataset with MACE's keys and check it.

    Raises
    ------
    FileNotFoundError
        Missing file.
    ValueError
        A configuration lacks ``REF_energy`` / ``REF_forces`` (or ``REF_stress`` when required), or the
        forces have the wrong shape.
    """
    from ase.io import read

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"dataset file {str(path)!r} does not exist")
    configs = read(path, index=":", format="extxyz")
    if not configs:
        raise ValueError(f"dataset file {str(path)!r} holds no configurations")
    for k, a in enumerate(configs):
        if REF_ENERGY not in a.info:
            raise ValueError(f"{path}: configuration {k} has no info['{REF_ENERGY}']")
        if REF_FORCES not in a.arrays or a.arrays[REF_FORCES].shape != (len(a), 3):
            raise ValueError(f"{path}: configuration {k} has no arrays['{REF_FORCES}'] of shape ({len(a)}, 3)")
        if require_stress and REF_STRESS not in a.info:
            raise ValueError(f"{path}: configuration {k} has no info['{REF_STRESS}']")
    return configs


def _per_entry(values: Sequence[Any] | Any, n: int, name: str) -> list[int]:
    out = [int(values)] * n if np.isscalar(values) else [int(v) for v in values]
    if len(out) != n:
        raise ValueError(f"{name} must have {n} entries, got {len(out)}")
    return out


def make_phonon_dataset(output_dir: str | os.PathLike, settings: Mapping[str, Any] | None = None,
                        calculator: Calculator | None = None, rng: np.random.Generator | int | None = None,
                        progress: bool = True, log: Callable[[str], None] | None = print) -> dict[str, Any]:
    """Generate, label, split and write the HedgeNet-Phonon dataset (see the module docstring).

    Parameters
    ----------
    output_dir
        Output folder (created).
    settings
        Overrides of :data:`DEFAULT_PHONON_DATASET`; unknown keys raise ``KeyError``.
    calculator
        Reference calculator; default :class:`mlepi_ase.reference.ReferenceForceField`.
    rng
        Random generator or seed (the whole dataset is reproducible from an int seed).
    progress
        tqdm progress bars.
    log
        Called with one-line progress messages (None: silent).

    Returns
    -------
    dict
        The contents of ``dataset.json``: settings, seed, file names, counts per split and type.
    """
    from .phonons import compute_force_constants, relax_positions
    from .sampling import sample_configurations

    cfg = copy.deepcopy(DEFAULT_PHONON_DATASET)
    unknown = set(settings or {}) - set(cfg)
    if unknown:
        raise KeyError(f"unknown phonon dataset setting(s) {sorted(unknown)}; known: {sorted(cfg)}")
    cfg.update(copy.deepcopy(dict(settings or {})))
    seed = rng if isinstance(rng, (int, np.integer)) else None
    gen = _rng(rng)
    say = log or (lambda msg: None)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if calculator is None:
        from .reference import ReferenceForceField

        calculator = ReferenceForceField()
    temperatures = [float(t) for t in cfg["temperatures"]]
    n_thermal = _per_entry(cfg["n_thermal"], len(temperatures), "n_thermal")
    amplitudes = [float(a) for a in cfg["rattle_amplitudes"]]
    n_rattle = _per_entry(cfg["n_rattle"], len(amplitudes), "n_rattle")
    t_start = time.perf_counter()

    unit = bilayer_graphene(cfg["stacking"], size=(1, 1), a=float(cfg["lattice_constant"]),
                            interlayer=float(cfg["interlayer"]), vacuum=float(cfg["vacuum"]))
    unit = relax_positions(unit, calculator, fmax=float(cfg["relax_fmax"]))
    write_extxyz(out / "unitcell.xyz", [unit])
    say(f"relaxed unit cell: max |F| = {unit.info['relax_max_force']:.1e} eV/Å")

    def phonons(size: Sequence[int]):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = compute_force_constants(unit, calculator, [int(size[0]), int(size[1]), 1],
                                             distance=float(cfg["fc_distance"]), progress=progress)
        tag = f"{int(size[0])}x{int(size[1])}"
        result.save(out / f"reference_phonons_{tag}.yaml")
        return result, tag

    train_fc, train_tag = phonons(cfg["train_supercell"])
    modes = train_fc.supercell_modes()
    supercell = modes.atoms
    say(f"reference force constants {train_tag}: {len(supercell)} atoms")
    configs: list[Atoms] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # low-frequency / imaginary-mode notices are in the sampler's info
        for temp, n in zip(temperatures, n_thermal):
            if n > 0:
                configs += sample_configurations(modes, temp, n, rng=gen, record_amplitudes=False)
    configs += rattled_configurations(supercell, amplitudes, n_rattle, rng=gen)
    if int(cfg["n_stacking"]) > 0:
        configs += stacking_configurations(supercell, int(cfg["n_stacking"]), cfg["interlayer_range"],
                                           float(cfg["stacking_rattle"]), rng=gen)
    if int(cfg["n_slide"]) > 0:
        configs += slide_configurations(supercell, int(cfg["n_slide"]), float(cfg["slide_max"]),
                                        float(cfg["slide_interlayer_delta"]), rng=gen)
    labelled = label_configurations(configs, calculator, progress=progress, desc=f"labelling {train_tag}")
    split = split_configurations(labelled, float(cfg["valid_fraction"]), float(cfg["test_fraction"]), rng=gen)
    files = {}
    for name, subset in split.items():
        if subset:
            files[name] = write_extxyz(out / f"{name}.xyz", subset).name

    test_fc, test_tag = phonons(cfg["test_supercell"])
    test_modes = test_fc.supercell_modes()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        held_out = sample_configurations(test_modes, float(cfg["test_temperature"]), int(cfg["n_test_thermal"]),
                                         rng=gen, record_amplitudes=False)
    held_out = label_configurations(held_out, calculator, progress=progress, desc=f"labelling {test_tag}")
    test_name = f"test_{test_tag}.xyz"
    files[f"test_{test_tag}"] = write_extxyz(out / test_name, held_out).name

    def counts(subset: Sequence[Atoms]) -> dict[str, int]:
        c: dict[str, int] = {}
        for a in subset:
            key = str(a.info.get("config_type"))
            c[key] = c.get(key, 0) + 1
        return c

    summary = {
        "kind": "phonon",
        "package_version": __version__,
        "settings": cfg,
        "seed": None if seed is None else int(seed),
        "calculator": type(calculator).__name__,
        "files": files,
        "reference_phonons": {train_tag: f"reference_phonons_{train_tag}.yaml",
                              test_tag: f"reference_phonons_{test_tag}.yaml"},
        "n_atoms": {train_tag: len(supercell), test_tag: len(test_modes.atoms)},
        "counts": {**{name: counts(subset) for name, subset in split.items()},
                   f"test_{test_tag}": counts(held_out)},
        "units": {"energy": "eV", "forces": "eV/Angstrom", "stress": "eV/Angstrom^3 (Voigt, ASE sign)"},
        "wall_time_s": round(time.perf_counter() - t_start, 2),
    }
    atomic_json(out / "dataset.json", summary)
    say(f"wrote {sum(len(s) for s in split.values())} {train_tag} and {len(held_out)} {test_tag} "
        f"configurations to {out} in {summary['wall_time_s']:.0f} s")
    return summary
