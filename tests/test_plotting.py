"""Figures are written without pyplot: the caller's matplotlib backend is left as it was."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from mlepi_ase.plotting import new_figure, plot_paired_difference


def test_new_figure_grid_and_png(tmp_path):
    fig, (a, b) = new_figure(1, 2, figsize=(4.0, 2.0), sharey=True)
    a.plot([0, 1], [0, 1])
    b.plot([0, 1], [1, 0])
    fig.savefig(tmp_path / "f.png", dpi=50)
    assert (tmp_path / "f.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert tuple(fig.get_size_inches()) == (4.0, 2.0)
    _, ax = new_figure()
    assert not isinstance(ax, np.ndarray)


def test_plotting_keeps_the_callers_backend_and_needs_no_pyplot(tmp_path):
    """A PNG through the package's plotting (a phonon band plot) in a fresh process whose backend is set to
    'svg' (as a Jupyter kernel sets its inline backend): the backend is unchanged and pyplot never imported."""
    script = f"""
import sys
from mlepi_ase.phonons import compute_force_constants
from mlepi_ase.reference import ReferenceForceField
from mlepi_ase.structures import bilayer_graphene
import numpy as np
res = compute_force_constants(bilayer_graphene("AB"), ReferenceForceField(), np.diag([2, 2, 1]), progress=False)
res.plot_bands({str(tmp_path / 'bands.png')!r}, npoints=5)
import matplotlib
print(matplotlib.get_backend(), "matplotlib.pyplot" in sys.modules)
"""
    env = {**os.environ, "MPLBACKEND": "svg"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-2:] == ["svg", "False"]
    assert Path(tmp_path / "bands.png").stat().st_size > 1000


def test_plot_paired_difference(tmp_path):
    out = tmp_path / "d.png"
    plot_paired_difference([0, 100, 300], {"a − b": ([0.01, -0.02, 0.03], [0.01, 0.01, 0.02]),
                                           "c − b": ([0.0, 0.01, 0.0], [0.005, 0.01, 0.01])}, [0.1, 0.12, 0.15], out)
    assert out.stat().st_size > 1000
