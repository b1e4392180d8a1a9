"""The end-to-end MLEPI pipeline: unit cell → phonons → thermal samples → Hamiltonians → O(T).

Steps (DESIGN.md §1, §5)::

    unit cell ─ force calculator (HedgeNet-Phonon or any ASE calculator) ─► phonopy force constants
      ─► Γ-point modes of the sampling supercell
      ─► per temperature: N harmonic (Williams–Lax) configurations, antithetic pairs by default
      ─► Hamiltonian calculator (HedgeNet-Electron or a reference model) ─► unfolded observables
      ─► Monte Carlo averages O(T) ± standard error, running convergence

Every configuration is a full, non-perturbative evaluation, so first- and second-order EPI (Fan and
Debye–Waller) enter on an equal footing.  Thermal expansion is outside the harmonic sampling.

Resumability: the force constants are saved (``phonopy_params.yaml``) and reused when the run is
restarted with the same settings, and per-sample observables are appended to one HDF5 file per
temperature (``samples_T{T}.h5``), so an interrupted run continues where it stopped with no lost or
duplicated samples.

Seeds: the configurations at temperature index ``t`` use the random stream
``SeedSequence(seed).spawn(n_T)[t]``; a run with the reference models and a run with the learned
models given the same seed therefore draw the same standard normal deviates.  With ``draw_basis: modes``
(default) deviate ν drives mode ν, so the two runs share the amplitudes x_ν/σ_ν, but their
configurations differ wherever near-degenerate modes of the two force models are ordered or mixed
differently (40–50 % RMS for the shipped model against REBO + KC on the 6×6×1 supercell); with
``draw_basis: cartesian`` the deviates are a mass-weighted Cartesian vector projected on each run's own
modes, so the configurations differ only as much as the two thermal covariances do (2–3 %), and the
per-configuration differences of an observable give a paired (common-random-number) estimate of the
learned models' error on it (:mod:`mlepi_ase.sampling`).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from ase import Atoms

from ._files import file_sha256

__all__ = ["PipelineConfig", "run_pipeline", "compare_runs", "make_force_calculator", "make_hamiltonian_calculator",
           "build_unitcell", "DEFAULT_PHONON_MODEL", "DEFAULT_ELECTRON_MODEL"]

_DATA = Path(__file__).resolve().parent.parent / "data"
DEFAULT_PHONON_MODEL = _DATA / "hedgenet_phonon" / "hedgenet_phonon.pt"
DEFAULT_ELECTRON_MODEL = _DATA / "hedgenet_electron" / "model.pt"


@dataclass
class PipelineConfig:
    """Settings of one pipeline run (YAML/JSON keys are the attribute names).

    Attributes
    ----------
    output : str
        Output folder.
    structure : dict
        ``{"builder": "ab-bilayer" | "aa-bilayer" | "monolayer", "a": 2.46, "interlayer": 3.35}`` or
        ``{"file": path}`` (any ASE-readable unit cell; layers detected if absent).
    force_calculator : str
        ``"hedgenet"`` (HedgeNet-Phonon, ``force_model``) or ``"reference"`` (REBO + KC).
    force_model : str or None
        HedgeNet-Phonon model file (default: the shipped model).
    relax : bool
        Relax the atomic positions (fixed cell) with the force calculator before the phonons.
    fc_supercell : list of int
        Supercell of the force constants (diagonal, phonopy convention).
    sample_supercell : list of int or None
        Supercell of the configurations (default: ``fc_supercell``; must be commensurate with it).
    temperatures : list of float
        K.
    n_samples : int
        Configurations per temperature (even with ``antithetic``).
    antithetic : bool
        Antithetic pairs (x, −x).
    classical : bool
        Classical instead of quantum (coth) mode amplitudes.
    seed : int
        Root seed.
    draw_basis : str
        ``"modes"`` (default) or ``"cartesian"``: basis of the seed's standard normals
        (:func:`mlepi_ase.sampling.sample_configurations`); ``"cartesian"`` pairs the draws of runs with
        different force models.
    hamiltonian_calculator : str
        ``"hedgenet"`` (HedgeNet-Electron, ``electron_model``), ``"sp3"`` (SlaterKosterSP3) or ``"pz"``.
    electron_model : str or None
        HedgeNet-Electron model file (default: the shipped model).
    kpoints : list of str
        Primitive special points of the stored band energies.
    fermi_velocity : str or None
        ``"auto"``, ``"monolayer"``, ``"bilayer"`` or None.
    fit_q : list of float
        |k − K| (1/Å) of the Fermi-velocity fit.
    fit_directions : list of float
        Directions (degrees) of the fit points around K; the cost per sample grows with
        ``len(fit_q) × len(fit_directions)`` diagonalisations.
    spectral_window : list of float
        ``[E_min, E_max]`` (eV, relative to the pristine Dirac energy) of the averaged spectral
        function near K; ``[]`` to skip.
    spectral_npoints : int
        k-points of the spectral-function path through K.
    broadening : float
        Lorentzian broadening of the spectral function (eV).
    executor : str
        ``"serial"``, ``"process"`` (``workers`` processes) or ``"dask"`` (a local dask cluster; pass a
        ``dask.distributed.Client`` to :func:`run_pipeline` to use a real cluster).
    workers : int
    reference_comparison : bool
        Also evaluate one configuration with the reference Hamiltonian for the model-vs-reference
        band figure (when the Hamiltonian calculator is a learned model).
    """

    output: str = "mlepi_run"
    structure: dict = field(default_factory=lambda: {"builder": "ab-bilayer"})
    force_calculator: str = "hedgenet"
    force_model: str | None = None
    relax: bool = True
    fc_supercell: list = field(default_factory=lambda: [6, 6, 1])
    sample_supercell: list | None = None
    temperatures: list = field(default_factory=lambda: [0.0, 100.0, 200.0, 300.0, 400.0, 500.0])
    n_samples: int = 8
    antithetic: bool = True
    classical: bool = False
    seed: int = 0
    draw_basis: str = "modes"
    hamiltonian_calculator: str = "hedgenet"
    electron_model: str | None = None
    kpoints: list = field(default_factory=lambda: ["G", "K", "M"])
    fermi_velocity: str | None = "auto"
    fit_q: list = field(default_factory=lambda: [0.01, 0.02, 0.03, 0.04])
    fit_directions: list = field(default_factory=lambda: [0.0, 60.0, 120.0, 180.0, 240.0, 300.0])
    spectral_window: list = field(default_factory=lambda: [-1.0, 1.0])
    spectral_npoints: int = 15
    broadening: float = 0.02
    executor: str = "serial"
    workers: int = 2
    reference_comparison: bool = True

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "PipelineConfig":
        """Read a YAML (or JSON) configuration; unknown keys are an error."""
        import yaml

        with open(path) as f:
            data = yaml.safe_load(f) or {}
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "PipelineConfig":
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown pipeline setting(s) {unknown}; known: {sorted(known)}")
        cfg = cls(**dict(data))
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad setting."""
        if self.force_calculator not in ("hedgenet", "reference"):
            raise ValueError(f"force_calculator must be 'hedgenet' or 'reference', got {self.force_calculator!r}")
        if self.hamiltonian_calculator not in ("hedgenet", "sp3", "pz"):
            raise ValueError(
                f"hamiltonian_calculator must be 'hedgenet', 'sp3' or 'pz', got {self.hamiltonian_calculator!r}")
        if any(float(t) < 0 for t in self.temperatures) or not self.temperatures:
            raise ValueError(f"temperatures must be a non-empty list of values ≥ 0 K, got {self.temperatures}")
        if int(self.n_samples) <= 0:
            raise ValueError(f"n_samples must be positive, got {self.n_samples}")
        if self.antithetic and int(self.n_samples) % 2:
            raise ValueError(f"n_samples must be even with antithetic pairs, got {self.n_samples}")
        from .sampling import DRAW_BASES

        if self.draw_basis not in DRAW_BASES:
            raise ValueError(f"draw_basis must be one of {DRAW_BASES}, got {self.draw_basis!r}")
        if self.executor not in ("serial", "process", "dask"):
            raise ValueError(f"executor must be 'serial', 'process' or 'dask', got {self.executor!r}")
        if len(self.fc_supercell) != 3:
            raise ValueError(f"fc_supercell must have three integers, got {self.fc_supercell}")


def build_unitcell(spec: Mapping[str, Any]) -> Atoms:
    """Unit cell from a ``structure`` setting (see :class:`PipelineConfig`)."""
    from .structures import bilayer_graphene, get_layers, monolayer_graphene

    spec = dict(spec)
    if "file" in spec:
        from ase.io import read

        atoms = read(spec.pop("file"))
        get_layers(atoms)
        return atoms
    builder = spec.pop("builder", "ab-bilayer")
    if builder in ("ab-bilayer", "aa-bilayer"):
        return bilayer_graphene(builder[:2].upper(), **spec)
    if builder == "monolayer":
        return monolayer_graphene(**spec)
    raise ValueError(f"unknown structure builder {builder!r}; use ab-bilayer, aa-bilayer, monolayer or file")


def _model_path(model: str | os.PathLike | None, default: Path) -> Path:
    """The model file a ``hedgenet`` calculator loads: ``model``, or the shipped ``default`` when None."""
    return Path(model) if model else default


def make_force_calculator(name: str, model: str | os.PathLike | None = None):
    """ASE calculator for the phonons: ``"hedgenet"`` or ``"reference"``."""
    if name == "reference":
        from .reference import ReferenceForceField

        return ReferenceForceField()
    if name == "hedgenet":
        from .calculators import HedgeNetPhononCalculator

        path = _model_path(model, DEFAULT_PHONON_MODEL)
        if not path.exists():
            raise FileNotFoundError(f"HedgeNet-Phonon model file {path} not found")
        return HedgeNetPhononCalculator(path)
    raise ValueError(f"unknown force calculator {name!r}")


def make_hamiltonian_calculator(name: str, model: str | os.PathLike | None = None):
    """Hamiltonian calculator: ``"hedgenet"``, ``"sp3"`` or ``"pz"``."""
    if name == "sp3":
        from .reference import SlaterKosterSP3

        return SlaterKosterSP3()
    if name == "pz":
        from .reference import MoonKoshinoPz

        return MoonKoshinoPz()
    if name == "hedgenet":
        from .calculators.electron import HedgeNetElectronCalculator

        path = _model_path(model, DEFAULT_ELECTRON_MODEL)
        if not path.exists():
            raise FileNotFoundError(f"HedgeNet-Electron model file {path} not found")
        return HedgeNetElectronCalculator(path)
    raise ValueError(f"unknown Hamiltonian calculator {name!r}")


def _make_executor(cfg: PipelineConfig, client: Any):
    if client is not None:
        return client, None
    if cfg.executor == "serial":
        return None, None
    if cfg.executor == "process":
        import concurrent.futures as cf
        import multiprocessing as mp

        pool = cf.ProcessPoolExecutor(max_workers=int(cfg.workers), mp_context=mp.get_context("spawn"))
        return pool, pool.shutdown
    from dask.distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=int(cfg.workers), threads_per_worker=1, processes=True,
                           dashboard_address=None)
    dclient = Client(cluster)

    def close():
        dclient.close()
        cluster.close()

    return dclient, close


def _model_fingerprints(cfg: PipelineConfig) -> dict[str, str]:
    """SHA-256 of the ML model files a run uses, keyed ``force_model_sha256`` / ``electron_model_sha256``
    (only for the ``hedgenet`` calculators), so that resuming after a model file was replaced in place
    recomputes instead of reusing force constants or samples of the old model."""
    found = {}
    if cfg.force_calculator == "hedgenet":
        found["force_model_sha256"] = file_sha256(_model_path(cfg.force_model, DEFAULT_PHONON_MODEL))
    if cfg.hamiltonian_calculator == "hedgenet":
        found["electron_model_sha256"] = file_sha256(_model_path(cfg.electron_model, DEFAULT_ELECTRON_MODEL))
    return found


def _settings_key(cfg: PipelineConfig, fingerprints: Mapping[str, str]) -> dict:
    key = {"structure": cfg.structure, "force_calculator": cfg.force_calculator,
           "force_model": str(cfg.force_model), "relax": cfg.relax, "fc_supercell": list(cfg.fc_supercell)}
    if "force_model_sha256" in fingerprints:
        key["force_model_sha256"] = fingerprints["force_model_sha256"]
    return key


def _phonons(cfg: PipelineConfig, out: Path, log, fingerprints: Mapping[str, str]) -> Any:
    """Force constants, reused from ``out/phonopy_params.yaml`` when the settings match."""
    from .phonons import compute_force_constants, load_phonons, relax_positions

    fc_file = out / "phonopy_params.yaml"
    key_file = out / "phonons_settings.json"
    key = _settings_key(cfg, fingerprints)
    if fc_file.exists() and key_file.exists() and json.loads(key_file.read_text()) == key:
        log(f"reusing force constants from {fc_file}")
        return load_phonons(fc_file)
    unit = build_unitcell(cfg.structure)
    calc = make_force_calculator(cfg.force_calculator, cfg.force_model)
    if cfg.relax:
        unit = relax_positions(unit, calc)
    log(f"force constants: {len(unit)}-atom unit cell, supercell {cfg.fc_supercell}, calculator {cfg.force_calculator}")
    result = compute_force_constants(unit, calc, np.diag(cfg.fc_supercell), progress=True)
    result.save(fc_file)
    key_file.write_text(json.dumps(key))
    # continue from the file, so a first run and a resumed run use bit-identical force constants
    return load_phonons(fc_file)


def run_pipeline(
    cfg: PipelineConfig | Mapping[str, Any] | str | os.PathLike,
    client: Any = None,
    verbose: bool = True,
) -> dict:
    """Run the pipeline and write results and figures to ``cfg.output``.

    Parameters
    ----------
    cfg
        Configuration object, dict, or YAML file path.
    client
        Optional executor for the samples: a ``concurrent.futures.Executor`` or a
        ``dask.distributed.Client`` (e.g. of a cluster spanning many machines); overrides
        ``cfg.executor``.
    verbose
        Print progress messages (tqdm bars are shown in any case).

    Returns
    -------
    dict
        The content of ``results.json``: per temperature the estimates (mean, standard error,
        number of samples) of every scalar observable, the pristine (no-EPI) values, the Γ-point
        phonon modes and timings.
    """
    from functools import partial

    from .averaging import run_samples
    from .observables import ObservableSpec, UnfoldingMap, evaluate_configuration
    from .sampling import sample_configurations
    from .structures import get_layers

    if isinstance(cfg, (str, os.PathLike)):
        cfg = PipelineConfig.from_file(cfg)
    elif isinstance(cfg, Mapping):
        cfg = PipelineConfig.from_dict(cfg)
    cfg.validate()
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    log = print if verbose else (lambda *a, **k: None)
    timings: dict[str, float] = {}
    t_all = time.perf_counter()

    with open(out / "config.json", "w") as f:
        json.dump(asdict(cfg), f, indent=2)

    # model files by content: force constants or samples of another model file are not reused on resume
    model_fingerprints = _model_fingerprints(cfg)
    t = time.perf_counter()
    phon = _phonons(cfg, out, log, model_fingerprints)
    timings["phonons_s"] = time.perf_counter() - t
    band_png = out / "phonon_bands.png"
    if not band_png.exists():
        phon.plot_bands(band_png)
    sample_sc = np.diag(cfg.sample_supercell or cfg.fc_supercell)
    modes = phon.supercell_modes(sample_sc)
    reference_supercell = modes.atoms
    get_layers(reference_supercell)
    primitive = phon.unitcell
    if "layer" not in primitive.arrays:
        get_layers(primitive)
    unfolding = UnfoldingMap.from_structures(primitive, reference_supercell)

    calc = make_hamiltonian_calculator(cfg.hamiltonian_calculator, cfg.electron_model)
    spec_kwargs: dict[str, Any] = {"unfolding": unfolding, "kpoints": tuple(cfg.kpoints),
                                   "fermi_velocity": cfg.fermi_velocity, "q": tuple(cfg.fit_q),
                                   "directions": tuple(cfg.fit_directions)}
    pristine_spec = ObservableSpec(**spec_kwargs)
    pristine = evaluate_configuration(reference_supercell, calc, pristine_spec)
    e_dirac = _dirac_energy(pristine)
    spectral_kpts = spectral_energies = None
    if cfg.spectral_window:
        spectral_kpts, spectral_energies = _spectral_grid(unfolding, cfg, e_dirac)
        spec_kwargs.update(spectral_kpts=spectral_kpts, spectral_energies=spectral_energies,
                           broadening=cfg.broadening)
    spec = ObservableSpec(**spec_kwargs)
    evaluate = partial(evaluate_configuration, calculator=calc, spec=spec)

    executor, close = _make_executor(cfg, client)
    seeds = np.random.SeedSequence(int(cfg.seed)).spawn(len(cfg.temperatures))
    per_t: dict[str, Any] = {}
    running: dict[str, Any] = {}
    spectra: dict[str, np.ndarray] = {}
    first_config = None
    try:
        for temp, seed in zip(cfg.temperatures, seeds):
            t = time.perf_counter()
            configs = sample_configurations(modes, float(temp), int(cfg.n_samples), antithetic=cfg.antithetic,
                                            classical=cfg.classical, rng=np.random.default_rng(seed),
                                            draw_basis=cfg.draw_basis)
            if first_config is None and float(temp) > 0:
                first_config = configs[0]
            meta = {"temperature": float(temp), "n_samples": int(cfg.n_samples), "seed": int(cfg.seed),
                    "hamiltonian_calculator": cfg.hamiltonian_calculator, "antithetic": cfg.antithetic,
                    "classical": cfg.classical, **model_fingerprints}
            if cfg.draw_basis != "modes":  # absent for the default, so runs stored before the option resume
                meta["draw_basis"] = cfg.draw_basis
            results = run_samples(evaluate, configs, out / f"samples_T{float(temp):g}.h5", executor=executor,
                                  metadata=meta, progress=True, description=f"T = {float(temp):g} K")
            key = f"{float(temp):g}"
            per_t[key] = {name: est.to_dict() for name, est in
                          results.estimates(antithetic=cfg.antithetic, keys=_scalar_keys(results)).items()}
            if "v_F" in results.keys():
                running[key] = results.running("v_F", antithetic=cfg.antithetic)
            if "A_kE" in results.keys():
                spectra[key] = np.mean(results._get("A_kE"), axis=0)
            timings[f"samples_T{key}_s"] = time.perf_counter() - t
            if "v_F" in per_t[key]:
                log(f"T = {key} K: v_F = {per_t[key]['v_F']['mean']:.4f} ± {per_t[key]['v_F']['stderr']:.4f} eV·Å")
    finally:
        if close is not None:
            close()

    summary = {
        "config": asdict(cfg),
        "n_atoms_supercell": len(reference_supercell),
        "pristine": {k: _plain(v) for k, v in pristine.items() if np.ndim(v) == 0},
        "dirac_energy_eV": e_dirac,
        "gamma_modes": phon.gamma_mode_table(),
        "temperatures": per_t,
        "convergence": {k: {"n_samples": np.asarray(r.n_samples).tolist(), "mean": np.asarray(r.mean).tolist(),
                            "stderr": np.asarray(r.stderr).tolist()} for k, r in running.items()},
        "timings": timings,
    }
    _figures(cfg, out, summary, running, spectra, spectral_kpts, spectral_energies, e_dirac, first_config, calc,
             unfolding, primitive)
    summary["timings"]["total_s"] = time.perf_counter() - t_all
    tmp = out / "results.json.tmp"
    with open(tmp, "w") as f:
        json.dump(summary, f, indent=2, default=_plain)
    os.replace(tmp, out / "results.json")
    log(f"results written to {out / 'results.json'} ({summary['timings']['total_s']:.0f} s)")
    return summary


_PAIRING_KEYS = ("seed", "n_samples", "antithetic", "classical", "draw_basis", "fc_supercell", "sample_supercell")


def compare_runs(run_a: str | os.PathLike, run_b: str | os.PathLike, observable: str = "v_F") -> dict:
    """Paired difference ``O_a − O_b`` of two finished pipeline runs that drew with the same seed.

    The two runs (e.g. learned and reference models, or two learned phonon models) must share the sampling
    settings (seed, samples, antithetic pairs, classical/quantum widths, draw basis, supercells); their stored
    per-sample values are then paired sample by sample (:func:`mlepi_ase.averaging.paired_difference`).
    With ``draw_basis: cartesian`` the draws of different force models are paired configurations and the
    standard error of the difference is far below that of independent draws; with ``modes`` the pairing
    holds only while the two models order their near-degenerate modes alike (module docstring).

    Parameters
    ----------
    run_a, run_b
        Output folders of :func:`run_pipeline` (``results.json`` and ``samples_T*.h5``).
    observable
        Scalar per-sample observable (``v_F``, ``gamma1``, ``gap``, ...).

    Returns
    -------
    dict
        ``{"run_a", "run_b", "observable", "draw_basis", "temperatures": {T: {...}}}`` where each temperature
        (the keys of both runs' ``results.json``) holds :meth:`PairedDifference.to_dict` plus
        ``within_2_sigma`` and, when the pristine structure has the observable, ``renormalization``: each
        run's ``O(T) − O(no EPI)`` (``a``, ``b``), their difference and that relative to ``b``'s.

    Raises
    ------
    ValueError
        Sampling settings differ, or the runs share no temperature.
    FileNotFoundError
        A folder lacks ``results.json``.
    """
    from .averaging import SampleStore, paired_difference

    runs = []
    for folder in (Path(run_a), Path(run_b)):
        results = folder / "results.json"
        if not results.is_file():
            raise FileNotFoundError(f"{results} not found: give the output folder of a finished pipeline run")
        runs.append(json.loads(results.read_text()))
    (a, b), defaults = runs, asdict(PipelineConfig())
    settings = {k: (a["config"].get(k, defaults[k]), b["config"].get(k, defaults[k])) for k in _PAIRING_KEYS}
    differ = {k: pair for k, pair in settings.items() if pair[0] != pair[1]}
    if differ:
        raise ValueError(f"the runs did not draw the same configurations; settings differ: {differ}")
    temps = sorted(set(a["temperatures"]) & set(b["temperatures"]), key=float)
    if not temps:
        raise ValueError("the two runs share no temperature")
    antithetic = bool(a["config"]["antithetic"])
    out = {}
    for t in temps:
        stores = [SampleStore(Path(folder) / f"samples_T{t}.h5").load() for folder in (run_a, run_b)]
        d = paired_difference(*stores, observable, antithetic=antithetic).to_dict()
        d["within_2_sigma"] = bool(abs(d["mean"]) <= 2 * d["stderr"])
        pristine = [r["pristine"].get(observable) for r in (a, b)]
        if None not in pristine:
            ra, rb = (r["temperatures"][t][observable]["mean"] - p for r, p in zip((a, b), pristine))
            diff = d["mean"] - (pristine[0] - pristine[1])
            d["renormalization"] = {"a": ra, "b": rb, "difference": diff,
                                    "relative_difference": diff / rb if rb != 0 else float("nan")}
        out[t] = d
    return {"run_a": str(run_a), "run_b": str(run_b), "observable": observable,
            "draw_basis": settings["draw_basis"][0], "temperatures": out}


def _plain(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v


def _scalar_keys(results) -> list[str]:
    keys = []
    for k in results.keys():
        if np.ndim(results._get(k)) == 1:
            keys.append(k)
    return keys


def _dirac_energy(pristine: Mapping[str, Any]) -> float:
    if "E_0" in pristine:
        return float(pristine["E_0"])
    e_k = np.asarray(pristine.get("E_K", [0.0]))
    return float(np.mean(e_k[len(e_k) // 2 - 1: len(e_k) // 2 + 1]))


def _spectral_grid(unfolding, cfg: PipelineConfig, e_dirac: float) -> tuple[np.ndarray, np.ndarray]:
    """A short M–K–Γ-direction path through K (± 0.15 1/Å) and the energy grid of A(k, E)."""
    from .observables import primitive_kpoint

    k_red = primitive_kpoint(unfolding, "K")
    k_cart = unfolding.reduced_to_cartesian(k_red[None])[0]
    direction = -k_cart / np.linalg.norm(k_cart)  # towards Γ
    s = np.linspace(-0.15, 0.15, int(cfg.spectral_npoints))
    path = unfolding.cartesian_to_reduced(k_cart[None] + s[:, None] * direction[None])
    energies = e_dirac + np.linspace(cfg.spectral_window[0], cfg.spectral_window[1], 161)
    return path, energies


def _figures(cfg, out, summary, running, spectra, spectral_kpts, spectral_energies, e_dirac, config, calc,
             unfolding, primitive) -> None:
    """The run's PNG figures: v_F(T), convergence, averaged A(k, E) near K, one configuration's bands."""
    from .averaging import plot_convergence
    from .observables import band_energies, plot_spectral_function, unfold
    from .plotting import plot_bands, plot_vf_temperature
    from .tb import special_path

    per_t = summary["temperatures"]
    label = f"H: {cfg.hamiltonian_calculator}, forces: {cfg.force_calculator}"
    if per_t and all("v_F" in v for v in per_t.values()):
        temps = [float(k) for k in per_t]
        plot_vf_temperature({label: (temps, [v["v_F"]["mean"] for v in per_t.values()],
                                     [v["v_F"]["stderr"] for v in per_t.values()])},
                            out / "fermi_velocity_vs_T.png", pristine={label: summary["pristine"].get("v_F")})
    if running:
        hottest = max(running, key=float)
        plot_convergence(running[hottest], out / "convergence.png", label="v_F", unit="eV·Å",
                         reference=summary["pristine"].get("v_F"), title=f"v_F convergence, T = {hottest} K")
    if spectra:
        hottest = max(spectra, key=float)
        s = np.linspace(-0.15, 0.15, len(spectral_kpts))
        plot_spectral_function(spectra[hottest], s, spectral_energies, out / "spectral_function_K.png",
                               reference_energy=e_dirac, xlabel="k − K along K→Γ (1/Å)",
                               title=f"⟨A(k, E)⟩ near K, T = {hottest} K")
    if config is not None:
        path = special_path(primitive, "GMKG", 60)
        sets, labels = [], []
        calcs = [(cfg.hamiltonian_calculator, calc)]
        if cfg.reference_comparison and cfg.hamiltonian_calculator == "hedgenet":
            calcs.append(("sp3 reference", make_hamiltonian_calculator("sp3")))
        for name, c in calcs:
            spectrum = unfold(c.get_hamiltonian(config), unfolding, path.kpts)
            sets.append(band_energies(spectrum, np.arange(spectrum.n_primitive_orbitals)))
            labels.append(name)
        plot_bands(path, sets, labels, out / "bands_one_configuration.png", reference_energy=e_dirac,
                   window=(-3, 3), title=f"unfolded bands, one configuration at {config.info.get('temperature')} K")
