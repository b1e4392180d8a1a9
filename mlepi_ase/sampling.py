"""Thermal Monte Carlo sampling of harmonic supercell configurations (Williams–Lax).

Physics
-------
In the harmonic approximation a supercell with N atoms has 3N independent normal modes ``ν`` with
angular frequencies ``ω_ν`` and real orthonormal mass-weighted eigenvectors ``e_ν``
(:class:`mlepi_ase.phonons.SupercellModes`).  A configuration is specified by the normal coordinates
``x_ν`` (Å·√amu); the Cartesian displacement of atom ``κ`` along ``α`` is

    Δτ_κα = M_κ^(−1/2) Σ_ν e_κα,ν x_ν.

In thermal equilibrium each normal coordinate is an independent Gaussian, ``x_ν ~ N(0, σ_ν²)``, with
the quantum (Bose–Einstein) width of a harmonic oscillator

    σ_ν²(T) = (ħ/2ω_ν) (2 n_B(ω_ν, T) + 1) = (ħ/2ω_ν) coth(ħω_ν / 2k_BT),

which tends to the zero-point value ``ħ/2ω_ν`` at T = 0, or the classical (equipartition) width
``σ_ν² = k_BT/ω_ν²``.  Units: ``ω_ν = 2π f_ν`` with ``f_ν`` in THz → rad/s; with ħ in J·s the width
comes out in kg·m² and is converted to amu·Å² by dividing by ``amu·10⁻²⁰``.  Sampling ``x`` and mapping
it to Δτ gives configurations distributed as the Williams–Lax harmonic density, so
``⟨Δτ_κα²⟩ = Σ_ν σ_ν² e_κα,ν² / M_κ`` — phonopy's thermal displacements evaluated on the supercell's
commensurate q-points (:func:`thermal_displacement_variance`).

Excluded modes (σ = 0, all reported): the three acoustic modes at Γ (uniform translations; their
frequency is zero and the width infinite), and — as phonopy's ``RandomDisplacements`` does — every mode
whose ``|f_ν|`` does not exceed ``cutoff_frequency`` (THz).  Imaginary modes (``f_ν < 0``) are sampled
with ``|f_ν|`` as phonopy does (``imaginary="abs"``, default) or excluded (``imaginary="exclude"``, the
choice of phonopy's ``run_thermal_displacements``); either way they trigger an
:class:`~mlepi_ase.phonons.ImaginaryModeWarning`.

Common random numbers (``draw_basis``): the seed's standard normals can be drawn in either of two
bases, with the same distribution.  ``"modes"`` (default, the historical draws) gives normal coordinate ν
the ν-th normal deviate, ``x_ν = σ_ν ξ_ν``.  ``"cartesian"`` draws one standard normal vector ``z`` in
the 3N mass-weighted Cartesian coordinates and projects it, ``x_ν = σ_ν e_ν·z``; since the ``e_ν`` are
orthonormal the ``x_ν`` are again independent ``N(0, σ_ν²)``, and the displacement

    Δτ = M^(−1/2) Σ_ν e_ν σ_ν (e_ν·z) = M^(−1/2) C^(1/2) z,    C = Σ_ν σ_ν² e_ν e_νᵀ,

is the symmetric square root of the mass-weighted covariance applied to ``z``.  That does not depend on
the order of the modes nor on the basis chosen inside a degenerate subspace, so with one seed the
configuration is a continuous function of the force constants: two force models (say a learned one and
its reference) then draw configurations that differ only as much as their covariances do, and the
difference of their thermal averages has a paired (common-random-number) standard error far below the
unpaired one.  With ``"modes"`` the same seed drives a different pattern as soon as near-degenerate modes
swap order or mix.

Antithetic pairs ``(x, −x)`` give exactly opposite displacements: odd orders of the displacement cancel in
every pair, which reduces the variance of averages dominated by even (Fan + Debye–Waller) terms.

The Zacharias–Giustino special displacement (PRB 94, 075125 (2016); PRR 2, 013357 (2020)) is one
configuration ``x_ν = S_ν σ_ν`` with signs ``S_ν = ±1`` chosen so that the cross terms
``Σ_{ν≠ν'} S_ν S_ν' σ_ν σ_ν' e_κα,ν e_κβ,ν' / M_κ`` cancel as well as possible.  Summed over the lattice
translates of a primitive atom, cross terms between different q-points cancel by themselves; the signs
must cancel the remaining ones, so that the lattice-averaged displacement tensor of every primitive atom
equals the thermal one and the observable of that single configuration approximates the thermal
average.  :func:`zg_signs` starts from the alternating pattern of ZG 2016 (``S_ν = (−1)^ν`` over modes
ordered by frequency) and from random patterns and minimises the squared mismatch of those tensors by
single sign flips.

Thermal expansion (anharmonic) is outside this harmonic sampling.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
from ase import Atoms
from ase import units as ase_units

from .phonons import ImaginaryModeWarning, SupercellModes

__all__ = [
    "DEFAULT_CUTOFF_FREQUENCY",
    "DRAW_BASES",
    "LowFrequencyModeWarning",
    "ModeSelection",
    "mode_sigmas",
    "thermal_displacement_variance",
    "thermal_displacement_covariance",
    "sample_amplitudes",
    "sample_configurations",
    "zg_signs",
    "zg_configuration",
    "mean_square_displacement",
]

DEFAULT_CUTOFF_FREQUENCY = 0.01
"""Modes with ``|f| ≤`` this (THz) are not displaced — phonopy's ``RandomDisplacements`` default."""

_AMU_A2 = ase_units._amu * 1e-20  # kg m² per amu Å²

DRAW_BASES = ("modes", "cartesian")
"""Bases of the seed's standard normals (module docstring, *Common random numbers*)."""


class LowFrequencyModeWarning(UserWarning):
    """Non-acoustic modes fall below the cutoff frequency and are not displaced."""


@dataclass(frozen=True)
class ModeSelection:
    """Widths of the normal coordinates at one temperature and which modes they cover.

    Attributes
    ----------
    sigma : numpy.ndarray, shape (3N,), float64
        Standard deviation ``σ_ν`` of each normal coordinate (Å·√amu); 0 for excluded modes.
    included : numpy.ndarray, shape (3N,), bool
        Modes that are displaced.
    acoustic, below_cutoff, imaginary : numpy.ndarray, int
        Indices of the acoustic modes at Γ, of non-acoustic modes with ``|f| ≤ cutoff_frequency``
        and of non-acoustic modes with ``f < −cutoff_frequency``.
    temperature : float
        K.
    classical : bool
        Classical (equipartition) instead of quantum widths.
    cutoff_frequency : float
        THz.
    imaginary_policy : str
        ``"abs"`` or ``"exclude"``.
    """

    sigma: np.ndarray
    included: np.ndarray
    acoustic: np.ndarray
    below_cutoff: np.ndarray
    imaginary: np.ndarray
    temperature: float
    classical: bool
    cutoff_frequency: float
    imaginary_policy: str


def _check_temperature(temperature: float) -> float:
    try:
        t = float(temperature)
    except (TypeError, ValueError):
        raise ValueError(f"temperature must be a number in K, got {temperature!r}") from None
    if not np.isfinite(t) or t < 0:
        raise ValueError(f"temperature must be finite and >= 0 K, got {temperature!r}")
    return t


def _check_modes(modes: SupercellModes) -> None:
    if not isinstance(modes, SupercellModes):
        raise TypeError(f"modes must be mlepi_ase.phonons.SupercellModes, got {type(modes).__name__}")


def mode_sigmas(
    modes: SupercellModes,
    temperature: float,
    *,
    classical: bool = False,
    cutoff_frequency: float = DEFAULT_CUTOFF_FREQUENCY,
    imaginary: Literal["abs", "exclude"] = "abs",
    warn: bool = True,
) -> ModeSelection:
    """Widths ``σ_ν`` of the normal coordinates at temperature ``T``.

    Parameters
    ----------
    modes
        Supercell modes.
    temperature
        K, ≥ 0.
    classical
        ``σ² = k_BT/ω²`` instead of ``(ħ/2ω) coth(ħω/2k_BT)``.
    cutoff_frequency
        THz (≥ 0); modes with ``|f| ≤ cutoff_frequency`` get σ = 0.
    imaginary
        ``"abs"``: sample imaginary modes with ``|f|`` (phonopy's random displacements);
        ``"exclude"``: σ = 0 for them.
    warn
        Emit warnings for imaginary and below-cutoff non-acoustic modes.

    Returns
    -------
    ModeSelection
    """
    _check_modes(modes)
    t = _check_temperature(temperature)
    if not np.isfinite(cutoff_frequency) or cutoff_frequency < 0:
        raise ValueError(f"cutoff_frequency must be >= 0 THz, got {cutoff_frequency!r}")
    if imaginary not in ("abs", "exclude"):
        raise ValueError(f"imaginary must be 'abs' or 'exclude', got {imaginary!r}")
    f = modes.frequencies
    acoustic = modes.acoustic
    below = (np.abs(f) <= cutoff_frequency) & ~acoustic
    imag = (f < -cutoff_frequency) & ~acoustic
    included = ~acoustic & ~below
    if imaginary == "exclude":
        included &= ~imag
    omega = 2.0 * np.pi * 1e12 * np.abs(f[included])  # rad/s
    if classical:
        var = ase_units._k * t / omega**2
    else:
        if t == 0.0:
            coth = np.ones_like(omega)
        else:
            y = ase_units._hbar * omega / (ase_units._k * t)  # = 2 · (ħω/2kT)
            coth = 1.0 + 2.0 / np.expm1(y)
        var = ase_units._hbar / (2.0 * omega) * coth
    sigma = np.zeros_like(f)
    sigma[included] = np.sqrt(var / _AMU_A2)
    sel = ModeSelection(
        sigma=sigma,
        included=included,
        acoustic=np.flatnonzero(acoustic),
        below_cutoff=np.flatnonzero(below),
        imaginary=np.flatnonzero(imag),
        temperature=t,
        classical=bool(classical),
        cutoff_frequency=float(cutoff_frequency),
        imaginary_policy=imaginary,
    )
    if warn and len(sel.imaginary):
        action = "sampled with |f|" if imaginary == "abs" else "excluded"
        warnings.warn(
            f"{len(sel.imaginary)} imaginary supercell mode(s) ({action}): "
            + ", ".join(f"{v:.3f}" for v in f[sel.imaginary][:10])
            + " THz",
            ImaginaryModeWarning,
            stacklevel=2,
        )
    if warn and len(sel.below_cutoff):
        warnings.warn(
            f"{len(sel.below_cutoff)} non-acoustic mode(s) with |f| <= {cutoff_frequency} THz are not "
            "displaced: " + ", ".join(f"{v:.4f}" for v in f[sel.below_cutoff][:10]) + " THz",
            LowFrequencyModeWarning,
            stacklevel=2,
        )
    return sel


def _amplitude_matrix(modes: SupercellModes, sigma: np.ndarray) -> np.ndarray:
    """``A_(κα),ν = e_κα,ν σ_ν / √M_κ`` (Å), shape (3N, 3N)."""
    inv_sqrt_m = np.repeat(1.0 / np.sqrt(modes.masses), 3)
    return modes.eigenvectors * sigma[None, :] * inv_sqrt_m[:, None]


def thermal_displacement_covariance(
    modes: SupercellModes,
    temperature: float,
    *,
    classical: bool = False,
    cutoff_frequency: float = DEFAULT_CUTOFF_FREQUENCY,
    imaginary: Literal["abs", "exclude"] = "abs",
) -> np.ndarray:
    """Analytic displacement covariance ``⟨Δτ_κα Δτ_κ'β⟩`` of the harmonic ensemble.

    Returns
    -------
    numpy.ndarray, shape (N, 3, N, 3), float64, Å²
    """
    sel = mode_sigmas(
        modes, temperature, classical=classical, cutoff_frequency=cutoff_frequency,
        imaginary=imaginary, warn=False,
    )
    a = _amplitude_matrix(modes, sel.sigma)
    n = modes.natoms
    return (a @ a.T).reshape(n, 3, n, 3)


def thermal_displacement_variance(
    modes: SupercellModes,
    temperature: float,
    *,
    classical: bool = False,
    cutoff_frequency: float = DEFAULT_CUTOFF_FREQUENCY,
    imaginary: Literal["abs", "exclude"] = "abs",
) -> np.ndarray:
    """Analytic mean-square displacements ``⟨Δτ_κα²⟩(T) = Σ_ν σ_ν² e_κα,ν² / M_κ``.

    Same mode selection as the sampler, so it is what the samples converge to.

    Returns
    -------
    numpy.ndarray, shape (N, 3), float64, Å²
    """
    sel = mode_sigmas(
        modes, temperature, classical=classical, cutoff_frequency=cutoff_frequency,
        imaginary=imaginary, warn=False,
    )
    a = _amplitude_matrix(modes, sel.sigma)
    return (a**2).sum(axis=1).reshape(modes.natoms, 3)


def sample_amplitudes(
    sigma: np.ndarray,
    n: int,
    *,
    antithetic: bool = False,
    rng: np.random.Generator | int | None = None,
) -> np.ndarray:
    """Gaussian normal coordinates ``x_ν ~ N(0, σ_ν²)``.

    Parameters
    ----------
    sigma
        (M,) widths (Å·√amu).
    n
        Number of configurations (> 0; even with ``antithetic``).
    antithetic
        Return pairs ``x_0, −x_0, x_1, −x_1, …``.
    rng
        Generator, seed or None.

    Returns
    -------
    numpy.ndarray, shape (n, M), float64
    """
    sigma = np.asarray(sigma, dtype=float)
    n = _check_count(n)
    if antithetic and n % 2:
        raise ValueError(f"antithetic sampling needs an even number of configurations, got n = {n}")
    gen = np.random.default_rng(rng)
    n_draw = n // 2 if antithetic else n
    x = gen.standard_normal((n_draw, len(sigma))) * sigma[None, :]
    if antithetic:
        out = np.empty((n, len(sigma)))
        out[0::2] = x
        out[1::2] = -x
        return out
    return x


def _check_count(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise ValueError(f"the number of configurations must be a positive integer, got {n!r}")
    if n <= 0:
        raise ValueError(f"the number of configurations must be positive, got N = {n}")
    return int(n)


def _configuration(
    modes: SupercellModes, x: np.ndarray, u: np.ndarray, info: dict, record_amplitudes: bool
) -> Atoms:
    atoms = modes.atoms.copy()
    atoms.positions = atoms.positions + u
    atoms.set_array("displacements", u.copy())
    atoms.info.update(info)
    if record_amplitudes:
        atoms.info["mode_amplitudes"] = x.copy()
    return atoms


def sample_configurations(
    modes: SupercellModes,
    temperature: float,
    n: int,
    *,
    classical: bool = False,
    antithetic: bool = False,
    cutoff_frequency: float = DEFAULT_CUTOFF_FREQUENCY,
    imaginary: Literal["abs", "exclude"] = "abs",
    rng: np.random.Generator | int | None = None,
    record_amplitudes: bool = True,
    draw_basis: Literal["modes", "cartesian"] = "modes",
) -> list[Atoms]:
    """Thermally displaced supercells drawn from the harmonic (Williams–Lax) distribution.

    Parameters
    ----------
    modes
        Supercell modes (:func:`mlepi_ase.phonons.supercell_modes`).
    temperature
        K, ≥ 0.
    n
        Number of configurations (> 0; even with ``antithetic``).
    classical, cutoff_frequency, imaginary
        See :func:`mode_sigmas`.
    antithetic
        Consecutive pairs ``(x, −x)``: configurations ``2k`` and ``2k+1`` have exactly opposite
        displacements.
    rng
        ``numpy.random.Generator``, int seed or None; the same seed gives the same configurations.
    record_amplitudes
        Store ``x_ν`` in ``info["mode_amplitudes"]``.
    draw_basis
        ``"modes"`` (default): the seed's k-th normal deviate drives mode k; ``"cartesian"``: a standard
        normal vector in mass-weighted Cartesian coordinates is projected on the modes, so that the same
        seed gives configurations that change continuously with the force constants (use it to compare
        two force models with common random numbers; module docstring).  Same distribution either way.

    Returns
    -------
    list of ase.Atoms
        Copies of ``modes.atoms`` (``layer`` array kept) with displaced positions,
        ``arrays["displacements"]`` (N, 3) Å, and ``info`` keys ``config_type``
        (``"thermal_<T>K"``), ``temperature`` (K), ``sampling`` (``"quantum"``/``"classical"``),
        ``sample_index``, ``antithetic_sign`` (+1/−1, 0 without pairing), ``draw_basis``,
        ``mode_amplitudes`` (3N,) Å·√amu.
    """
    if draw_basis not in DRAW_BASES:
        raise ValueError(f"draw_basis must be one of {DRAW_BASES}, got {draw_basis!r}")
    sel = mode_sigmas(
        modes, temperature, classical=classical, cutoff_frequency=cutoff_frequency, imaginary=imaginary
    )
    if draw_basis == "modes":
        x = sample_amplitudes(sel.sigma, n, antithetic=antithetic, rng=rng)
    else:
        z = sample_amplitudes(np.ones(modes.nmodes), n, antithetic=antithetic, rng=rng)  # (n, 3N) Cartesian
        x = (z @ modes.eigenvectors) * sel.sigma[None, :]
    u = modes.displacements(x)
    if antithetic:
        u[1::2] = -u[0::2]  # exact, independent of rounding in the matrix product
    kind = "classical" if classical else "quantum"
    out = []
    for k in range(len(x)):
        info = {
            "config_type": f"thermal_{sel.temperature:g}K",
            "temperature": sel.temperature,
            "sampling": kind,
            "sample_index": k,
            "antithetic_sign": (1 if k % 2 == 0 else -1) if antithetic else 0,
            "draw_basis": draw_basis,
        }
        out.append(_configuration(modes, x[k], u[k], info, record_amplitudes))
    return out


def _group_matrix(groups: np.ndarray) -> np.ndarray:
    """(n_groups, N) averaging matrix over atoms with the same group label."""
    labels, inverse = np.unique(groups, return_inverse=True)
    g = np.zeros((len(labels), len(groups)))
    g[inverse, np.arange(len(groups))] = 1.0
    return g / g.sum(axis=1, keepdims=True)


def _zg_tensors(u: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Group-averaged displacement tensors, (n_groups, 9), of displacements u (N, 3)."""
    return group @ (u[:, :, None] * u[:, None, :]).reshape(len(u), 9)


def zg_signs(
    modes: SupercellModes,
    sigma: np.ndarray,
    *,
    groups: np.ndarray | None = None,
    n_starts: int = 8,
    max_sweeps: int = 50,
    rng: np.random.Generator | int | None = None,
) -> tuple[np.ndarray, float]:
    """Signs ``S_ν`` of the Zacharias–Giustino special displacement.

    The ZG configuration reproduces the thermal displacement tensor of every atom of the primitive
    cell *averaged over its lattice translates in the supercell* (ZG 2016, PRR 2020): cross terms
    between different q cancel in that lattice sum, and the signs must cancel the rest.  This function
    minimises

        F(S) = Σ_g || (1/n_g) Σ_{κ∈g} Δτ_κ Δτ_κᵀ − (1/n_g) Σ_{κ∈g} ⟨Δτ_κ Δτ_κᵀ⟩ ||²_F

    over ``S ∈ {±1}^M`` (``g`` = primitive atom, by default) by single-flip descent, starting from the
    ZG 2016 pattern ``S_ν = (−1)^ν`` over the displaced modes ordered by frequency and from
    ``n_starts − 1`` random patterns, and returns the best.

    Parameters
    ----------
    modes
        Supercell modes.
    sigma
        (3N,) widths (Å·√amu); modes with σ = 0 keep ``S = +1``.
    groups
        (N,) int group label per atom; default ``modes.primitive_index``.  ``numpy.arange(N)`` asks
        for every atom's own tensor (a much harder target).
    n_starts
        Number of starting patterns (≥ 1).
    max_sweeps
        Maximum sweeps over the modes per start.
    rng
        Generator, seed or None (for the random starts and sweep order).

    Returns
    -------
    signs : numpy.ndarray, shape (3N,), float64, values ±1
    residual : float
        ``√(F / Σ_g ||target_g||²_F)``; 0 when every group's tensor is matched exactly.
    """
    _check_modes(modes)
    if n_starts < 1:
        raise ValueError(f"n_starts must be >= 1, got {n_starts}")
    gen = np.random.default_rng(rng)
    sigma = np.asarray(sigma, dtype=float)
    if sigma.shape != (modes.nmodes,):
        raise ValueError(f"sigma must have shape ({modes.nmodes},), got {sigma.shape}")
    n = modes.natoms
    groups = modes.primitive_index if groups is None else np.asarray(groups)
    if groups.shape != (n,):
        raise ValueError(f"groups must have shape ({n},), got {groups.shape}")
    group = _group_matrix(groups)
    a_full = _amplitude_matrix(modes, sigma)
    active = np.flatnonzero(sigma > 0)
    signs_best = np.ones(modes.nmodes)
    if len(active) == 0:
        return signs_best, 0.0
    order = active[np.argsort(np.abs(modes.frequencies[active]), kind="stable")]
    a = a_full[:, order]  # (3N, K)
    cols = a.T.reshape(len(order), n, 3)
    a3 = a.reshape(n, 3, -1)
    target = group @ np.einsum("kan,kbn->kab", a3, a3).reshape(n, 9)
    norm = float((target**2).sum())
    starts = [np.where(np.arange(len(order)) % 2 == 0, 1.0, -1.0)]
    for _ in range(n_starts - 1):
        starts.append(gen.choice([-1.0, 1.0], size=len(order)))
    best_f, best_s = np.inf, starts[0]
    for s in starts:
        s = s.copy()
        u = (a @ s).reshape(n, 3)
        f = float(((_zg_tensors(u, group) - target) ** 2).sum())
        for _ in range(max_sweeps):
            improved = False
            for k in gen.permutation(len(order)):
                u_new = u - 2.0 * s[k] * cols[k]
                f_new = float(((_zg_tensors(u_new, group) - target) ** 2).sum())
                if f_new < f * (1.0 - 1e-12):
                    s[k], u, f, improved = -s[k], u_new, f_new, True
            if not improved:
                break
        if f < best_f:
            best_f, best_s = f, s
    signs_best[order] = best_s
    return signs_best, float(np.sqrt(best_f / norm)) if norm > 0 else 0.0


def zg_configuration(
    modes: SupercellModes,
    temperature: float,
    *,
    classical: bool = False,
    cutoff_frequency: float = DEFAULT_CUTOFF_FREQUENCY,
    imaginary: Literal["abs", "exclude"] = "abs",
    antithetic: bool = False,
    n_starts: int = 8,
    rng: np.random.Generator | int | None = None,
    record_amplitudes: bool = True,
) -> list[Atoms]:
    """The Zacharias–Giustino special displacement configuration ``x_ν = S_ν σ_ν``.

    Parameters
    ----------
    modes, temperature, classical, cutoff_frequency, imaginary
        As in :func:`sample_configurations`.
    antithetic
        Also return the mirror configuration ``−x`` (the ZG pair).
    n_starts, rng
        See :func:`zg_signs`.
    record_amplitudes
        Store ``x_ν`` in ``info["mode_amplitudes"]``.

    Returns
    -------
    list of ase.Atoms
        One configuration (two with ``antithetic``), ``info`` as in :func:`sample_configurations` plus
        ``zg_residual`` and ``config_type = "zg_<T>K"``.
    """
    sel = mode_sigmas(
        modes, temperature, classical=classical, cutoff_frequency=cutoff_frequency, imaginary=imaginary
    )
    signs, residual = zg_signs(modes, sel.sigma, n_starts=n_starts, rng=rng)
    x = signs * sel.sigma
    u = modes.displacements(x)
    kind = "classical" if classical else "quantum"
    out = []
    for k, sgn in enumerate((1, -1) if antithetic else (1,)):
        info = {
            "config_type": f"zg_{sel.temperature:g}K",
            "temperature": sel.temperature,
            "sampling": f"zg-{kind}",
            "sample_index": k,
            "antithetic_sign": sgn if antithetic else 0,
            "zg_residual": residual,
        }
        out.append(_configuration(modes, sgn * x, sgn * u, info, record_amplitudes))
    return out


def mean_square_displacement(
    configurations: Sequence[Atoms] | np.ndarray, *, pairs: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Sample mean of ``Δτ_κα²`` and its standard error.

    Parameters
    ----------
    configurations
        Atoms with ``arrays["displacements"]``, or an array (n, N, 3) of displacements (Å).
    pairs
        Consecutive configurations are antithetic pairs: the pair average is the independent sample.

    Returns
    -------
    mean, standard_error : numpy.ndarray, shape (N, 3), Å²
    """
    if isinstance(configurations, np.ndarray):
        u = configurations
    else:
        try:
            u = np.array([c.arrays["displacements"] for c in configurations])
        except KeyError:
            raise ValueError("configurations lack arrays['displacements']") from None
    if u.ndim != 3 or u.shape[-1] != 3:
        raise ValueError(f"displacements must have shape (n, N, 3), got {u.shape}")
    u2 = u**2
    if pairs:
        if len(u2) % 2:
            raise ValueError("pairs=True needs an even number of configurations")
        u2 = 0.5 * (u2[0::2] + u2[1::2])
    m = len(u2)
    if m < 2:
        raise ValueError("need at least two independent samples for a standard error")
    return u2.mean(axis=0), u2.std(axis=0, ddof=1) / np.sqrt(m)
