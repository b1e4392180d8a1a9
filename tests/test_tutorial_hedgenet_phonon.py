"""Runs ``tutorials/02_hedgenet_phonon.py`` in its quick setting and checks what it writes."""

from __future__ import annotations

import json

import numpy as np
import pytest


def test_tutorial_hedgenet_phonon_quick(tmp_path, run_tutorial, require_reference_force_field):
    proc = run_tutorial("02_hedgenet_phonon.py", tmp_path, timeout=600)
    assert "band RMS difference" in proc.stdout
    for name in ("phonon_bands_vs_reference.png", "phonopy_params_model.yaml", "phonopy_params_reference.yaml",
                 "run/hedgenet_phonon.pt", "run/history.json", "data/train.xyz", "data/valid.xyz"):
        assert (tmp_path / name).stat().st_size > 1000, name
    with open(tmp_path / "phonon_bands_vs_reference.png", "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"

    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["quick"] and summary["training"]["epochs"] >= 1
    ref = np.array(summary["reference_bands_THz"])
    mod = np.array(summary["model_bands_THz"])
    assert ref.shape == mod.shape == (len(summary["band_distances"]), 12)  # 4 atoms × 3
    assert np.isfinite(ref).all() and np.isfinite(mod).all()
    rms = summary["band_rms_difference_THz"]
    diff = np.sort(mod, axis=1) - np.sort(ref, axis=1)
    assert rms == pytest.approx(float(np.sqrt((diff ** 2).mean())), rel=1e-10)
    assert np.isfinite(rms) and rms > 0

    ref_gamma = [row["frequency_THz"] for row in summary["reference_gamma_modes"]]
    mod_gamma = [row["frequency_THz"] for row in summary["model_gamma_modes"]]
    assert len(ref_gamma) == len(mod_gamma) == 12
    assert np.isfinite(mod_gamma).all()
    # the acoustic sum rule (imposed by the symmetrised force constants) puts 3 modes at 0 for both
    np.testing.assert_allclose(sorted(ref_gamma, key=abs)[:3], 0.0, atol=1e-3)
    np.testing.assert_allclose(sorted(mod_gamma, key=abs)[:3], 0.0, atol=1e-3)
    labels = [row["label"] for row in summary["reference_gamma_modes"]]
    assert labels.count("acoustic") == 3 and labels.count("G") == 4
    # reference: the in-plane optical G mode of graphene near 1580 cm^-1 (REBO: ~50 THz)
    g = [row["frequency_THz"] for row in summary["reference_gamma_modes"] if row["label"] == "G"]
    assert 40.0 < np.mean(g) < 60.0
    # the band data at Γ agree with the Γ-mode tables
    np.testing.assert_allclose(np.sort(ref[0]), np.sort(ref_gamma), atol=1e-5)
    np.testing.assert_allclose(np.sort(mod[0]), np.sort(mod_gamma), atol=1e-5)
