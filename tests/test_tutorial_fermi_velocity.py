"""Runs ``tutorials/04_temperature_dependent_fermi_velocity.py`` in its quick, reference-only setting."""

import json

import pytest


def test_tutorial_fermi_velocity_quick(tmp_path, run_tutorial):
    run_tutorial("04_temperature_dependent_fermi_velocity.py", tmp_path, "--reference-only")
    for name in ("fermi_velocity_vs_T.png", "convergence.png", "summary.json"):
        assert (tmp_path / name).stat().st_size > 1000, name
    summary = json.loads((tmp_path / "summary.json").read_text())
    ref = summary["v_F"]["reference (REBO+KC, sp3 SK)"]
    assert set(ref) == {"0", "300"}
    assert all(v["n_samples"] == 4 and v["stderr"] > 0 for v in ref.values())
    # the undisplaced supercell reproduces the analytic AB-bilayer velocity of the sp3 model
    assert abs(summary["pristine_v_F"]["reference (REBO+KC, sp3 SK)"] - 5.226) < 0.03


def test_tutorial_fermi_velocity_quick_paired(tmp_path, run_tutorial):
    """Both pipelines (shipped models), quick setting: the same seed in the Cartesian basis pairs their
    draws, so the ML − reference difference has a standard error far below that of independent draws;
    ``--split-error`` splits it into the phonon model's and the electron model's parts."""
    run_tutorial("04_temperature_dependent_fermi_velocity.py", tmp_path, "--split-error")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["settings"]["draw_basis"] == "cartesian"
    paired = summary["paired"]["temperatures"]
    assert set(paired) == {"0", "300"}
    for t, d in paired.items():
        unpaired = summary["agreement"][t]
        # same means (``agreement`` holds reference − ML), another error bar
        assert d["mean"] == pytest.approx(-unpaired["difference"], abs=1e-12)
        assert d["unpaired_stderr"] == pytest.approx(unpaired["combined_stderr"], rel=1e-12)
        assert d["n_units"] == 2 and d["stderr"] < 0.25 * d["unpaired_stderr"], d
        r = d["renormalization"]
        for side, prefix in (("a", "ML"), ("b", "reference")):
            label = next(k for k in summary["v_F"] if k.startswith(prefix))
            expected = summary["v_F"][label][t]["mean"] - summary["pristine_v_F"][label]
            assert r[side] == pytest.approx(expected, abs=1e-12)
        assert r["difference"] == pytest.approx(r["a"] - r["b"], abs=1e-12)
        split = summary["paired_split"]
        phonon, electron = (split[k]["temperatures"][t] for k in ("phonon model", "electron model"))
        assert phonon["mean"] + electron["mean"] == pytest.approx(d["mean"], abs=1e-12)
        assert phonon["renormalization"]["a"] == electron["renormalization"]["b"]  # HedgeNet-Phonon + sp3
    assert (tmp_path / "paired_difference.png").stat().st_size > 1000
