"""Runs ``tutorials/03_hedgenet_electron.py`` in its quick setting and checks what it writes."""

from __future__ import annotations

import json


def test_tutorial_hedgenet_electron_quick(tmp_path, run_tutorial):
    run_tutorial("03_hedgenet_electron.py", tmp_path)
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
