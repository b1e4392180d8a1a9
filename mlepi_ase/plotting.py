"""Matplotlib figures shared by the CLI, tutorials and benchmarks (PNG output).

Figures are made with :class:`matplotlib.figure.Figure` directly, not through ``pyplot``: no backend is
selected or switched (a Jupyter session's inline backend stays as it was), nothing needs a display, and
no figure is left open in pyplot's registry.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np


def new_figure(nrows: int = 1, ncols: int = 1, figsize: tuple[float, float] | None = None,
               layout: str | None = None, **subplots_kwargs: Any):
    """A figure and its axes for writing to a file, without pyplot.

    Parameters
    ----------
    nrows, ncols
        Grid of axes, as :meth:`matplotlib.figure.Figure.subplots`.
    figsize
        Width and height in inches (matplotlib's default when None).
    layout
        Layout engine (``"constrained"``, ``"tight"`` or None).
    **subplots_kwargs
        Passed to :meth:`~matplotlib.figure.Figure.subplots` (``sharex``, ``sharey``, ``gridspec_kw``, ...).

    Returns
    -------
    (matplotlib.figure.Figure, Axes or numpy.ndarray of Axes)
        Save with ``fig.savefig(path)``; no ``close`` is needed.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout=layout)
    return fig, fig.subplots(nrows, ncols, **subplots_kwargs)


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
    x, xs, xl = path.get_linear_kpoint_axis()
    xl = ["Γ" if s == "G" else s for s in xl]
    fig, ax = new_figure(figsize=(5, 4))
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


def draw_phonon_bands(ax, bands: Sequence, styles: Sequence[dict], labels: Sequence[str] | None = None) -> None:
    """Draw phonon bands on ``ax``: branches, high-symmetry lines and ticks, the zero line, frequency axis.

    Parameters
    ----------
    ax
        Matplotlib axes.
    bands
        :class:`mlepi_ase.phonons.BandStructureData` per data set, on the same q-points; the first sets
        the path axis.
    styles
        Matplotlib line keywords per data set.
    labels
        Legend label per data set (one legend entry each), or None for no legend entries.
    """
    first = bands[0]
    d = first.distances
    for k, (b, style) in enumerate(zip(bands, styles)):
        ax.plot(d, b.frequencies, **style)
        if labels is not None:
            ax.plot([], [], label=labels[k], **style)
    for x in first.label_distances:
        ax.axvline(x, color="0.6", lw=0.6)
    ax.axhline(0.0, color="0.3", lw=0.6, ls=":")
    ax.set_xticks(first.label_distances)
    ax.set_xticklabels(first.labels)
    ax.set_xlim(d[0], d[-1])
    fmin = min(0.0, *(float(b.frequencies.min()) for b in bands))
    fmax = max(float(b.frequencies.max()) for b in bands)
    ax.set_ylim(fmin - 0.02 * fmax, 1.05 * fmax)
    ax.set_ylabel("Frequency (THz)")


def plot_phonon_bands(
    bands: Sequence,
    labels: Sequence[str],
    filename: str | os.PathLike,
    title: str | None = None,
    styles: Sequence[dict] | None = None,
) -> None:
    """Overlay phonon band structures computed along the same path.

    Parameters
    ----------
    bands
        :class:`mlepi_ase.phonons.BandStructureData` per data set (e.g. from
        ``PhononResult.band_structure``), all on the same q-points; the first one sets the axes.
    labels
        Legend label per data set.
    filename
        PNG path.
    title
        Figure title.
    styles
        Matplotlib line keywords per data set (default: black solid, then red dashed, blue dotted, ...).
    """
    if len(bands) != len(labels) or not bands:
        raise ValueError(f"need one label per band structure, got {len(bands)} band structures and "
                         f"{len(labels)} labels")
    first = bands[0]
    for b in bands[1:]:
        if b.frequencies.shape[0] != first.frequencies.shape[0] or not np.allclose(b.qpoints, first.qpoints):
            raise ValueError("the band structures are not on the same q-points")
    styles = list(styles or [dict(color="k", lw=1.4), dict(color="C3", ls="--", lw=1.1),
                             dict(color="C0", ls=":", lw=1.1), dict(color="C2", ls="-.", lw=1.1)])
    fig, ax = new_figure(figsize=(6.5, 4.8))
    draw_phonon_bands(ax, bands, styles, labels)
    if title:
        ax.set_title(title, fontsize=9)
    ax.legend(loc="best", fontsize=8, framealpha=0.9)
    fig.tight_layout()
    fig.savefig(filename, dpi=110)


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
    fig, ax = new_figure(figsize=(5, 3.8))
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


def plot_paired_difference(
    temperatures: Sequence[float],
    series: dict,
    unpaired_stderr: Sequence[float],
    filename: str | os.PathLike,
    unit: str = "eV·Å",
    label_y: str = "Δv_F",
) -> None:
    """Differences of pipelines' averages over the same draws, with their paired standard errors.

    Parameters
    ----------
    temperatures
        (n_T,) K.
    series
        ``{label: (differences (n_T,), standard errors (n_T,))}``, e.g. from
        :func:`mlepi_ase.averaging.paired_difference`; drawn with ±2 SE bars.
    unpaired_stderr
        (n_T,) the standard error the first difference would have with independent draws, drawn as a grey
        ±2 SE band.
    filename
        PNG path.
    unit, label_y
        Unit and name of the plotted difference (y axis).
    """
    t = np.asarray(temperatures, dtype=float)
    se_u = np.asarray(unpaired_stderr, dtype=float)
    fig, axes = new_figure(1, 2, figsize=(9, 3.6))
    markers = "osD^v"
    for k, ax in enumerate(axes):  # left: on the scale of independent draws; right: zoomed on the differences
        if k == 0:
            ax.fill_between(t, -2 * se_u, 2 * se_u, color="0.85", label="±2 SE of independent draws")
        for n, (label, (d, se)) in enumerate(series.items()):
            offset = 4.0 * (n - (len(series) - 1) / 2)  # K, keeps error bars apart
            ax.errorbar(t + offset, np.asarray(d, float), yerr=2 * np.asarray(se, float),
                        fmt=markers[n % 5] + "-", color=f"C{n}", capsize=3, ms=4,
                        label=f"{label} (±2 SE, paired)" if k == 0 else None)
        ax.axhline(0.0, color="k", lw=0.8)
        ax.set_xlabel("T (K)")
        ax.set_ylabel(f"{label_y} ({unit})" if unit else label_y)
    axes[0].set_title("paired vs independent draws", fontsize=9)
    axes[1].set_title("paired differences (zoom)", fontsize=9)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(filename, dpi=150)
