"""Do two force-constant files give correlated thermal draws with the same seed?

The pipeline assigns the seed's normal-mode amplitudes x_ν/σ_ν to supercell modes in ascending frequency
order, in the solver-independent eigenvector basis of :func:`mlepi_ase.phonons.canonical_mode_basis`.  Two
models with nearly the same force constants therefore draw nearly the same configurations — unless two
near-degenerate groups of modes swap order, or mix, when the force constants change: then the same x_ν land
on other patterns.  This script compares the supercell modes of two ``phonopy_params.yaml`` files (written by
``mlepi phonons`` or a pipeline run) and reports, per pair of consecutive files:

- ``|e_a,ν · e_b,ν|`` of the same mode index ν (1 = the same pattern), and the modes below 0.99;
- each mode's share of the expected mass-weighted squared displacement difference of same-seed draws,
  ``σ_a² + σ_b² − 2 σ_a σ_b e_a·e_b``, and its total relative to ``Σ σ_a²`` (RMS, at ``--temperature``);
- the modes whose same-index overlap is below 0.5 (marked Γ if they repeat with the primitive cell);
- the measured relative RMS displacement difference of 16 same-seed configurations (antithetic, seed 11);
- the same two numbers for draws in the Cartesian basis (``draw_basis="cartesian"``), where the expected
  difference is ``‖S_a − S_b‖_F / ‖S_a‖_F`` with ``S = Σ_ν σ_ν e_ν e_νᵀ`` (no dependence on mode order).

Usage (seconds per file)::

    python benchmarks/mode_draw_stability.py out/validation14/ml/phonopy_params.yaml \\
        out/validation16/ml/phonopy_params.yaml --supercell 6 6 1
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np


def at_gamma(modes, k: int) -> bool:
    """Whether mode ``k`` repeats with the primitive cell (a Γ-point mode of the supercell)."""
    pattern = modes.eigenvectors[:, k].reshape(-1, 3) / np.sqrt(modes.masses)[:, None]
    for p in np.unique(modes.primitive_index):
        group = pattern[modes.primitive_index == p]
        if np.abs(group - group[0]).max() > 1e-6 * np.abs(pattern).max():
            return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", help="phonopy_params.yaml files, compared consecutively")
    parser.add_argument("--supercell", type=int, nargs=3, default=[6, 6, 1])
    parser.add_argument("--temperature", type=float, default=300.0, help="K (default 300)")
    parser.add_argument("--show", type=int, default=8, help="modes listed per pair (largest shares)")
    args = parser.parse_args()
    if len(args.files) < 2:
        parser.error("give at least two files")

    from mlepi_ase.phonons import load_phonons
    from mlepi_ase.sampling import mode_sigmas, sample_configurations

    modes = []
    for f in args.files:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # imaginary-mode warnings: reported by mlepi phonons itself
            modes.append(load_phonons(f).supercell_modes(np.diag(args.supercell)))
    for (fa, ma), (fb, mb) in zip(zip(args.files, modes), zip(args.files[1:], modes[1:])):
        sa = mode_sigmas(ma, args.temperature).sigma
        sb = mode_sigmas(mb, args.temperature).sigma
        products = ma.eigenvectors.T @ mb.eigenvectors  # e_a,ν · e_b,μ
        dots, overlap = np.diag(products).copy(), np.abs(products)
        # |σ_a e_a − σ_b e_b|² per mode index (= σ_a² + σ_b² − 2 σ_a σ_b e_a·e_b, formed without the cancellation
        # that leaves a round-off negative sum, and a NaN below, for two equal files)
        share = ((ma.eigenvectors * sa - mb.eigenvectors * sb) ** 2).sum(axis=0)
        total = share.sum()
        rel = np.sqrt(total / (sa**2).sum())
        draws = [np.array([c.arrays["displacements"] for c in
                           sample_configurations(m, args.temperature, 16, antithetic=True, rng=11)])
                 for m in (ma, mb)]
        measured = np.sqrt(((draws[0] - draws[1]) ** 2).mean() / (draws[0] ** 2).mean())
        root_a, root_b = ((m.eigenvectors * s) @ m.eigenvectors.T for m, s in ((ma, sa), (mb, sb)))
        rel_cartesian = np.sqrt(((root_a - root_b) ** 2).sum() / (root_a**2).sum())
        draws_c = [np.array([c.arrays["displacements"] for c in
                             sample_configurations(m, args.temperature, 16, antithetic=True, rng=11,
                                                   draw_basis="cartesian")])
                   for m in (ma, mb)]
        measured_c = np.sqrt(((draws_c[0] - draws_c[1]) ** 2).mean() / (draws_c[0] ** 2).mean())
        print(f"{fa}\n -> {fb}")
        print(f"   {len(dots)} modes; |e_a·e_b| of the same index < 0.99: {(np.abs(dots) < 0.99).sum()}, "
              f"< 0.5: {(np.abs(dots) < 0.5).sum()}; largest |f_a − f_b| {np.abs(ma.frequencies - mb.frequencies).max():.4f} THz")
        print(f"   same-seed draws at {args.temperature:g} K: relative RMS displacement difference {rel:.4f} "
              f"expected (mass-weighted), {measured:.4f} measured (16 configurations)")
        print(f"   the same in the Cartesian draw basis: {rel_cartesian:.4f} expected (mass-weighted), "
              f"{measured_c:.4f} measured")
        swapped = np.flatnonzero(np.abs(dots) < 0.5)
        print(f"   modes with |e_a·e_b| < 0.5 (their x_ν now drive another pattern): "
              + ", ".join(f"{k} ({ma.frequencies[k]:.4f} THz{', Γ' if at_gamma(ma, k) else ''}; "
                          f"best match {int(np.argmax(overlap[k]))})" for k in swapped))
        for k in np.argsort(-share)[: args.show]:
            j = int(np.argmax(overlap[k]))
            print(f"   mode {k:4d}: f {ma.frequencies[k]:9.4f} / {mb.frequencies[k]:9.4f} THz, e_a·e_b {dots[k]:+.3f}, "
                  f"share {share[k] / total if total > 0 else 0.0:.3f}; best match in b: mode {j} (|overlap| {overlap[k, j]:.3f}, "
                  f"{mb.frequencies[j]:.4f} THz)")


if __name__ == "__main__":
    main()
