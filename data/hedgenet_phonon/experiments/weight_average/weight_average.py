"""Held-out force MAE of HedgeNet-Phonon weight averages ("model soups") of fine-tunings of one lineage.

Every model here descends from the same stage-9 weights and keeps its normalisation (atomic energies, scale,
cutoff exponents: checked equal, printed), so their float parameters can be averaged one by one.  Each average
is evaluated in float64 on the three held-out 6×6×1 300 K draws (16 configurations each; the pooled value is
the mean of the three draws, which have equal sizes).  The model files are the outputs of the configs named in
``../../README.md`` (``out/`` is not kept in git; md5 in ``README.md`` here).

Run from the repository root (this is the script as run; its output is ``weight_average.txt``)::

    OMP_NUM_THREADS=1 python data/hedgenet_phonon/experiments/weight_average/weight_average.py
"""

import ase.io
import numpy as np
import torch

from mlepi_ase.models.phonon import load_phonon_model, read_phonon_model_file
from mlepi_ase.train.phonon import PhononDataset, evaluate

torch.set_num_threads(1)
M = {"s10": "out/hedgenet_phonon_stage10/hedgenet_phonon.pt", "s11": "out/hedgenet_phonon_stage11/hedgenet_phonon.pt",
     "s12": "out/hedgenet_phonon_stage12/hedgenet_phonon.pt",
     "s13try": "out/hedgenet_phonon_stage13_try/hedgenet_phonon.pt",
     "p9gpu": "out/gpu_stage11/het32_from9/hedgenet_phonon.pt"}
P = {k: read_phonon_model_file(v) for k, v in M.items()}
sd0 = P["s12"]["state_dict"]
for k, p in P.items():
    fixed = [n for n, t in p["state_dict"].items()
             if not t.is_floating_point() or n.endswith(("atomic_energies", "scale", "shift"))]
    print(k, "config equal", p["config"] == P["s12"]["config"],
          "non-param equal", all(torch.equal(p["state_dict"][n], sd0[n]) for n in fixed), fixed[:6])
draws = ["out/phonon_dataset_large/test_6x6.xyz", "out/phonon_dataset_thermal_extra/test_6x6.xyz",
         "out/phonon_dataset_thermal_extra2/test_6x6.xyz"]
model = load_phonon_model(M["s12"], dtype=torch.float64)
datas = [PhononDataset.from_atoms(ase.io.read(d, ":"), model.config) for d in draws]


def score(names):
    """Print the held-out force MAE (meV/Å) per draw and pooled of the average of the named models."""
    sd = {n: sum(P[k]["state_dict"][n].double() for k in names) / len(names) if sd0[n].is_floating_point()
          else sd0[n] for n in sd0}
    model.load_state_dict({n: v.to(torch.float64) if v.is_floating_point() else v for n, v in sd.items()})
    r = [evaluate(model, d)["forces_mae_meV_per_A"] for d in datas]
    print("+".join(names), " ".join(f"{x:.3f}" for x in r), "pooled", f"{np.mean(r):.3f}", flush=True)


for names in [("s12",), ("s11", "s12"), ("s12", "s13try"), ("s11", "s12", "s13try"), ("s10", "s11", "s12"),
              ("s12", "p9gpu"), ("s10", "s11", "s12", "s13try", "p9gpu")]:
    score(names)
