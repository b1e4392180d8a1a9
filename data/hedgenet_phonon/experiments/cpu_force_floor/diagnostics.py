"""Where stage 12's force error sits: the diagnostics of this experiment's README (output: ``diagnostics.txt``).

1. Train vs test: force MAE (meV/Å, float64) on 150 thermal 300 K configurations of the model's own training set
   (``out/phonon_dataset_thermal_extra2/train.xyz``), on the 150 thermal test configurations of that set (50–600 K)
   and on the held-out 6×6×1 draw of ``out/phonon_dataset_large``.
2. Held-out MAE per Cartesian component beside the mean |F| of the reference.
3. Share of the weighted force loss per configuration type for several floors F₀ of the relative weights
   (``PhononDataset.force_weights``: w = ⟨F²⟩ / (⟨F²⟩_m + F₀²)), from the model's squared errors on 24
   training configurations per type (float32, seed 0), and the MAE and relative MAE (MAE / RMS reference
   force) per type.

Run from anywhere::

    OMP_NUM_THREADS=1 python data/hedgenet_phonon/experiments/cpu_force_floor/diagnostics.py > diagnostics.txt
"""

from pathlib import Path

import ase.io
import numpy as np
import torch

from mlepi_ase.models.phonon import load_phonon_model
from mlepi_ase.train.phonon import PhononDataset, evaluate, load_train_config, read_training_configs

ROOT = Path(__file__).resolve().parents[4]
STAGE12 = ROOT / "out" / "hedgenet_phonon_stage12" / "hedgenet_phonon.pt"


def forces_error(model, data: PhononDataset, batch_size: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Model − reference forces and reference forces of every atom of ``data``, shapes (N, 3), eV/Å."""
    diff, ref = [], []
    for start in range(0, len(data), batch_size):
        batch, targets = data.batch(list(range(start, min(start + batch_size, len(data)))), model.n_networks,
                                    model.dtype, model.device)
        out = model(batch, compute_forces=True)
        diff.append((out["forces"].detach() - targets["forces"]).numpy())
        ref.append(targets["forces"].numpy())
    return np.concatenate(diff), np.concatenate(ref)


model = load_phonon_model(STAGE12, dtype=torch.float64)
print("1. force MAE (meV/Å) of stage 12")
own = [a for a in ase.io.read(ROOT / "out/phonon_dataset_thermal_extra2/train.xyz", ":")
       if a.info.get("config_type") == "thermal_300K"][:150]
sets = {"own training set, thermal 300 K": own,
        "thermal test split of that set": ase.io.read(ROOT / "out/phonon_dataset_thermal_extra2/test.xyz", ":"),
        "held-out 6x6x1 draw": ase.io.read(ROOT / "out/phonon_dataset_large/test_6x6.xyz", ":")}
for name, confs in sets.items():
    mae = evaluate(model, PhononDataset.from_atoms(confs, model.config))["forces_mae_meV_per_A"]
    print(f"   {name} ({len(confs)}): {mae:.2f}")

diff, ref = forces_error(model, PhononDataset.from_atoms(sets["held-out 6x6x1 draw"], model.config))
print("2. held-out MAE x / y / z (meV/Å):", " / ".join(f"{v:.1f}" for v in 1e3 * np.abs(diff).mean(0)),
      "; mean |F| x / y / z (eV/Å):", " / ".join(f"{v:.2f}" for v in np.abs(ref).mean(0)))

model = load_phonon_model(STAGE12, dtype=torch.float32)
cfg = load_train_config(ROOT / "data/hedgenet_phonon/train_config_stage12.yaml")
confs = read_training_configs(cfg["train_file"])
types = np.array([a.info.get("config_type", "default") for a in confs])
msq = np.array([np.mean(a.arrays["REF_forces"] ** 2) for a in confs])
rng = np.random.default_rng(0)
per_type = {}
for t in sorted(set(types)):
    idx = np.flatnonzero(types == t)
    pick = rng.choice(idx, size=min(24, len(idx)), replace=False)
    d, _ = forces_error(model, PhononDataset.from_atoms([confs[k] for k in pick], model.config))
    per_type[t] = (len(idx), float(np.mean(d ** 2)), float(np.mean(np.abs(d))), float(msq[idx].mean()))
print("3. share of the weighted force loss per configuration type")
for floor in (0.1, 0.3, 0.5, 1.0, 1e6):
    loss = {t: n * mse * msq.mean() / (m + floor ** 2) for t, (n, mse, _, m) in per_type.items()}
    total = sum(loss.values())
    print(f"   F0 = {floor:g} eV/Å: " + ", ".join(f"{t} {v / total:.2f}" for t, v in loss.items()))
for t, (n, _, mae, m) in per_type.items():
    print(f"   {t:15s} {n:5d} configurations in an epoch, MAE {1e3 * mae:.1f} meV/Å, relative {mae / np.sqrt(m):.4f}")
