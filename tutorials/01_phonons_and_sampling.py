"""Tutorial 1 — phonons of AB bilayer graphene and thermal configurations at 300 K.

Walk-through
------------
1. Build the 4-atom AB bilayer (``mlepi_ase.structures.bilayer_graphene``) and relax its atomic
   positions at fixed cell with the embedded reference force field (REBO + Kolmogorov–Crespi, LAMMPS).
2. Finite-difference force constants of an n×n supercell through phonopy
   (``mlepi_ase.phonons.compute_force_constants``), the phonon bands along Γ–M–K–Γ with the DOS, and
   the Γ-point modes labelled shear / breathing / ZO / G.
3. Γ-point normal modes of the supercell (``PhononResult.supercell_modes``) and antithetic pairs of
   thermally displaced supercells at 300 K drawn from the quantum harmonic distribution
   (``mlepi_ase.sampling.sample_configurations``).  The sampled ⟨u²⟩ is compared with phonopy's own
   thermal displacements on the supercell's commensurate n×n×1 mesh (compare like with like).
4. A picture of one displaced bilayer: every atom coloured by its displacement magnitude, with arrows
   for the in-plane part, one panel per layer.

Run::

    python tutorials/01_phonons_and_sampling.py            # 6×6 supercell, 40 configurations
    python tutorials/01_phonons_and_sampling.py --quick    # 3×3 supercell, 8 configurations (CI)

(``MLEPI_TUTORIAL_QUICK=1`` in the environment also selects the quick setting.)  Outputs go to
``--output`` (default ``tutorial_output/01_phonons_and_sampling``): ``phonopy_params.yaml``,
``phonon_bands.png``, ``samples_300K.extxyz``, ``displacements_300K.png`` and ``summary.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from pathlib import Path

import numpy as np


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny setting for CI (also MLEPI_TUTORIAL_QUICK=1)")
    p.add_argument("--output", "-o", default="tutorial_output/01_phonons_and_sampling", help="output folder")
    p.add_argument("--temperature", "-T", type=float, default=300.0, help="temperature in K (default 300)")
    p.add_argument("--seed", type=int, default=2024, help="random seed")
    args = p.parse_args()
    args.quick = args.quick or os.environ.get("MLEPI_TUTORIAL_QUICK", "") not in ("", "0")
    return args


def plot_displacements(atoms, path: Path, temperature: float) -> None:
    """Displacement magnitudes of one configuration, one panel per layer (matplotlib Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    u = atoms.arrays["displacements"]
    mag = np.linalg.norm(u, axis=1)
    ref = atoms.positions - u
    layers = atoms.arrays["layer"]
    fig, axes = plt.subplots(1, 2, figsize=(11.0, 4.2), sharex=True, sharey=True, layout="constrained")
    scale = 0.5 * 1.42 / max(float(mag.max()), 1e-12)  # longest arrow = half a bond
    for lay, ax in zip((0, 1), axes):
        sel = layers == lay
        sc = ax.scatter(ref[sel, 0], ref[sel, 1], c=mag[sel], cmap="viridis", vmin=0, vmax=mag.max(), s=40,
                        edgecolors="k", linewidths=0.3)
        ax.quiver(ref[sel, 0], ref[sel, 1], u[sel, 0] * scale, u[sel, 1] * scale, angles="xy",
                  scale_units="xy", scale=1, width=0.004, color="C3")
        cell = atoms.cell[:2, :2]
        corners = np.array([[0, 0], cell[0], cell[0] + cell[1], cell[1], [0, 0]])
        ax.plot(corners[:, 0], corners[:, 1], color="0.5", lw=0.8)
        ax.set_title(f"{'bottom' if lay == 0 else 'top'} layer")
        ax.set_aspect("equal")
        ax.set_xlabel("x (Å)")
    axes[0].set_ylabel("y (Å)")
    cb = fig.colorbar(sc, ax=axes, shrink=0.85)
    cb.set_label("|Δτ| (Å)")
    fig.suptitle(f"AB bilayer graphene, one thermal configuration at {temperature:g} K "
                 f"(arrows: in-plane part ×{scale:.1f})")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    from ase.io import write

    from mlepi_ase.phonons import compute_force_constants, relax_positions
    from mlepi_ase.reference import ReferenceForceField
    from mlepi_ase.sampling import (
        mean_square_displacement,
        sample_configurations,
        thermal_displacement_variance,
    )
    from mlepi_ase.structures import bilayer_graphene

    args = parse_args()
    n_super = 3 if args.quick else 6
    n_conf = 8 if args.quick else 40
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    # 1. structure and relaxation
    calc = ReferenceForceField()
    unit = relax_positions(bilayer_graphene("AB"), calc, fmax=1e-5)
    dz = unit.positions[2:, 2].mean() - unit.positions[:2, 2].mean()
    print(f"relaxed AB bilayer: interlayer distance {dz:.4f} Å, max |F| {unit.info['relax_max_force']:.1e} eV/Å")

    # 2. force constants, bands, Γ modes
    result = compute_force_constants(unit, calc, [n_super, n_super, 1], progress=False)
    print(f"force constants of the {n_super}x{n_super} supercell: space group {result.info['space_group']}, "
          f"{result.info['n_displacements']} displaced supercells")
    result.save(out / "phonopy_params.yaml")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result.plot_bands(out / "phonon_bands.png", npoints=31 if args.quick else 101,
                          dos_mesh=(12, 12, 1) if args.quick else (36, 36, 1),
                          title=f"AB bilayer graphene, REBO+KC, {n_super}x{n_super} supercell")
    for w in caught:
        print(f"warning: {w.message}")
    table = result.gamma_mode_table()
    named = {}
    for row in table:
        named.setdefault(row["label"], []).append(row["frequency_THz"])
    for label in ("shear", "breathing", "ZO", "G"):
        f = np.mean(named[label])
        print(f"  Γ {label:9s} {f:8.3f} THz = {f * 33.35641:8.1f} cm^-1")

    # 3. supercell modes and thermal samples
    modes = result.supercell_modes()
    confs = sample_configurations(modes, args.temperature, n_conf, antithetic=True, rng=args.seed)
    write(out / f"samples_{args.temperature:g}K.extxyz", confs, format="extxyz")
    exact = thermal_displacement_variance(modes, args.temperature)
    mean, se = mean_square_displacement(confs, pairs=True)
    ph = result.phonopy
    ph.run_mesh([n_super, n_super, 1], is_gamma_center=True, is_mesh_symmetry=False, with_eigenvectors=True)
    ph.run_thermal_displacements(temperatures=[args.temperature], freq_min=0.01, exclude_gamma_acoustic=True)
    td = ph.thermal_displacements.thermal_displacements.reshape(-1, 3)
    print(f"<u^2> per atom at {args.temperature:g} K (x, y, z; Å^2), averaged over atoms:")
    print(f"  sampled ({n_conf} configs) {np.round(mean.mean(0), 5)}  ± {np.round(se.mean(0), 5)}")
    print(f"  analytic                 {np.round(exact.mean(0), 5)}")
    print(f"  phonopy {n_super}x{n_super}x1 mesh      {np.round(td.mean(0), 5)}")

    # 4. picture of one displaced bilayer
    plot_displacements(confs[0], out / f"displacements_{args.temperature:g}K.png", args.temperature)
    summary = {
        "supercell": n_super,
        "n_configurations": n_conf,
        "temperature_K": args.temperature,
        "interlayer_distance_A": float(dz),
        "gamma_modes": table,
        "msd_sampled_A2": mean.mean(0).tolist(),
        "msd_analytic_A2": exact.mean(0).tolist(),
        "msd_phonopy_A2": td.mean(0).tolist(),
        "seconds": time.perf_counter() - t0,
    }
    with open(out / "summary.json", "w") as fh:
        json.dump(summary, fh, indent=2)
    print(f"wrote {out}/ (bands, samples, displacement picture, summary) in {summary['seconds']:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
