"""Force errors of HedgeNet-Phonon models on hot (1000 K) configurations, with their worst atoms.

The README's "Limits" name one strongly distorted atom of one 1000 K validation configuration (out of its layer's
plane by 0.19 Å, reference force 10.2 eV/Å) that the fine-tuned stages 5-9 got badly wrong (stage 9: 61 eV/Å,
pointing the opposite way).  That draw is not kept, so this script looks at fresh 1000 K draws (``dataset_check.yaml``
beside it: 512 4×4×1 and 32 6×6×1 configurations, none trained on) for atoms of that kind, model by model.

Per model and file, and pooled over the files of one supercell size: force MAE and RMSE (meV/Å, all components);
per atom the error norm |F - F_ref| (eV/Å): its largest value, the 99.9th percentile and the number of atoms above
1 eV/Å; for the worst atom its reference and model force norms, their cosine and its local distortion
(:func:`atom_geometry`: bonds, bond angles, pyramidal height, nearest second neighbour).  A model that sends some
distorted atom's force the wrong way shows a cosine near -1 and an error of tens of eV/Å there.

Usage (~1.5 min per model on one thread for the default files)::

    OMP_NUM_THREADS=1 python data/hedgenet_phonon/experiments/hot_1000K/worst_atoms.py \
        --model stage14=out/hedgenet_phonon_stage14/hedgenet_phonon.pt --output worst_atoms.json

Writes ``--output`` (JSON; the table is printed too).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[4]
FILES = ("out/phonon_dataset_hot/train.xyz", "out/phonon_dataset_hot/valid.xyz",
         "out/phonon_dataset_hot/test.xyz", "out/phonon_dataset_hot/test_6x6.xyz")
LARGE_ERROR = 1.0  # eV/Å
LARGE_ERROR_KEY = f"n_atoms_error_above_{LARGE_ERROR:g}_eV_per_A"


def atom_geometry(atoms, index: int) -> dict[str, object]:
    """Local distortion of atom ``index``: its three in-layer bonds, bond angles and pyramidal height.

    Layers come from the ``layer`` array of the dataset (0 / 1); distances use the minimum image.  The bonded
    neighbours are the three nearest atoms of the same layer; the pyramidal height is the distance of the atom from
    the plane through them (0 for a flat sp2 site); the second-neighbour distance is the fourth-nearest in-layer
    distance (2.46 Å in the relaxed layer).

    Returns
    -------
    dict
        ``bonds_A`` (3, Å), ``angles_deg`` (3, degrees), ``pyramidal_height_A`` (Å), ``second_neighbour_A`` (Å).
    """
    layer = atoms.arrays["layer"]
    others = np.flatnonzero((layer == layer[index]) & (np.arange(len(atoms)) != index))
    vectors = atoms.get_distances(index, others, mic=True, vector=True)
    lengths = np.linalg.norm(vectors, axis=1)
    order = np.argsort(lengths)
    bonds = vectors[order[:3]]
    units = bonds / np.linalg.norm(bonds, axis=1)[:, None]
    angles = [np.degrees(np.arccos(np.clip(units[p] @ units[q], -1.0, 1.0))) for p, q in ((0, 1), (0, 2), (1, 2))]
    normal = np.cross(bonds[1] - bonds[0], bonds[2] - bonds[0])
    height = abs(bonds[0] @ normal) / np.linalg.norm(normal)
    return {"bonds_A": [round(float(b), 3) for b in lengths[order[:3]]],
            "angles_deg": [round(float(t), 1) for t in angles],
            "pyramidal_height_A": round(float(height), 3),
            "second_neighbour_A": round(float(lengths[order[3]]), 3)}


def predict(calc, configs) -> list[np.ndarray]:
    """Forces (eV/Å, one (n_atoms, 3) array per configuration) of one calculator on ``configs``."""
    forces = []
    for atoms in configs:
        work = atoms.copy()
        work.calc = calc
        forces.append(work.get_forces())
    return forces


def summarise(configs, forces) -> dict[str, object]:
    """Errors of predicted ``forces`` against the configurations' reference forces (see the module docstring)."""
    errors, norms, worst = [], [], None
    for k, (atoms, pred) in enumerate(zip(configs, forces)):
        ref = atoms.arrays["REF_forces"]
        errors.append(pred - ref)
        norm = np.linalg.norm(errors[-1], axis=1)
        norms.append(norm)
        j = int(norm.argmax())
        if worst is None or norm[j] > worst["error_eV_per_A"]:
            cosine = float(pred[j] @ ref[j] / (np.linalg.norm(pred[j]) * np.linalg.norm(ref[j])))
            worst = {"config": k, "atom": j, "error_eV_per_A": float(norm[j]),
                     "ref_norm_eV_per_A": float(np.linalg.norm(ref[j])),
                     "model_norm_eV_per_A": float(np.linalg.norm(pred[j])), "cosine": cosine,
                     **atom_geometry(atoms, j)}
    e, per_atom = np.concatenate(errors), np.concatenate(norms)
    return {"n_configs": len(configs), "n_atoms": int(len(per_atom)),
            "forces_mae_meV_per_A": float(1e3 * np.abs(e).mean()),
            "forces_rmse_meV_per_A": float(1e3 * np.sqrt((e ** 2).mean())),
            "atom_error_max_eV_per_A": float(per_atom.max()),
            "atom_error_p99.9_eV_per_A": float(np.percentile(per_atom, 99.9)),
            LARGE_ERROR_KEY: int((per_atom > LARGE_ERROR).sum()),
            "worst_atom": worst}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", required=True, metavar="NAME=PATH")
    parser.add_argument("--file", action="append",
                        help=f"extxyz file(s), relative to the repository (default: {FILES})")
    parser.add_argument("--output", type=Path, required=True, help="JSON file to write")
    args = parser.parse_args()

    from mlepi_ase.calculators import HedgeNetPhononCalculator
    from mlepi_ase.phonon_dataset import read_phonon_dataset

    files = args.file or FILES
    sets = {Path(f).name: read_phonon_dataset(ROOT / f) for f in files}
    result: dict[str, object] = {"files": list(files), "models": {}}
    for spec in args.model:
        name, path = spec.split("=", 1)
        calc = HedgeNetPhononCalculator(path, dtype="float64")
        forces = {set_name: predict(calc, configs) for set_name, configs in sets.items()}
        rows = {set_name: summarise(sets[set_name], forces[set_name]) for set_name in sets}
        for size in sorted({len(c[0]) for c in sets.values()}):
            same = [n for n, c in sets.items() if len(c[0]) == size]
            if len(same) > 1:  # the files of one supercell size pooled (config indices count through them)
                rows[f"pooled_{size}_atoms"] = summarise([a for n in same for a in sets[n]],
                                                         [f for n in same for f in forces[n]])
        result["models"][name] = {"path": path, "sets": rows}
        for set_name, r in rows.items():
            w = r["worst_atom"]
            print(f"{name:12s} {set_name:14s} MAE {r['forces_mae_meV_per_A']:6.2f} "
                  f"RMSE {r['forces_rmse_meV_per_A']:6.2f} meV/Å | atom error max {r['atom_error_max_eV_per_A']:.3f} "
                  f"p99.9 {r['atom_error_p99.9_eV_per_A']:.3f} eV/Å, >{LARGE_ERROR:g}: {r[LARGE_ERROR_KEY]} | worst: |F_ref| "
                  f"{w['ref_norm_eV_per_A']:.2f} |F| {w['model_norm_eV_per_A']:.2f} cos {w['cosine']:+.2f} "
                  f"bonds {w['bonds_A']} angles {w['angles_deg']} pyr {w['pyramidal_height_A']:.3f} "
                  f"2nd {w['second_neighbour_A']:.3f}", flush=True)
    args.output.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
