"""Runs ``tutorials/01_phonons_and_sampling.py`` in its quick setting and checks what it writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from ase.io import read

TUTORIAL = Path(__file__).resolve().parents[1] / "tutorials" / "01_phonons_and_sampling.py"


def test_tutorial_phonons_and_sampling_quick(tmp_path, require_reference_force_field):
    env = dict(os.environ, OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    proc = subprocess.run(
        [sys.executable, str(TUTORIAL), "--quick", "--output", str(tmp_path)],
        capture_output=True, text=True, timeout=600, env=env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ("phonopy_params.yaml", "phonon_bands.png", "displacements_300K.png"):
        assert (tmp_path / name).stat().st_size > 1000, name
    with open(tmp_path / "displacements_300K.png", "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    frames = read(tmp_path / "samples_300K.extxyz", index=":")
    assert len(frames) == 8 and len(frames[0]) == 36
    assert np.array_equal(frames[0].arrays["displacements"], -frames[1].arrays["displacements"])
    summary = json.loads((tmp_path / "summary.json").read_text())
    # analytic ⟨u²⟩ from the supercell modes = phonopy's thermal displacements on the 3×3×1 mesh
    np.testing.assert_allclose(summary["msd_analytic_A2"], summary["msd_phonopy_A2"], rtol=1e-5)
    labels = [row["label"] for row in summary["gamma_modes"]]
    assert labels.count("acoustic") == 3 and labels.count("G") == 4
