"""Runs ``tutorials/04_temperature_dependent_fermi_velocity.py`` in its quick, reference-only setting."""

import json
import os
import subprocess
import sys
from pathlib import Path

TUTORIAL = Path(__file__).resolve().parents[1] / "tutorials" / "04_temperature_dependent_fermi_velocity.py"


def test_tutorial_fermi_velocity_quick(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, str(TUTORIAL), "--quick", "--reference-only", "--output", str(tmp_path)],
                          capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for name in ("fermi_velocity_vs_T.png", "convergence.png", "summary.json"):
        assert (tmp_path / name).stat().st_size > 1000, name
    summary = json.loads((tmp_path / "summary.json").read_text())
    ref = summary["v_F"]["reference (REBO+KC, sp3 SK)"]
    assert set(ref) == {"0", "300"}
    assert all(v["n_samples"] == 4 and v["stderr"] > 0 for v in ref.values())
    # the undisplaced supercell reproduces the analytic AB-bilayer velocity of the sp3 model
    assert abs(summary["pristine_v_F"]["reference (REBO+KC, sp3 SK)"] - 5.226) < 0.03
