"""``mlepi sample``: thermally displaced supercells from phonopy force constants.

Force constants (a ``phonopy_params.yaml`` written by ``mlepi phonons``) → Γ-point modes of the
supercell → N configurations per temperature drawn from the harmonic Williams–Lax distribution
(quantum by default, ``--classical`` for equipartition), optionally as antithetic pairs (x, −x), or the
Zacharias–Giustino special displacement (``--zg``, one configuration per temperature, two with
``--antithetic``) → one extended-XYZ file.  Every frame carries ``config_type``, ``temperature``,
``sampling``, ``sample_index``, ``antithetic_sign``, ``draw_basis`` (not with ``--zg``) and
``mode_amplitudes`` in its info and the ``layer`` and ``displacements`` arrays.  ``--draw-basis cartesian``
makes the same seed draw configurations that change continuously with the force constants (to compare
two force models with common random numbers; :mod:`mlepi_ase.sampling`).

Example::

    mlepi sample data/reference_phonons/phonopy_params.yaml -T 0 300 -n 20 --antithetic --seed 1
"""

from __future__ import annotations

import argparse
import time


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sample",
        help="thermal Monte Carlo (or ZG) configurations from force constants",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("force_constants", help="phonopy yaml file with force constants (mlepi phonons output)")
    p.add_argument("--temperatures", "-T", type=float, nargs="+", required=True, help="temperatures in K")
    p.add_argument("--n-samples", "-n", type=int, default=None,
                   help="configurations per temperature (required unless --zg)")
    p.add_argument("--antithetic", action="store_true", help="antithetic pairs (x, -x)")
    p.add_argument("--zg", action="store_true", help="Zacharias-Giustino special displacement")
    p.add_argument("--classical", action="store_true", help="classical instead of quantum widths")
    p.add_argument("--seed", type=int, default=None, help="random seed")
    p.add_argument("--draw-basis", choices=("modes", "cartesian"), default="modes",
                   help="basis of the seed's normal deviates: modes (default) or cartesian (pairs the draws "
                        "of different force constants)")
    p.add_argument("--supercell", "-s", type=int, nargs=3, default=None, metavar=("N1", "N2", "N3"),
                   help="diagonal supercell to sample (default: the force-constant supercell)")
    p.add_argument("--allow-interpolation", action="store_true",
                   help="accept supercells whose q-points are not commensurate with the force constants")
    p.add_argument("--cutoff-frequency", type=float, default=None, help="THz (default 0.01)")
    p.add_argument("--output", "-o", default="samples.extxyz", help="output extxyz (default samples.extxyz)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    from ase.io import write

    from .._files import atomic_write
    from ..phonons import load_phonons
    from ..sampling import (
        DEFAULT_CUTOFF_FREQUENCY,
        mean_square_displacement,
        sample_configurations,
        thermal_displacement_variance,
        zg_configuration,
    )

    t0 = time.perf_counter()
    if not args.zg and args.n_samples is None:
        raise ValueError("give the number of configurations with -n/--n-samples (or use --zg)")
    if args.zg and args.draw_basis != "modes":
        raise ValueError("--draw-basis applies to Monte Carlo draws; the ZG configuration has no random deviates")
    if args.n_samples is not None and args.n_samples <= 0:
        raise ValueError(f"the number of configurations must be positive, got N = {args.n_samples}")
    for t in args.temperatures:
        if not np.isfinite(t) or t < 0:
            raise ValueError(f"temperatures must be finite and >= 0 K, got {t}")
    cutoff = DEFAULT_CUTOFF_FREQUENCY if args.cutoff_frequency is None else args.cutoff_frequency
    result = load_phonons(args.force_constants)
    modes = result.supercell_modes(args.supercell, allow_interpolation=args.allow_interpolation)
    print(f"{modes.natoms}-atom supercell, {modes.nmodes} modes "
          f"({modes.frequencies[~modes.acoustic].min():.3f} to {modes.frequencies.max():.3f} THz)")
    rng = np.random.default_rng(args.seed)
    frames = []
    for t in args.temperatures:
        common = dict(classical=args.classical, cutoff_frequency=cutoff, rng=rng)
        if args.zg:
            confs = zg_configuration(modes, t, antithetic=args.antithetic, **common)
            print(f"T = {t:g} K: ZG configuration, residual {confs[0].info['zg_residual']:.3f}")
        else:
            confs = sample_configurations(modes, t, args.n_samples, antithetic=args.antithetic,
                                          draw_basis=args.draw_basis, **common)
            exact = thermal_displacement_variance(modes, t, classical=args.classical, cutoff_frequency=cutoff)
            if len(confs) >= (4 if args.antithetic else 2):
                mean, _ = mean_square_displacement(confs, pairs=args.antithetic)
                print(f"T = {t:g} K: {len(confs)} configurations, <u^2> per atom sampled "
                      f"{mean.sum(1).mean():.5f} Å^2, exact {exact.sum(1).mean():.5f} Å^2")
            else:
                print(f"T = {t:g} K: {len(confs)} configurations")
        frames.extend(confs)
    out = atomic_write(args.output, lambda tmp: write(tmp, frames, format="extxyz"))
    print(f"wrote {len(frames)} configurations to {out} in {time.perf_counter() - t0:.1f} s")
    return 0
