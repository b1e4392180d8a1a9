"""End-to-end pipeline on the reference models, tiny setting: outputs, resume, executors."""

import json
import shutil

import pytest

from mlepi_ase._files import file_sha256
from mlepi_ase.pipeline import PipelineConfig, run_pipeline

TINY = {
    "structure": {"builder": "ab-bilayer"},
    "force_calculator": "reference",
    "hamiltonian_calculator": "pz",
    "fc_supercell": [3, 3, 1],
    "temperatures": [0.0, 300.0],
    "n_samples": 4,
    "fit_q": [0.02, 0.04],
    "fit_directions": [0.0, 60.0],  # the two extremes of trigonal warping
    "kpoints": ["K"],
    "spectral_window": [-0.5, 0.5],
    "spectral_npoints": 9,
    "seed": 7,
}


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    summary = run_pipeline({**TINY, "output": str(out)}, verbose=False)
    return out, summary


def _copy_phonons(src, dst):
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("phonopy_params.yaml", "phonons_settings.json"):
        shutil.copy(src / name, dst / name)


def test_outputs_and_pristine_values(first_run):
    out, summary = first_run
    for name in ("results.json", "phonon_bands.png", "fermi_velocity_vs_T.png", "convergence.png",
                 "spectral_function_K.png", "bands_one_configuration.png", "samples_T0.h5", "samples_T300.h5"):
        assert (out / name).exists(), name
    saved = json.loads((out / "results.json").read_text())
    assert saved["n_atoms_supercell"] == 36
    # undisplaced supercell = the analytic AB bilayer of the p_z model (relaxed interlayer distance)
    assert saved["pristine"]["v_F"] == pytest.approx(5.226, rel=5e-3)
    for t in ("0", "300"):
        est = saved["temperatures"][t]["v_F"]
        assert est["n_samples"] == 4 and est["stderr"] > 0
    # three zero acoustic modes at Γ are reported with the optical ones
    freqs = [m["frequency_THz"] for m in saved["gamma_modes"]]
    assert sum(abs(f) < 1e-3 for f in freqs) == 3


def test_restart_reuses_everything(first_run, tmp_path):
    out, summary = first_run
    again = run_pipeline({**TINY, "output": str(out)}, verbose=False)
    assert again["timings"]["phonons_s"] < summary["timings"]["phonons_s"]
    for t in ("0", "300"):
        assert again["temperatures"][t]["v_F"] == summary["temperatures"][t]["v_F"]


def test_interrupted_run_resumes_to_same_result(first_run, tmp_path):
    """Drop the last two samples of the 300 K file (as if the run had stopped there) and resume."""
    import h5py

    out, summary = first_run
    shutil.copytree(out, tmp_path / "r", dirs_exist_ok=True)
    from mlepi_ase.averaging import SampleStore

    store_file = tmp_path / "r" / "samples_T300.h5"
    kept = SampleStore(store_file).load()
    assert len(kept) == 4
    with h5py.File(store_file, "a") as f:
        n_before = len(f["index"])
        for name in list(f["values"].keys()):
            data = f["values"][name][:2]
            del f["values"][name]
            f["values"].create_dataset(name, data=data, maxshape=(None,) + data.shape[1:])
        for name in ("index", "fingerprint"):
            data = f[name][:2]
            del f[name]
            f.create_dataset(name, data=data, maxshape=(None,) + data.shape[1:])
    assert n_before == 4 and len(SampleStore(store_file).load()) == 2
    resumed = run_pipeline({**TINY, "output": str(tmp_path / "r")}, verbose=False)
    assert resumed["temperatures"]["300"]["v_F"]["mean"] == pytest.approx(
        summary["temperatures"]["300"]["v_F"]["mean"], rel=1e-12)
    assert len(SampleStore(store_file).load()) == 4


def test_dask_client_gives_serial_numbers(first_run, tmp_path):
    distributed = pytest.importorskip("distributed", reason="dask.distributed is an optional extra")
    out, summary = first_run
    _copy_phonons(out, tmp_path / "d")
    cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None)
    client = distributed.Client(cluster)
    try:
        res = run_pipeline({**TINY, "output": str(tmp_path / "d")}, client=client, verbose=False)
    finally:
        client.close()
        cluster.close()
    for t in ("0", "300"):
        assert res["temperatures"][t]["v_F"]["mean"] == summary["temperatures"][t]["v_F"]["mean"]


def test_bad_configuration_is_reported():
    with pytest.raises(ValueError, match="unknown pipeline setting"):
        PipelineConfig.from_dict({"temprature": [300]})
    with pytest.raises(ValueError, match="temperatures"):
        PipelineConfig.from_dict({"temperatures": [-5.0]})
    with pytest.raises(ValueError, match="even"):
        PipelineConfig.from_dict({"n_samples": 3})
    with pytest.raises(ValueError, match="hamiltonian_calculator"):
        PipelineConfig.from_dict({"hamiltonian_calculator": "dft"})
    with pytest.raises(ValueError, match="draw_basis"):
        PipelineConfig.from_dict({"draw_basis": "normal"})


def test_cartesian_draw_basis_is_stored_and_not_mixed_with_the_default(first_run, tmp_path):
    """``draw_basis: cartesian`` draws other configurations from the same seed: its samples name the basis,
    and a folder holding default-basis samples is not resumed with it."""
    from mlepi_ase.averaging import SampleStore

    out, summary = first_run
    _copy_phonons(out, tmp_path / "c")
    cart = run_pipeline({**TINY, "draw_basis": "cartesian", "output": str(tmp_path / "c")}, verbose=False)
    assert cart["config"]["draw_basis"] == "cartesian"
    assert SampleStore(tmp_path / "c" / "samples_T300.h5").metadata["draw_basis"] == "cartesian"
    assert "draw_basis" not in SampleStore(out / "samples_T300.h5").metadata  # default: as before the option
    assert cart["temperatures"]["300"]["v_F"]["mean"] != summary["temperatures"]["300"]["v_F"]["mean"]
    shutil.copytree(out, tmp_path / "m", dirs_exist_ok=True)
    with pytest.raises(ValueError, match="different run"):
        run_pipeline({**TINY, "draw_basis": "cartesian", "output": str(tmp_path / "m")}, verbose=False)


def test_replacing_a_model_file_in_place_is_not_resumed_silently(tmp_path):
    """Force constants and samples are keyed by the SHA-256 of the HedgeNet model file, not only its path:
    after the file at the same path is replaced, the force constants are recomputed and the stored samples
    of the old model are refused instead of being mixed with or returned for the new one."""
    from mlepi_ase.pipeline import DEFAULT_PHONON_MODEL

    homogeneous = DEFAULT_PHONON_MODEL.parent / "ablation_homogeneous" / "hedgenet_phonon.pt"
    model = tmp_path / "phonon_model.pt"
    shutil.copy(DEFAULT_PHONON_MODEL, model)
    cfg = {**TINY, "force_calculator": "hedgenet", "force_model": str(model), "temperatures": [300.0],
           "n_samples": 2, "spectral_window": None, "output": str(tmp_path / "run")}
    first = run_pipeline(cfg, verbose=False)
    settings = json.loads((tmp_path / "run" / "phonons_settings.json").read_text())
    assert settings["force_model_sha256"] == file_sha256(model)
    again = run_pipeline(cfg, verbose=False)  # same file: everything reused
    assert again["temperatures"]["300"]["v_F"] == first["temperatures"]["300"]["v_F"]
    shutil.copy(homogeneous, model)  # another model, same path
    with pytest.raises(ValueError, match="different run"):
        run_pipeline(cfg, verbose=False)
    settings = json.loads((tmp_path / "run" / "phonons_settings.json").read_text())
    assert settings["force_model_sha256"] == file_sha256(homogeneous)  # force constants were recomputed


def test_file_sha256_matches_hashlib(tmp_path):
    import hashlib

    data = bytes(range(256)) * 5000  # > 1 MiB: several blocks
    (tmp_path / "f").write_bytes(data)
    assert file_sha256(tmp_path / "f") == hashlib.sha256(data).hexdigest()


def test_compare_runs_pairs_two_runs_sample_by_sample(first_run, tmp_path, capsys):
    """The same draws evaluated with another Hamiltonian: ``compare_runs`` gives the mean difference, the spread
    of the per-pair differences over √N as its error, and the renormalisations; ``mlepi compare`` prints and
    writes them; runs that did not draw the same configurations are refused."""
    import numpy as np

    from mlepi_ase.averaging import SampleStore
    from mlepi_ase.cli import main
    from mlepi_ase.pipeline import compare_runs

    out, summary = first_run
    _copy_phonons(out, tmp_path / "sp3")
    other = run_pipeline({**TINY, "hamiltonian_calculator": "sp3", "output": str(tmp_path / "sp3")}, verbose=False)
    report = compare_runs(tmp_path / "sp3", out)
    assert report["observable"] == "v_F" and report["draw_basis"] == "modes" and set(report["temperatures"]) == {"0", "300"}
    for t, d in report["temperatures"].items():
        a, b = (SampleStore(folder / f"samples_T{t}.h5").load().values["v_F"] for folder in (tmp_path / "sp3", out))
        pairs = 0.5 * ((a - b)[0::2] + (a - b)[1::2])
        assert d["mean"] == pytest.approx(pairs.mean(), abs=1e-12)
        assert d["stderr"] == pytest.approx(pairs.std(ddof=1) / np.sqrt(len(pairs)), rel=1e-10)
        assert d["mean"] == pytest.approx(other["temperatures"][t]["v_F"]["mean"] - summary["temperatures"][t]["v_F"]["mean"],
                                          abs=1e-12)
        r = d["renormalization"]
        assert r["a"] == pytest.approx(other["temperatures"][t]["v_F"]["mean"] - other["pristine"]["v_F"], abs=1e-12)
        assert r["difference"] == pytest.approx(r["a"] - r["b"], abs=1e-12)
    assert main(["compare", str(tmp_path / "sp3"), str(out), "-o", str(tmp_path / "c.json")]) == 0
    printed = capsys.readouterr().out
    assert "mode-index basis" in printed and "T = 300 K" in printed
    assert json.loads((tmp_path / "c.json").read_text()) == json.loads(json.dumps(report | {
        "run_a": str(tmp_path / "sp3"), "run_b": str(out)}))
    assert (tmp_path / "c.png").stat().st_size > 1000
    _copy_phonons(out, tmp_path / "seed8")
    run_pipeline({**TINY, "seed": 8, "temperatures": [300.0], "output": str(tmp_path / "seed8")}, verbose=False)
    with pytest.raises(ValueError, match="seed"):
        compare_runs(tmp_path / "seed8", out)
    assert main(["compare", str(tmp_path / "seed8"), str(out)]) == 2
    assert main(["compare", str(tmp_path / "missing"), str(out)]) == 2
