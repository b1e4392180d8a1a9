"""Held-out force MAE of HedgeNet-Phonon weight averages ("model soups") of fine-tunings of one lineage.

Every model here descends from the same stage-9 weights and keeps its normalisation (atomic energies, scale,
cutoff exponents: checked equal, printed), so their float parameters can be averaged one by one.  Each average
is evaluated in float64 on the three held-out 6×6×1 300 K draws of ``benchmarks/eval_phonon_heldout.py``
(``DRAWS``, 16 configurations each), pooled over all their force components with that script's ``pooled``.
The model files are the outputs of the configs named in
``../../README.md`` (``out/`` is not kept in git; md5 in ``README.md`` here).

Run from anywhere (its output is ``weight_average.txt``)::

    OMP_NUM_THREADS=1 python data/hedgenet_phonon/experiments/weight_average/weight_average.py > weight_average.txt
"""

import sys
from pathlib import Path

import torch

from mlepi_ase.models.phonon import load_phonon_model, read_phonon_model_file
from mlepi_ase.train.phonon import PhononDataset, evaluate

ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT / "benchmarks"))
import eval_phonon_heldout as heldout  # noqa: E402

torch.set_num_threads(1)
MODEL_FILES = {"s10": "out/hedgenet_phonon_stage10/hedgenet_phonon.pt",
               "s11": "out/hedgenet_phonon_stage11/hedgenet_phonon.pt",
               "s12": "out/hedgenet_phonon_stage12/hedgenet_phonon.pt",
               "s13try": "out/hedgenet_phonon_stage13_try/hedgenet_phonon.pt",
               "p9gpu": "out/gpu_stage11/het32_from9/hedgenet_phonon.pt"}
M = {k: ROOT / v for k, v in MODEL_FILES.items()}
P = {k: read_phonon_model_file(v) for k, v in M.items()}
sd0 = P["s12"]["state_dict"]
for k, p in P.items():
    fixed = [n for n, t in p["state_dict"].items()
             if not t.is_floating_point() or n.endswith(("atomic_energies", "scale", "shift"))]
    print(k, "config equal", p["config"] == P["s12"]["config"],
          "non-param equal", all(torch.equal(p["state_dict"][n], sd0[n]) for n in fixed), fixed[:6])
model = load_phonon_model(M["s12"], dtype=torch.float64)
datas = {k: PhononDataset.from_file(ROOT / rel, model.config) for k, rel in heldout.DRAWS.items()}
n_components = {k: 3 * int(d.n_atoms.sum()) for k, d in datas.items()}


def score(names):
    """Print the held-out force MAE (meV/Å) per draw and pooled of the average of the named models."""
    sd = {n: sum(P[k]["state_dict"][n].double() for k in names) / len(names) if sd0[n].is_floating_point()
          else sd0[n] for n in sd0}
    model.load_state_dict({n: v.to(torch.float64) if v.is_floating_point() else v for n, v in sd.items()})
    r = {k: evaluate(model, d) for k, d in datas.items()}
    pooled = heldout.pooled(r, n_components)["forces_mae_meV_per_A"]
    print("+".join(names), " ".join(f"{x['forces_mae_meV_per_A']:.3f}" for x in r.values()), "pooled",
          f"{pooled:.3f}", flush=True)


for names in [("s12",), ("s11", "s12"), ("s12", "s13try"), ("s11", "s12", "s13try"), ("s10", "s11", "s12"),
              ("s12", "p9gpu"), ("s10", "s11", "s12", "s13try", "p9gpu")]:
    score(names)
