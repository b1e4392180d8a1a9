"""Runs ``tutorials/01_phonons_and_sampling.py`` in its quick setting and checks what it writes."""

from __future__ import annotations

import json

import numpy as np
from ase.io import read


def test_tutorial_phonons_and_sampling_quick(tmp_path, run_tutorial, require_reference_force_field):
    run_tutorial("01_phonons_and_sampling.py", tmp_path, timeout=600)
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
