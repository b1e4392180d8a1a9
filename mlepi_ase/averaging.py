r"""Monte Carlo thermal averages of per-configuration observables, with resumable HDF5 storage.

Estimator
---------
For configurations ``x_i`` drawn from the harmonic (Williams–Lax) distribution
(:func:`mlepi_ase.sampling.sample_configurations`) the thermal average of an observable is estimated by

    O(T) ≈ Ō = (1/N) Σ_i O(x_i),       SE(Ō) = s / √N,   s² = (1/(N − 1)) Σ_i (O(x_i) − Ō)²,

the sample standard deviation over √N (for array observables element by element).  With antithetic
sampling, consecutive configurations ``(x_2j, x_2j+1) = (x, −x)`` are *not* independent; their pair means
``y_j = ½ [O(x_2j) + O(x_2j+1)]`` are, so the estimate is the mean of the ``N/2`` pair means and its
standard error ``s_y / √(N/2)``.  Odd orders of the displacement cancel inside every pair, which is why
the antithetic error is smaller for the (even, Fan + Debye–Waller) temperature shifts.  Pairs are
identified by the sample index (``2j`` and ``2j + 1``); an incomplete pair is left out and counted.

Paired differences (common random numbers): two runs that evaluate *the same draws* with different
models (same seed; with ``draw_basis="cartesian"`` the configurations of two force models differ only as
much as their thermal covariances do, :mod:`mlepi_ase.sampling`) give the difference of their averages
from the per-unit differences ``d_i = O_a(x_i) − O_b(x_i)``:

    Ō_a − Ō_b = (1/N) Σ_i d_i,     SE = s_d / √N,     s_d² = s_a² + s_b² − 2 ρ s_a s_b,

so a per-configuration correlation ρ close to 1 removes most of the sampling noise from the difference,
where independent draws would leave ``√(SE_a² + SE_b²)`` (:func:`paired_difference`).

The running estimate after the first ``m`` units (samples or pairs) gives the convergence curve; its
standard error falls as ``1/√N`` (:func:`plot_convergence` draws the reference line).

Storage and resuming
--------------------
:func:`run_samples` appends every sample's result to an HDF5 file the moment it is computed (the file is
opened, written and closed for each sample, so nothing waits in a buffer).  Layout::

    /                 attrs: format = "mlepi_ase.samples", version, metadata (JSON)
    /index            (n,) int64      sample index of every stored row, written last
    /fingerprint      (n, 4) float64  checksum of the configuration (NaN when the task is not Atoms)
    /values/<key>     (n, *shape)     float64 (or complex128) per observable

A row counts only once its index is written, which happens after its values; a run killed in between
leaves extra value rows that the next append overwrites.  On restart the stored indices are skipped,
and the fingerprints of the stored rows are compared with the configurations given, so a resumed run
with a different seed or structure is refused instead of silently mixed.  Results are returned sorted by
sample index, so serial, thread-pool, process-pool and dask runs give identical numbers for the same
configurations.

Executors
---------
``executor`` may be any :class:`concurrent.futures.Executor` (``ThreadPoolExecutor``,
``ProcessPoolExecutor``, ``client.get_executor()`` of dask.distributed) or a ``dask.distributed.Client``
itself (its executor is used).  The per-sample function must then be picklable: a top-level function,
or ``functools.partial`` of one, e.g. ``partial(evaluate_configuration, calculator=calc, spec=spec)``
from :mod:`mlepi_ase.observables`.  To spread a run over many machines start a dask scheduler and
workers there and pass ``Client("tcp://scheduler:8786")``; only this process writes the HDF5 file.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
from ase import Atoms

__all__ = [
    "Estimate",
    "RunningEstimate",
    "mc_estimate",
    "running_estimate",
    "PairedDifference",
    "paired_difference",
    "SampleResults",
    "SampleStore",
    "atoms_fingerprint",
    "run_samples",
    "plot_convergence",
]

FORMAT = "mlepi_ase.samples"
VERSION = 1


# ---------------------------------------------------------------------------------------------
# estimators
# ---------------------------------------------------------------------------------------------
@dataclass
class Estimate:
    """Monte Carlo estimate of one observable.

    Attributes
    ----------
    mean, stderr : float or numpy.ndarray
        Estimate and its standard error (shape of the observable); stderr is NaN with fewer than 2 units.
    n_samples : int
        Configurations used.
    n_units : int
        Independent units (samples, or antithetic pairs).
    antithetic : bool
    n_dropped : int
        Samples left out (incomplete antithetic pairs).
    std : float or numpy.ndarray
        Standard deviation of the units (ddof = 1).
    """

    mean: Any
    stderr: Any
    n_samples: int
    n_units: int
    antithetic: bool
    n_dropped: int = 0
    std: Any = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (arrays as nested lists)."""
        conv = lambda a: a.tolist() if isinstance(a, np.ndarray) else (None if a is None else float(a))  # noqa: E731
        return {
            "mean": conv(self.mean),
            "stderr": conv(self.stderr),
            "std": conv(self.std),
            "n_samples": self.n_samples,
            "n_units": self.n_units,
            "antithetic": self.antithetic,
            "n_dropped": self.n_dropped,
        }


@dataclass
class RunningEstimate:
    """Running mean and standard error after 1, 2, … units.

    Attributes
    ----------
    n_samples : numpy.ndarray, shape (n_units,), int64
        Configurations used after each unit (``2 m`` for antithetic pairs).
    mean, stderr : numpy.ndarray, shape (n_units, *shape)
        stderr is NaN for the first unit.
    antithetic : bool
    """

    n_samples: np.ndarray
    mean: np.ndarray
    stderr: np.ndarray
    antithetic: bool


def _units(values: np.ndarray, antithetic: bool, indices: np.ndarray | None) -> tuple[np.ndarray, int, int]:
    """Independent units (samples or pair means), samples used, samples dropped."""
    v = np.asarray(values)
    if v.ndim == 0:
        raise ValueError("values must have a leading sample axis")
    if v.dtype.kind not in "biufc":
        raise ValueError(f"values must be numbers, got dtype {v.dtype}")
    v = v.astype(np.complex128 if v.dtype.kind == "c" else np.float64)
    n = len(v)
    idx = np.arange(n) if indices is None else np.asarray(indices, dtype=np.int64)
    if idx.shape != (n,):
        raise ValueError(f"indices must have shape ({n},), got {idx.shape}")
    if len(np.unique(idx)) != n:
        raise ValueError("duplicate sample indices")
    order = np.argsort(idx, kind="stable")
    v, idx = v[order], idx[order]
    if not antithetic:
        return v, n, 0
    first = np.nonzero(idx % 2 == 0)[0]
    first = first[first + 1 < n]
    ok = first[idx[first + 1] == idx[first] + 1]  # rows 2j and 2j + 1 both present (idx sorted, unique)
    units = 0.5 * (v[ok] + v[ok + 1])
    return units, 2 * len(ok), n - 2 * len(ok)


def mc_estimate(values: np.ndarray | Sequence, antithetic: bool = False, indices: np.ndarray | None = None) -> Estimate:
    """Monte Carlo mean and standard error (see the module docstring).

    Parameters
    ----------
    values : array_like, shape (n, *shape)
        One row per sample.
    antithetic
        Consecutive samples ``2j, 2j+1`` are antithetic pairs: average them first.
    indices : array_like, shape (n,), optional
        Sample index of every row (default 0 … n − 1); rows are sorted by it.

    Returns
    -------
    Estimate
    """
    units, used, dropped = _units(values, antithetic, indices)
    m = len(units)
    if m == 0:
        raise ValueError("no complete samples (or antithetic pairs) to average")
    mean = units.mean(axis=0)
    if m > 1:
        std = units.std(axis=0, ddof=1)
        se = std / np.sqrt(m)
    else:
        std = np.full_like(mean, np.nan, dtype=np.float64) if np.ndim(mean) else np.nan
        se = std
    scalar = lambda a: float(a) if np.ndim(a) == 0 and not np.iscomplexobj(a) else a  # noqa: E731
    return Estimate(scalar(mean), scalar(se), used, m, bool(antithetic), dropped, scalar(std))


def running_estimate(values: np.ndarray | Sequence, antithetic: bool = False, indices: np.ndarray | None = None) -> RunningEstimate:
    """Running mean and standard error after each unit (convergence curve).

    Uses shifted cumulative sums (shift = first unit) so that small spreads on large values keep their
    precision; the last entry equals :func:`mc_estimate`.

    Returns
    -------
    RunningEstimate
    """
    units, _, _ = _units(values, antithetic, indices)
    m = len(units)
    if m == 0:
        raise ValueError("no complete samples (or antithetic pairs) to average")
    shifted = units - units[0]
    count = np.arange(1, m + 1).reshape((m,) + (1,) * (units.ndim - 1))
    s1 = np.cumsum(shifted, axis=0)
    s2 = np.cumsum(np.abs(shifted) ** 2, axis=0)
    mean = units[0] + s1 / count
    with np.errstate(invalid="ignore", divide="ignore"):
        var = (s2 - np.abs(s1) ** 2 / count) / (count - 1)
        se = np.sqrt(np.clip(var, 0.0, None) / count)
    se[0] = np.nan
    per_unit = 2 if antithetic else 1
    return RunningEstimate(per_unit * np.arange(1, m + 1), mean, se, bool(antithetic))


@dataclass
class PairedDifference:
    """Difference of two runs' averages over the same draws (:func:`paired_difference`).

    Attributes
    ----------
    difference : Estimate
        Mean of ``O_a − O_b`` over the matched units and its (paired) standard error.
    correlation : float
        Pearson correlation of the two runs' units (NaN with fewer than 2 units or no spread).
    unpaired_stderr : float
        ``√(SE_a² + SE_b²)`` of the same units: the standard error the difference would have if the
        draws of the two runs were independent.
    """

    difference: Estimate
    correlation: float
    unpaired_stderr: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict."""
        return {**self.difference.to_dict(), "correlation": float(self.correlation),
                "unpaired_stderr": float(self.unpaired_stderr)}


def paired_difference(a: "SampleResults", b: "SampleResults", key: str, antithetic: bool = False) -> PairedDifference:
    """Difference ``O_a − O_b`` of a scalar observable over the draws both runs hold (module docstring).

    Parameters
    ----------
    a, b
        Per-sample results of two runs with the same seed (and sample indices); only sample indices present
        in both are used, and with ``antithetic`` only complete pairs of them.
    key
        Scalar observable (one number per sample).
    antithetic
        Average antithetic pairs before differencing.

    Returns
    -------
    PairedDifference

    Raises
    ------
    ValueError
        No common samples, or an observable with more than one number per sample.
    """
    common = np.intersect1d(a.indices, b.indices)
    if len(common) == 0:
        raise ValueError("the two runs hold no samples with the same index")
    rows = []
    for run in (a, b):
        v = np.asarray(run._get(key))
        if v.ndim != 1:
            raise ValueError(f"paired_difference needs a scalar observable; {key!r} has shape {v.shape[1:]} per sample")
        order = np.argsort(run.indices, kind="stable")  # SampleResults made by hand need not be sorted
        rows.append(v[order[np.searchsorted(run.indices[order], common)]])
    va, vb = rows
    difference = mc_estimate(va - vb, antithetic, common)
    ua, _, _ = _units(va, antithetic, common)
    ub, _, _ = _units(vb, antithetic, common)
    if len(ua) > 1 and ua.std() > 0 and ub.std() > 0:
        correlation = float(np.corrcoef(ua, ub)[0, 1])
    else:
        correlation = float("nan")
    unpaired = float(np.hypot(mc_estimate(va, antithetic, common).stderr, mc_estimate(vb, antithetic, common).stderr))
    return PairedDifference(difference, correlation, unpaired)


# ---------------------------------------------------------------------------------------------
# results and storage
# ---------------------------------------------------------------------------------------------
@dataclass
class SampleResults:
    """Per-sample results, sorted by sample index.

    Attributes
    ----------
    indices : numpy.ndarray, shape (n,), int64
    values : dict of str → numpy.ndarray, shape (n, *shape)
    metadata : dict
    """

    indices: np.ndarray
    values: dict[str, np.ndarray]
    metadata: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.indices)

    def keys(self) -> list[str]:
        """Observable names."""
        return list(self.values)

    def estimate(self, key: str, antithetic: bool = False) -> Estimate:
        """:func:`mc_estimate` of one observable."""
        return mc_estimate(self._get(key), antithetic, self.indices)

    def running(self, key: str, antithetic: bool = False) -> RunningEstimate:
        """:func:`running_estimate` of one observable."""
        return running_estimate(self._get(key), antithetic, self.indices)

    def estimates(self, antithetic: bool = False, keys: Iterable[str] | None = None) -> dict[str, Estimate]:
        """Estimates of all (or the given) observables."""
        return {k: self.estimate(k, antithetic) for k in (self.values if keys is None else keys)}

    def _get(self, key: str) -> np.ndarray:
        if key not in self.values:
            raise KeyError(f"no observable {key!r}; have {sorted(self.values)}")
        return self.values[key]


def atoms_fingerprint(task: Any) -> np.ndarray:
    """Checksum of a configuration, shape (4,), float64 (NaN for non-Atoms tasks).

    Weighted sums of the positions, cell and atomic numbers: equal configurations give equal values (up
    to rounding), different ones differ.
    """
    if not isinstance(task, Atoms):
        return np.full(4, np.nan)
    pos = task.get_positions()
    n = len(pos)
    w = np.sin(1.0 + np.arange(3 * n, dtype=np.float64)).reshape(n, 3)
    return np.array(
        [float((w * pos).sum()), float((pos**2).sum()), float(np.asarray(task.cell).sum()), float(task.numbers @ np.cos(np.arange(n)))]
    )


def _as_row(key: str, value: Any) -> np.ndarray:
    if "/" in key or not key:
        raise ValueError(f"observable names must be non-empty and contain no '/', got {key!r}")
    arr = np.asarray(value)
    if arr.dtype.kind in "biuf":
        return arr.astype(np.float64)
    if arr.dtype.kind == "c":
        return arr.astype(np.complex128)
    raise ValueError(f"observable {key!r} must be a number or numeric array, got {type(value).__name__} ({arr.dtype})")


class SampleStore:
    """Append-only HDF5 file of per-sample results (see the module docstring).

    Parameters
    ----------
    filename
        HDF5 path; created with its parent folder if missing.
    metadata
        JSON-serialisable description of the run (temperature, seed, model, …).  Stored on creation; on
        reopening it must equal the stored one (a ``ValueError`` otherwise), so samples of different runs
        never mix.  None accepts whatever is stored.
    """

    def __init__(self, filename: str | os.PathLike, metadata: Mapping[str, Any] | None = None):
        import h5py

        self.path = Path(filename)
        self._meta_json = None if metadata is None else json.dumps(metadata, sort_keys=True, default=_json_default)
        if self.path.exists():
            try:
                with h5py.File(self.path, "r") as f:
                    fmt = f.attrs.get("format")
                    stored = f.attrs.get("metadata", "null")
            except OSError as exc:
                raise ValueError(f"{self.path} is not a readable HDF5 file ({exc})") from exc
            if fmt != FORMAT:
                raise ValueError(f"{self.path} is not a {FORMAT} file (format attribute {fmt!r})")
            if self._meta_json is not None and stored != self._meta_json:
                raise ValueError(
                    f"{self.path} holds samples of a different run: stored metadata {stored} differs from {self._meta_json}"
                )
            self._meta_json = stored
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with h5py.File(self.path, "w") as f:
                f.attrs["format"] = FORMAT
                f.attrs["version"] = VERSION
                f.attrs["metadata"] = self._meta_json if self._meta_json is not None else "null"
                f.create_dataset("index", shape=(0,), maxshape=(None,), dtype=np.int64, chunks=(256,))
                f.create_dataset("fingerprint", shape=(0, 4), maxshape=(None, 4), dtype=np.float64, chunks=(256, 4))
                f.create_group("values")

    @property
    def metadata(self) -> Any:
        """The stored run metadata."""
        return json.loads(self._meta_json) if self._meta_json else None

    def indices(self) -> np.ndarray:
        """Stored sample indices in storage order, shape (n,), int64."""
        import h5py

        with h5py.File(self.path, "r") as f:
            return np.asarray(f["index"][:], dtype=np.int64)

    def fingerprints(self) -> np.ndarray:
        """Stored fingerprints in storage order, shape (n, 4)."""
        import h5py

        with h5py.File(self.path, "r") as f:
            n = len(f["index"])
            return np.asarray(f["fingerprint"][:n])

    def append(self, index: int, result: Mapping[str, Any], fingerprint: np.ndarray | None = None) -> None:
        """Store one sample (values first, index last) and close the file.

        Raises
        ------
        ValueError
            If the index is already stored, or keys/shapes differ from the stored samples'.
        """
        import h5py

        rows = {k: _as_row(k, v) for k, v in result.items()}
        if not rows:
            raise ValueError("a sample result must hold at least one observable")
        fp = np.full(4, np.nan) if fingerprint is None else np.asarray(fingerprint, dtype=np.float64).reshape(4)
        with h5py.File(self.path, "a") as f:
            idx = f["index"]
            n = len(idx)
            if n and np.any(idx[:] == index):
                raise ValueError(f"sample {index} is already stored in {self.path}")
            vals = f["values"]
            if n and set(vals) != set(rows):
                raise ValueError(
                    f"sample {index} has observables {sorted(rows)}, the stored samples {sorted(vals)}"
                )
            for k, row in rows.items():
                if k not in vals:
                    vals.create_dataset(k, shape=(0,) + row.shape, maxshape=(None,) + row.shape, dtype=row.dtype,
                                        chunks=(max(1, min(256, 2**20 // max(row.nbytes, 1))),) + row.shape)
                ds = vals[k]
                if ds.shape[1:] != row.shape:
                    raise ValueError(f"observable {k!r} of sample {index} has shape {row.shape}, stored {ds.shape[1:]}")
                ds.resize(n + 1, axis=0)
                ds[n] = row
            f["fingerprint"].resize(n + 1, axis=0)
            f["fingerprint"][n] = fp
            idx.resize(n + 1, axis=0)
            idx[n] = int(index)  # the row counts from here on
            f.flush()

    def load(self) -> SampleResults:
        """All complete samples, sorted by index."""
        import h5py

        with h5py.File(self.path, "r") as f:
            idx = np.asarray(f["index"][:], dtype=np.int64)
            n = len(idx)
            values = {k: np.asarray(ds[:n]) for k, ds in f["values"].items()}
        if len(np.unique(idx)) != n:
            raise ValueError(f"{self.path} has duplicate sample indices (corrupt file)")
        order = np.argsort(idx, kind="stable")
        return SampleResults(idx[order], {k: v[order] for k, v in values.items()}, self.metadata or {})


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"metadata value of type {type(obj).__name__} is not JSON serialisable")


class _MemoryStore:
    """In-memory stand-in for :class:`SampleStore` (no file)."""

    def __init__(self, metadata: Mapping[str, Any] | None):
        self.metadata = dict(metadata or {})
        self.rows: dict[int, dict[str, np.ndarray]] = {}

    def indices(self) -> np.ndarray:
        return np.array(list(self.rows), dtype=np.int64)

    def fingerprints(self) -> np.ndarray:
        return np.full((len(self.rows), 4), np.nan)

    def append(self, index: int, result: Mapping[str, Any], fingerprint: np.ndarray | None = None) -> None:
        rows = {k: _as_row(k, v) for k, v in result.items()}
        if self.rows:
            ref = next(iter(self.rows.values()))
            if set(ref) != set(rows) or any(ref[k].shape != rows[k].shape for k in rows):
                raise ValueError(f"sample {index} has observables/shapes differing from the earlier samples")
        self.rows[int(index)] = rows

    def load(self) -> SampleResults:
        idx = np.array(sorted(self.rows), dtype=np.int64)
        keys = list(self.rows[int(idx[0])]) if len(idx) else []
        return SampleResults(idx, {k: np.array([self.rows[int(i)][k] for i in idx]) for k in keys}, self.metadata)


def _resolve_executor(executor: Any) -> cf.Executor | None:
    if executor is None or isinstance(executor, cf.Executor):
        return executor
    if hasattr(executor, "get_executor") and hasattr(executor, "gather"):  # dask.distributed.Client
        return executor.get_executor(pure=False)
    raise TypeError(
        f"executor must be a concurrent.futures.Executor or a dask.distributed.Client, got {type(executor).__name__}"
    )


def run_samples(
    evaluate: Callable[[Any], Mapping[str, Any]],
    tasks: Sequence[Any],
    filename: str | os.PathLike | None = None,
    *,
    executor: Any = None,
    metadata: Mapping[str, Any] | None = None,
    max_pending: int | None = None,
    progress: bool = False,
    fingerprint: Callable[[Any], np.ndarray] = atoms_fingerprint,
    description: str = "samples",
) -> SampleResults:
    """Evaluate ``evaluate(tasks[i])`` for every sample not yet stored, storing each result as it arrives.

    Parameters
    ----------
    evaluate
        Per-sample function returning ``{name: float or array}`` (picklable when an executor is used).
    tasks
        One item per sample (usually the configurations, index = sample index, antithetic partners at
        ``2j, 2j + 1``).
    filename
        HDF5 file to append to and resume from (see :class:`SampleStore`); None keeps results in memory.
    executor
        ``concurrent.futures.Executor`` or ``dask.distributed.Client``; None = serial in this process.
    metadata
        Run description stored in (and checked against) the file.
    max_pending
        Samples submitted but not finished at a time (default ``4 × workers``, at least 4).
    progress
        Show a tqdm progress bar.
    fingerprint
        Checksum of a task stored with its result and checked on resume; default
        :func:`atoms_fingerprint`.
    description
        Progress bar label.

    Returns
    -------
    SampleResults
        The samples with index < ``len(tasks)``, sorted by index.

    Raises
    ------
    ValueError
        If stored samples were computed from different configurations (fingerprint mismatch) or another run.
    Exception
        Whatever ``evaluate`` raised; the samples finished before it are kept in the file.
    """
    n = len(tasks)
    store: SampleStore | _MemoryStore = SampleStore(filename, metadata) if filename is not None else _MemoryStore(metadata)
    done = store.indices()
    stored_fp = store.fingerprints()
    for pos, i in enumerate(done):
        if i < n:
            now = np.asarray(fingerprint(tasks[int(i)]), dtype=np.float64)
            then = stored_fp[pos]
            both = np.isfinite(now) & np.isfinite(then)
            if not np.allclose(now[both], then[both], rtol=1e-9, atol=1e-6):
                raise ValueError(
                    f"sample {int(i)} in {filename} was computed from a different configuration than the one given "
                    "now (different seed, temperature or structure?); use a new file"
                )
    beyond = int(np.sum(done >= n))
    if beyond:
        warnings.warn(f"{beyond} stored samples have index ≥ {n} and are not returned", RuntimeWarning, stacklevel=2)
    done_set = {int(i) for i in done}
    todo = [i for i in range(n) if i not in done_set]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, initial=n - len(todo), desc=description, unit="sample")
    try:
        pool = _resolve_executor(executor)
        if pool is None:
            for i in todo:
                store.append(i, evaluate(tasks[i]), fingerprint(tasks[i]))
                if bar is not None:
                    bar.update(1)
        else:
            _run_pool(pool, evaluate, tasks, todo, store, fingerprint, max_pending, bar)
    finally:
        if bar is not None:
            bar.close()
    res = store.load()
    keep = res.indices < n
    return SampleResults(res.indices[keep], {k: v[keep] for k, v in res.values.items()}, res.metadata)


def _run_pool(pool, evaluate, tasks, todo, store, fingerprint, max_pending, bar) -> None:
    workers = getattr(pool, "_max_workers", None) or 1
    limit = max_pending or max(4, 4 * int(workers))
    queue = list(reversed(todo))
    pending: dict[cf.Future, int] = {}
    try:
        while queue or pending:
            while queue and len(pending) < limit:
                i = queue.pop()
                pending[pool.submit(evaluate, tasks[i])] = i
            finished, _ = cf.wait(list(pending), return_when=cf.FIRST_COMPLETED)
            # store in index order among the finished ones (deterministic file order for equal timing)
            for fut in sorted(finished, key=lambda f: pending[f]):
                i = pending.pop(fut)
                result = fut.result()  # re-raises the worker's exception
                store.append(i, result, fingerprint(tasks[i]))
                if bar is not None:
                    bar.update(1)
    except BaseException:
        for fut in pending:
            fut.cancel()
        # keep whatever finished successfully before re-raising
        for fut, i in list(pending.items()):
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                store.append(i, fut.result(), fingerprint(tasks[i]))
        raise


# ---------------------------------------------------------------------------------------------
# figure
# ---------------------------------------------------------------------------------------------
def plot_convergence(
    running: RunningEstimate,
    filename: str | os.PathLike,
    *,
    label: str = "O",
    unit: str = "",
    reference: float | None = None,
    reference_label: str = "no EPI",
    element: int | tuple[int, ...] | None = None,
    title: str | None = None,
) -> None:
    """Save the convergence of a Monte Carlo average (PNG): running mean ± SE, and SE vs N with 1/√N.

    Parameters
    ----------
    running
        From :func:`running_estimate` or :meth:`SampleResults.running`.
    filename
        PNG path.
    label, unit
        Axis label of the observable.
    reference
        Horizontal line on the mean panel (e.g. the no-EPI value).
    element
        Index into an array observable (None for scalars).
    """
    from .plotting import new_figure

    mean = np.asarray(running.mean)
    se = np.asarray(running.stderr)
    if element is not None:
        sel = (slice(None),) + (element if isinstance(element, tuple) else (element,))
        mean, se = mean[sel], se[sel]
    if mean.ndim != 1:
        raise ValueError(f"plot_convergence needs a scalar observable (pass element=…), got shape {mean.shape[1:]}")
    n = np.asarray(running.n_samples)
    fig, (ax1, ax2) = new_figure(1, 2, figsize=(9, 3.6))
    unit_s = f" ({unit})" if unit else ""
    ax1.plot(n, mean, "-", color="C0", lw=1.2, label="running mean")
    ok = np.isfinite(se)
    ax1.fill_between(n[ok], (mean - se)[ok], (mean + se)[ok], color="C0", alpha=0.25, label="± 1 SE")
    if reference is not None:
        ax1.axhline(reference, color="k", ls="--", lw=0.8, label=reference_label)
    ax1.set_xlabel("number of configurations N")
    ax1.set_ylabel(label + unit_s)
    ax1.legend(fontsize=8)
    if ok.sum() >= 1 and np.any(se[ok] > 0):
        good = ok & (se > 0)
        ax2.loglog(n[good], se[good], "o-", ms=3, color="C1", label="standard error")
        c = se[good][-1] * np.sqrt(n[good][-1])
        ax2.loglog(n[good], c / np.sqrt(n[good]), "k--", lw=0.8, label="∝ 1/√N")
        ax2.legend(fontsize=8)
    ax2.set_xlabel("number of configurations N")
    ax2.set_ylabel("standard error" + unit_s)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(filename, dpi=150)
