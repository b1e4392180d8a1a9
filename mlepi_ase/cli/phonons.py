"""``mlepi phonons``: finite-difference force constants and phonon bands with an ASE calculator.

A unit cell (any file ASE reads, or a builder name: ``ab-bilayer``, ``aa-bilayer``, ``monolayer``)
and a calculator (``reference`` = REBO + Kolmogorov–Crespi; ``emt`` = ASE's EMT, a quick plumbing check
only: its carbon parameters make graphene unstable, and the imaginary modes are reported; ``hedgenet`` =
the shipped HedgeNet-Phonon model; or the path of any HedgeNet-Phonon model file ``*.pt``) →
positions relaxed at fixed cell → phonopy force constants of the supercell → ``phonopy_params.yaml``
(with force constants and layer labels) and ``phonon_bands.png`` (Γ–M–K–Γ bands + DOS) in the output
folder, and the Γ-point modes printed with layered-material labels.

Examples::

    mlepi phonons ab-bilayer --calculator reference --supercell 6 6 1 -o data/reference_phonons
    mlepi phonons ab-bilayer --calculator hedgenet -o hedgenet_phonons
    mlepi phonons ab-bilayer --calculator my_model.pt -o my_model_phonons
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

BUILDERS = ("ab-bilayer", "aa-bilayer", "monolayer")
CALCULATORS = ("reference", "emt", "hedgenet")
"""Calculator names; ``--calculator`` also takes the path of a HedgeNet-Phonon model file."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "phonons",
        help="force constants + phonon bands of a unit cell with an ASE calculator (phonopy)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("structure", help=f"unit-cell file (ASE-readable) or builder name: {', '.join(BUILDERS)}")
    p.add_argument("--calculator", "-c", default="reference", metavar="NAME_OR_MODEL",
                   help=f"force calculator: {', '.join(CALCULATORS)} (the shipped HedgeNet-Phonon model) "
                        "or the path of a HedgeNet-Phonon model file (default: reference)")
    p.add_argument("--supercell", "-s", type=int, nargs=3, default=[6, 6, 1], metavar=("N1", "N2", "N3"),
                   help="diagonal supercell matrix (default: 6 6 1)")
    p.add_argument("--output", "-o", default=".", help="output folder (default: current)")
    p.add_argument("--distance", type=float, default=None, help="displacement length in Å (default 0.01)")
    p.add_argument("--symprec", type=float, default=None, help="symmetry tolerance in Å (default 1e-3)")
    p.add_argument("--no-symmetrize", action="store_true", help="keep the raw force constants")
    p.add_argument("--no-relax", action="store_true", help="skip the fixed-cell relaxation of positions")
    p.add_argument("--fmax", type=float, default=1e-5, help="relaxation force criterion, eV/Å (default 1e-5)")
    p.add_argument("--lattice-constant", type=float, default=None, help="builder lattice constant a (Å)")
    p.add_argument("--interlayer", type=float, default=None, help="builder interlayer distance (Å)")
    p.add_argument("--npoints", type=int, default=101, help="q-points per band-path segment")
    p.add_argument("--dos-mesh", type=int, nargs=3, default=[36, 36, 1], metavar=("M1", "M2", "M3"),
                   help="mesh of the DOS (default 36 36 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def load_structure(name: str, lattice_constant: float | None = None, interlayer: float | None = None):
    """A builder by name (see :data:`BUILDERS`) or a structure file read with :func:`ase.io.read`."""
    from ..structures import bilayer_graphene, monolayer_graphene

    kwargs = {}
    if lattice_constant is not None:
        kwargs["a"] = lattice_constant
    if name in ("ab-bilayer", "aa-bilayer"):
        if interlayer is not None:
            kwargs["interlayer"] = interlayer
        return bilayer_graphene(name[:2].upper(), **kwargs)
    if name == "monolayer":
        return monolayer_graphene(**kwargs)
    path = Path(name)
    if not path.is_file():
        raise FileNotFoundError(f"{name!r} is neither a builder ({', '.join(BUILDERS)}) nor a file")
    from ase.io import read

    atoms = read(path)
    if "layer" not in atoms.arrays:
        from ..structures import assign_layers

        try:
            assign_layers(atoms)
        except ValueError:
            pass  # layer labels are optional for phonons; calculators that need them will say so
    return atoms


def make_calculator(name: str):
    """ASE calculator by name or model file.

    ``reference`` (REBO + KC), ``emt`` (ASE's EMT), ``hedgenet`` (the shipped HedgeNet-Phonon model,
    :data:`mlepi_ase.pipeline.DEFAULT_PHONON_MODEL`) or the path of a HedgeNet-Phonon model file
    (``*.pt``), evaluated in float64 (finite-difference force constants need it).
    """
    if name == "reference":
        from ..reference import ReferenceForceField

        return ReferenceForceField()
    if name == "emt":
        from ase.calculators.emt import EMT

        return EMT()
    if name == "hedgenet":
        from ..pipeline import DEFAULT_PHONON_MODEL

        path = DEFAULT_PHONON_MODEL
    else:
        path = Path(name)
        if path.suffix != ".pt" and not path.exists():
            raise ValueError(f"unknown calculator {name!r}; choose from {', '.join(CALCULATORS)} "
                             "or give the path of a HedgeNet-Phonon model file (*.pt)")
    if not path.is_file():
        raise FileNotFoundError(f"HedgeNet-Phonon model file {str(path)!r} "
                                f"{'is not a file' if path.exists() else 'not found'}")
    from ..calculators import HedgeNetPhononCalculator

    return HedgeNetPhononCalculator(path, dtype="float64")


def run(args: argparse.Namespace) -> int:
    from ..phonons import (
        DEFAULT_DISTANCE,
        DEFAULT_SYMPREC,
        compute_force_constants,
        relax_positions,
    )

    t0 = time.perf_counter()
    out = Path(args.output)
    atoms = load_structure(args.structure, args.lattice_constant, args.interlayer)
    calc = make_calculator(args.calculator)
    print(f"{args.structure}: {len(atoms)} atoms, calculator {args.calculator}, supercell {args.supercell}")
    if not args.no_relax:
        atoms = relax_positions(atoms, calc, fmax=args.fmax)
        print(f"relaxed positions at fixed cell: max |F| = {atoms.info['relax_max_force']:.2e} eV/Å")
    result = compute_force_constants(
        atoms,
        calc,
        args.supercell,
        distance=DEFAULT_DISTANCE if args.distance is None else args.distance,
        symprec=DEFAULT_SYMPREC if args.symprec is None else args.symprec,
        symmetrize=not args.no_symmetrize,
        progress=not args.no_progress,
    )
    info = result.info
    print(f"space group {info['space_group']}, {info['n_displacements']} displaced supercells, "
          f"acoustic sum rule residual before symmetrisation {info['asr_residual_raw']:.2e} eV/Å²")
    out.mkdir(parents=True, exist_ok=True)
    yaml_path = result.save(out / "phonopy_params.yaml")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        png = result.plot_bands(out / "phonon_bands.png", npoints=args.npoints, dos_mesh=args.dos_mesh,
                                title=f"{args.structure} ({args.calculator}), "
                                      f"{'x'.join(map(str, args.supercell))} supercell")
    for w in caught:
        print(f"warning: {w.message}")
    table = None
    if result.unitcell_layers is not None:
        table = result.gamma_mode_table()
        print("Γ-point modes:")
        for row in table:
            print(f"  {row['frequency_THz']:10.4f} THz  {row['frequency_cm1']:10.2f} cm^-1  {row['label']}")
    summary = {"info": info, "gamma_modes": table, "seconds": time.perf_counter() - t0}
    with open(out / "phonons_summary.json", "w") as fh:
        json.dump(summary, fh, indent=2, default=float)
    print(f"wrote {yaml_path}, {png} and {out / 'phonons_summary.json'} in {summary['seconds']:.1f} s")
    return 0
