"""Matplotlib figures shared by the CLI, tutorials and benchmarks (Agg backend, PNG output)."""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_bands(
    path,
    energies: Sequence[np.ndarray],
    labels: Sequence[str],
    filename: str | os.PathLike,
    reference_energy: float = 0.0,
    window: tuple[float, float] | None = (-4.0, 4.0),
    title: str | None = None,
    styles: Sequence[str] | None = None,
) -> None:
    """Overlay band structures along one ASE ``BandPath``.

    Parameters
    ----------
    path
        ``ase.dft.kpoints.BandPath`` whose ``kpts`` were used.
    energies
        One array (K, n_bands) in eV per data set.
    labels
        Legend label per data set.
    filename
        PNG path.
    reference_energy
        Energy subtracted before plotting (eV), e.g. the Dirac energy.
    window
        Energy window (eV) relative to ``reference_energy``; None for all.
    """
    plt = _pyplot()
    x, xs, xl = path.get_linear_kpoint_axis()
    xl = ["Γ" if s == "G" else s for s in xl]
    fig, ax = plt.subplots(figsize=(5, 4))
    styles = styles or ["-k", "--r", ":b", "-.g"]
    for e, label, style in zip(energies, labels, styles):
        lines = ax.plot(x, np.asarray(e) - reference_energy, style, lw=1.2)
        lines[0].set_label(label)
    for s in xs:
        ax.axvline(s, color="0.7", lw=0.6)
    ax.set_xticks(xs, xl)
    ax.set_xlim(x[0], x[-1])
    if window is not None:
        ax.set_ylim(*window)
    ax.set_ylabel("E − E_ref (eV)")
    if title:
        ax.set_title(title)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(filename, dpi=150)
    plt.close(fig)


def plot_vf_temperature(
    series: dict,
    filename: str | os.PathLike,
    pristine: dict | None = None,
    unit: str = "eV·Å",
) -> None:
    """Fermi velocity v_F(T) with standard-error bars for one or more pipelines (the paper's Fig. 4f).

    Parameters
    ----------
    series
        ``{label: (temperatures (K), means, stderrs)}``.
    filename
        PNG path.
    pristine
        ``{label: v_F of the undisplaced structure}``, drawn as horizontal lines ("no EPI").
    unit
        Unit of the values, for the axis label.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.8))
    markers = "osD^v"
    for n, (label, (temps, mean, err)) in enumerate(series.items()):
        offset = 4.0 * (n - (len(series) - 1) / 2)  # K, keeps error bars apart
        ax.errorbar(np.asarray(temps, float) + offset, mean, yerr=err, fmt=markers[n % 5] + "-", capsize=3,
                    ms=4, label=label)
    for n, (label, value) in enumerate((pristine or {}).items()):
        if value is not None:
            ax.axhline(value, ls="--", lw=1, color=f"C{n}", alpha=0.7, label=f"{label}: no EPI")
    ax.set_xlabel("T (K)")
    ax.set_ylabel(f"v_F ({unit})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(filename, dpi=150)
    plt.close(fig)
