"""``mlepi demo``: a small end-to-end run on the embedded reference models.

AB bilayer graphene → reference forces (REBO + KC) on a thermally rattled supercell → reference
Hamiltonians (sp3 Slater–Koster and p_z Moon–Koshino) → band structure along Γ–M–K–Γ, saved as PNG
and JSON in the output folder.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="small end-to-end demo on the embedded reference models",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output", "-o", default="demo_output", help="output folder (default: demo_output)")
    p.add_argument("--npoints", type=int, default=120, help="k-points on the band path")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..plotting import plot_bands
    from ..reference import MoonKoshinoPz, ReferenceForceField, SlaterKosterSP3
    from ..reference.slater_koster import XWCH_ONSITE
    from ..structures import bilayer_graphene
    from ..tb import special_path

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    atoms = bilayer_graphene("AB", size=(4, 4))
    print(f"AB bilayer graphene 4x4: {len(atoms)} atoms")
    calc = ReferenceForceField()
    atoms.calc = calc
    e0 = atoms.get_potential_energy()
    rattled = atoms.copy()
    rattled.rattle(0.03, seed=1)
    rattled.calc = calc
    forces = rattled.get_forces()
    print(f"reference energy {e0 / len(atoms):.4f} eV/atom; rattled (0.03 Å): max |F| = "
          f"{np.abs(forces).max():.3f} eV/Å, |ΣF| = {np.abs(forces.sum(0)).max():.1e} eV/Å")

    prim = bilayer_graphene("AB")
    path = special_path(prim, "GMKG", args.npoints)
    e_d = XWCH_ONSITE["p"] + 0.788
    bands = {}
    for name, model in (("sp3 Slater-Koster", SlaterKosterSP3()), ("pz Moon-Koshino", MoonKoshinoPz())):
        h = model.get_hamiltonian(prim)
        bands[name] = h.eigh(path.kpts)
    plot_bands(path, list(bands.values()), list(bands), out / "bands_ab_bilayer.png", reference_energy=e_d,
               window=(-3, 3), title="AB bilayer graphene, reference models")
    k_index = {s: int(np.argmin(np.linalg.norm(path.kpts - path.special_points[s], axis=1))) for s in "GMK"}
    summary = {
        "n_atoms_supercell": len(atoms),
        "energy_per_atom_eV": e0 / len(atoms),
        "max_force_rattled_eV_per_A": float(np.abs(forces).max()),
        "dirac_energy_eV": e_d,
        "bands_at_K_minus_ED_eV": {
            name: (np.sort(b[k_index["K"]]) - e_d)[np.argsort(np.abs(np.sort(b[k_index["K"]]) - e_d))[:4]].tolist()
            for name, b in bands.items()
        },
        "seconds": time.perf_counter() - t0,
    }
    with open(out / "demo.json", "w") as f:
        json.dump(summary, f, indent=2)
    print(f"bands near E_D at K (pz model): {sorted(summary['bands_at_K_minus_ED_eV']['pz Moon-Koshino'])}")
    print(f"wrote {out / 'bands_ab_bilayer.png'} and {out / 'demo.json'} in {summary['seconds']:.1f} s")
    return 0
