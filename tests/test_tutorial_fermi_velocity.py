"""Runs ``tutorials/04_temperature_dependent_fermi_velocity.py`` in its quick, reference-only setting."""

import json


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
