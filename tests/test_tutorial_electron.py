"""Runs ``tutorials/03_hedgenet_electron.py`` in its quick setting and checks what it writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

TUTORIAL = Path(__file__).resolve().parents[1] / "tutorials" / "03_hedgenet_electron.py"


def test_tutorial_hedgenet_electron_quick(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, str(TUTORIAL), "--quick", "--output", str(tmp_path)],
                          capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with open(tmp_path / "bands.png", "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "bands.png").stat().st_size > 5000
    assert (tmp_path / "run" / "model.pt").exists() and (tmp_path / "data" / "electron_dataset.h5").exists()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["quick"] and summary["epochs"] == 12
    assert summary["hermiticity_error_eV"] == 0.0
    assert summary["train_mae_last_meV"] < summary["train_mae_first_meV"]  # training made progress
    assert summary["band_errors"]["per_k"]["G"]["n_states"] > 0
    for part in ("onsite", "intra", "inter"):
        assert summary["test_3x3"][f"mae_{part}_meV"] >= 0.0
