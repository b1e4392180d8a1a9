"""Monte Carlo averager: standard errors, antithetic pairs, running mean, HDF5 resume, executors."""

from concurrent.futures import ThreadPoolExecutor
from functools import partial

import h5py
import numpy as np
import pytest

from mlepi_ase.averaging import (
    SampleResults,
    SampleStore,
    paired_difference,
    mc_estimate,
    plot_convergence,
    run_samples,
    running_estimate,
)
from mlepi_ase.observables import ObservableSpec, UnfoldingMap, evaluate_configuration
from mlepi_ase.reference import MoonKoshinoPz
from mlepi_ase.structures import bilayer_graphene


# ------------------------------------------------------------------------------------ estimators
def test_standard_error_is_sample_spread_over_sqrt_n(rng):
    x = rng.normal(3.0, 2.0, size=50)
    est = mc_estimate(x)
    assert est.mean == pytest.approx(x.mean(), rel=1e-14)
    assert est.stderr == pytest.approx(x.std(ddof=1) / np.sqrt(50), rel=1e-12)
    assert (est.n_samples, est.n_units, est.n_dropped) == (50, 50, 0)
    # arrays: element by element
    y = rng.normal(size=(40, 3, 2)) * np.array([1.0, 5.0])
    est = mc_estimate(y)
    assert est.mean.shape == (3, 2)
    assert np.allclose(est.stderr, y.std(axis=0, ddof=1) / np.sqrt(40))


def test_standard_error_matches_spread_of_repeated_estimates(rng):
    """Over many independent runs the SE predicts the scatter of the estimates (and ~68% coverage)."""
    mu, sigma, n, runs = 1.5, 0.7, 25, 4000
    data = rng.normal(mu, sigma, size=(runs, n))
    means = np.empty(runs)
    errors = np.empty(runs)
    for r in range(runs):
        e = mc_estimate(data[r])
        means[r], errors[r] = e.mean, e.stderr
    assert np.sqrt(np.mean(errors**2)) == pytest.approx(means.std(ddof=1), rel=0.05)
    assert np.sqrt(np.mean(errors**2)) == pytest.approx(sigma / np.sqrt(n), rel=0.05)
    coverage = np.mean(np.abs(means - mu) < errors)
    assert coverage == pytest.approx(0.67, abs=0.03)  # Student t with 24 dof: P(|t| < 1) = 0.672


def test_antithetic_pairs_cancel_odd_terms(rng):
    x = rng.normal(size=30)
    xs = np.empty(60)
    xs[0::2], xs[1::2] = x, -x  # consecutive antithetic pairs
    obs = 2.0 + 3.0 * xs + 0.5 * xs**2
    est = mc_estimate(obs, antithetic=True)
    pair = 2.0 + 0.5 * x**2  # the odd term cancels exactly within every pair
    assert est.mean == pytest.approx(pair.mean(), rel=1e-13)
    assert est.stderr == pytest.approx(pair.std(ddof=1) / np.sqrt(30), rel=1e-12)
    assert (est.n_samples, est.n_units) == (60, 30)
    plain = mc_estimate(obs)
    assert est.stderr < 0.5 * plain.stderr  # the linear noise is gone
    # an incomplete pair (index 59 missing) is left out and counted; order of rows does not matter
    idx = rng.permutation(59)
    est2 = mc_estimate(obs[idx], antithetic=True, indices=idx)
    assert (est2.n_units, est2.n_dropped) == (29, 1)
    assert est2.mean == pytest.approx(pair[:29].mean(), rel=1e-13)
    with pytest.raises(ValueError, match="duplicate"):
        mc_estimate(obs[:4], indices=[0, 1, 1, 2])


def test_running_estimate_ends_at_the_estimate(rng):
    v = 5.23 + 1e-4 * rng.normal(size=(64, 2))  # small spread on a large value
    for anti in (False, True):
        run = running_estimate(v, antithetic=anti)
        est = mc_estimate(v, antithetic=anti)
        assert np.allclose(run.mean[-1], est.mean, rtol=1e-14, atol=0)
        assert np.allclose(run.stderr[-1], est.stderr, rtol=1e-9)
        assert np.all(np.isnan(run.stderr[0]))
        m = 7
        part = mc_estimate(v[: (2 * m if anti else m)], antithetic=anti)
        assert np.allclose(run.stderr[m - 1], part.stderr, rtol=1e-9)
    assert np.array_equal(running_estimate(v, antithetic=True).n_samples, 2 * np.arange(1, 33))


def test_paired_difference_of_correlated_runs(rng):
    """Two 'models' evaluated on the same draws: the paired SE is the spread of the differences over √N,
    far below the unpaired one when the runs correlate; antithetic pairs are averaged first."""
    n = 400
    common = rng.normal(5.0, 0.4, size=n)  # what both runs see in draw i
    a = SampleResults(np.arange(n), {"v": common + 0.03 + rng.normal(0, 0.02, n)})
    b = SampleResults(np.arange(n), {"v": common})
    p = paired_difference(a, b, "v")
    d = a.values["v"] - b.values["v"]
    assert p.difference.mean == pytest.approx(d.mean(), rel=1e-12)
    assert p.difference.stderr == pytest.approx(d.std(ddof=1) / np.sqrt(n), rel=1e-12)
    assert p.unpaired_stderr == pytest.approx(
        np.hypot(a.values["v"].std(ddof=1), b.values["v"].std(ddof=1)) / np.sqrt(n), rel=1e-12)
    assert p.correlation == pytest.approx(np.corrcoef(a.values["v"], b.values["v"])[0, 1], rel=1e-12)
    assert p.correlation > 0.99 and p.difference.stderr < 0.1 * p.unpaired_stderr
    assert abs(p.difference.mean - 0.03) < 4 * p.difference.stderr
    pa = paired_difference(a, b, "v", antithetic=True)
    pair_d = 0.5 * (d[0::2] + d[1::2])
    assert pa.difference.n_units == n // 2
    assert pa.difference.stderr == pytest.approx(pair_d.std(ddof=1) / np.sqrt(n // 2), rel=1e-12)
    assert set(pa.to_dict()) >= {"mean", "stderr", "correlation", "unpaired_stderr"}


def test_paired_difference_uses_common_samples_and_matches_unpaired_for_independent_runs(rng):
    n = 4000
    a = SampleResults(np.arange(n), {"v": rng.normal(size=n)})
    b = SampleResults(np.arange(n), {"v": rng.normal(size=n)})
    p = paired_difference(a, b, "v")
    assert abs(p.correlation) < 4 / np.sqrt(n)
    assert p.difference.stderr == pytest.approx(p.unpaired_stderr, rel=0.06)  # SE of an SE ~ 1/√(2N)
    # b lacks samples 0 and 5 (unfinished run): only the common ones count, matched by index
    keep = np.setdiff1d(np.arange(n), [0, 5])
    partial_b = SampleResults(keep, {"v": b.values["v"][keep]})
    q = paired_difference(a, partial_b, "v")
    assert q.difference.n_samples == n - 2
    assert q.difference.mean == pytest.approx((a.values["v"][keep] - b.values["v"][keep]).mean(), rel=1e-12)
    assert paired_difference(a, partial_b, "v", antithetic=True).difference.n_samples == n - 4
    shuffled = rng.permutation(n)  # rows in any order are matched by sample index
    r = paired_difference(SampleResults(a.indices[shuffled], {"v": a.values["v"][shuffled]}), b, "v")
    assert r.difference.mean == pytest.approx(p.difference.mean, rel=1e-12)
    assert r.difference.stderr == pytest.approx(p.difference.stderr, rel=1e-12)
    with pytest.raises(ValueError, match="no samples with the same index"):
        paired_difference(a, SampleResults(np.array([n + 1]), {"v": np.zeros(1)}), "v")
    with pytest.raises(ValueError, match="scalar"):
        paired_difference(SampleResults(np.arange(2), {"w": np.zeros((2, 3))}),
                          SampleResults(np.arange(2), {"w": np.zeros((2, 3))}), "w")


def test_plot_convergence(tmp_path, rng):
    run = running_estimate(rng.normal(size=100))
    png = tmp_path / "conv.png"
    plot_convergence(run, png, label="v_F", unit="eV Å", reference=0.0)
    assert png.stat().st_size > 1000
    with pytest.raises(ValueError, match="scalar"):
        plot_convergence(running_estimate(rng.normal(size=(10, 3))), png)
    plot_convergence(running_estimate(rng.normal(size=(10, 3))), png, element=1)


# ------------------------------------------------------------------------------------ sample runs
def _setup(n=6, seed=7):
    """Antithetic pairs of randomly displaced 2x2 AB bilayers with a cheap p_z observable spec."""
    prim = bilayer_graphene("AB")
    ref = bilayer_graphene("AB", size=(2, 2))
    unfolding = UnfoldingMap.from_structures(prim, ref)
    spec = ObservableSpec(unfolding, kpoints=("K", "G"), q=(0.02, 0.04), directions=(0.0, 60.0),
                          spectral_kpts=[[0, 0, 0], [1 / 3, -1 / 3, 0]], spectral_energies=np.linspace(3.5, 5.5, 11))
    r = np.random.default_rng(seed)
    configs = []
    for _ in range(n // 2):
        u = r.normal(scale=0.04, size=ref.positions.shape)
        for sign in (1, -1):
            a = ref.copy()
            a.positions += sign * u
            configs.append(a)
    return configs, partial(evaluate_configuration, calculator=MoonKoshinoPz(), spec=spec)


class FailAfter:
    """Per-sample function that raises after ``k`` successful calls (simulated interruption)."""

    def __init__(self, func, k):
        self.func, self.k, self.calls = func, k, 0

    def __call__(self, task):
        if self.calls >= self.k:
            raise RuntimeError("simulated interruption")
        self.calls += 1
        return self.func(task)


def _assert_same(a, b):
    assert np.array_equal(a.indices, b.indices)
    assert set(a.values) == set(b.values)
    for k in a.values:
        assert np.array_equal(a.values[k], b.values[k]), k


def test_resume_after_interruption_gives_uninterrupted_result(tmp_path):
    configs, func = _setup()
    full = run_samples(func, configs, tmp_path / "full.h5", metadata={"T": 300})
    assert np.array_equal(full.indices, np.arange(6))
    path = tmp_path / "resumed.h5"
    with pytest.raises(RuntimeError, match="simulated interruption"):
        run_samples(FailAfter(func, 4), configs, path, metadata={"T": 300})
    assert np.array_equal(np.sort(SampleStore(path).indices()), np.arange(4))  # nothing lost so far
    counting = FailAfter(func, 100)
    resumed = run_samples(counting, configs, path, metadata={"T": 300})
    assert counting.calls == 2  # only the missing samples were computed
    _assert_same(full, resumed)
    with h5py.File(path, "r") as f:
        assert sorted(f["index"][:].tolist()) == list(range(6))  # no duplicates
    for key in ("v_F", "E_K"):
        a, b = full.estimate(key, antithetic=True), resumed.estimate(key, antithetic=True)
        assert np.array_equal(a.mean, b.mean) and np.array_equal(a.stderr, b.stderr)
    # running again computes nothing
    idle = FailAfter(func, 0)
    _assert_same(full, run_samples(idle, configs, path, metadata={"T": 300}))


def test_resume_after_crash_inside_an_append(tmp_path):
    """A crash after the values but before the index were written leaves no trace in the results."""
    configs, func = _setup()
    full = run_samples(func, configs)
    path = tmp_path / "crash.h5"
    run_samples(func, configs[:3], path)
    with h5py.File(path, "a") as f:  # half-written 4th row: values resized, index not
        for ds in f["values"].values():
            ds.resize(ds.shape[0] + 1, axis=0)
            ds[-1] = np.nan
    assert len(SampleStore(path).load()) == 3
    _assert_same(full, run_samples(func, configs, path))


def test_store_refuses_other_runs(tmp_path):
    configs, func = _setup()
    path = tmp_path / "run.h5"
    run_samples(func, configs[:2], path, metadata={"T": 300, "seed": 1})
    with pytest.raises(ValueError, match="different run"):
        run_samples(func, configs, path, metadata={"T": 400, "seed": 1})
    other, _ = _setup(seed=8)
    with pytest.raises(ValueError, match="different configuration"):
        run_samples(func, other, path, metadata={"T": 300, "seed": 1})
    store = SampleStore(path)
    with pytest.raises(ValueError, match="already stored"):
        store.append(0, {"v_F": 1.0, "E_K": np.zeros(4)})
    with pytest.raises(ValueError, match="observables"):
        store.append(7, {"bogus": 1.0})
    with pytest.raises(ValueError, match="must be a number"):
        store.append(7, {"v_F": "fast"})
    bad = tmp_path / "bad.h5"
    with h5py.File(bad, "w") as f:
        f.attrs["format"] = "something else"
    with pytest.raises(ValueError, match="not a mlepi_ase.samples file"):
        SampleStore(bad)


def test_thread_pool_gives_serial_numbers(tmp_path):
    configs, func = _setup()
    serial = run_samples(func, configs)
    with ThreadPoolExecutor(max_workers=2) as pool:
        threaded = run_samples(func, configs, tmp_path / "t.h5", executor=pool)
    _assert_same(serial, threaded)


def test_dask_client_gives_serial_numbers(tmp_path):
    distributed = pytest.importorskip("distributed", reason="dask.distributed is an optional dependency ([dask] extra)")
    configs, func = _setup()
    serial = run_samples(func, configs, tmp_path / "serial.h5")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            via_client = run_samples(func, configs, tmp_path / "client.h5", executor=client)
            via_executor = run_samples(func, configs, tmp_path / "executor.h5", executor=client.get_executor())
    _assert_same(serial, via_client)
    _assert_same(serial, via_executor)
    assert serial.estimate("v_F", antithetic=True).stderr == via_client.estimate("v_F", antithetic=True).stderr


def test_executor_errors_keep_finished_samples(tmp_path):
    configs, func = _setup()
    path = tmp_path / "err.h5"
    with ThreadPoolExecutor(max_workers=1) as pool:
        with pytest.raises(RuntimeError, match="simulated interruption"):
            run_samples(FailAfter(func, 3), configs, path, executor=pool, max_pending=2)
    assert sorted(SampleStore(path).indices().tolist()) == [0, 1, 2]
    with pytest.raises(TypeError, match="Executor"):
        run_samples(func, configs, executor=object())
