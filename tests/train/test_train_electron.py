"""Training of HedgeNet-Electron: the loss goes down, resume is exact, DeepH folders round-trip."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml

from mlepi_ase.cli import main as mlepi_main
from mlepi_ase.io.deeph import read_deeph, write_deeph
from mlepi_ase.models.electron import HedgeNetElectron, load_electron_model
from mlepi_ase.models.electron_data import read_electron_dataset, write_electron_dataset
from mlepi_ase.orbitals import block_from_e3nn
from mlepi_ase.reference.slater_koster import SlaterKosterSP3
from mlepi_ase.structures import bilayer_graphene
from mlepi_ase.train.electron import evaluate_model, prepare_samples, train_electron

TINY_MODEL = dict(cutoffs={"intra": 3.0, "inter": 3.8}, num_channels=4, head_channels=2, num_interactions=1,
                  num_radial=6, radial_hidden=16)


def sk_dataset(path: Path, rng, n_train=3, n_valid=1) -> Path:
    ref = SlaterKosterSP3()
    items = []
    for k in range(n_train + n_valid):
        atoms = bilayer_graphene("AB", size=(1, 1), vacuum=12.0)
        atoms.positions += rng.normal(scale=0.06, size=atoms.positions.shape)
        items.append((ref.get_hamiltonian(atoms), "train" if k < n_train else "valid", {"config_type": "rattle"}))
    return write_electron_dataset(path, items, reference="SlaterKosterSP3")


def config(dataset: Path, out: Path, epochs: int, schedule: str = "constant", **training) -> dict:
    t = dict(epochs=epochs, batch_size=1, lr=0.01, lr_schedule=schedule, dtype="float64", num_threads=1,
             progress=False, seed=3)
    t.update(training)
    return {"data": {"dataset": str(dataset)}, "model": dict(TINY_MODEL), "training": t,
            "output": {"dir": str(out)}}


def test_dataset_file_holds_reference_blocks(tmp_path, rng):
    path = sk_dataset(tmp_path / "d.h5", rng)
    items = read_electron_dataset(path)
    assert [info["split"] for _, info in items] == ["train"] * 3 + ["valid"]
    h, _ = items[0]
    again = SlaterKosterSP3().get_hamiltonian(h.to_atoms())
    assert np.array_equal(h.pairs, again.pairs) and np.abs(h.blocks - again.blocks).max() == 0.0
    with h5py.File(path, "r") as f:
        assert f.attrs["format"] == "mlepi_ase.electron_dataset"
        assert json.loads(f.attrs["basis"]) == {"C": [0, 1]}


def test_training_lowers_the_error_and_resume_is_exact(tmp_path, rng):
    data = sk_dataset(tmp_path / "d.h5", rng)
    straight = train_electron(config(data, tmp_path / "straight", epochs=12), log=None)
    hist = straight["history"]
    assert len(hist) == 12

    # error of the initial model (same seed, same data statistics) vs the trained one
    trained = load_electron_model(straight["model_path"])
    from mlepi_ase.train.electron import _data_statistics

    items = read_electron_dataset(data, "valid")
    samples = prepare_samples([h for h, _ in items], trained.config)
    torch.manual_seed(3)
    init = HedgeNetElectron(trained.config, dtype=torch.float64)
    train_samples = prepare_samples([h for h, _ in read_electron_dataset(data, "train")], trained.config)
    init.set_onsite_offset(_data_statistics(train_samples, trained.config)["onsite_mean"])
    before = evaluate_model(init, samples)["mae_meV"]
    after = evaluate_model(trained, samples)["mae_meV"]
    assert after < 0.7 * before, (before, after)
    assert hist[-1]["train"]["mae_meV"] < hist[0]["train"]["mae_meV"]
    for part in ("onsite", "intra", "inter"):
        assert f"mae_{part}_meV" in hist[-1]["valid"]

    # 5 epochs, stop, resume to 12: identical to the straight run
    first = train_electron(config(data, tmp_path / "resumed", epochs=5), log=None)
    assert len(first["history"]) == 5
    resumed = train_electron(config(data, tmp_path / "resumed", epochs=12), resume=True, log=None)
    assert [h["epoch"] for h in resumed["history"]] == list(range(1, 13))
    for a, b in zip(hist, resumed["history"]):
        assert a["train"]["mae_meV"] == pytest.approx(b["train"]["mae_meV"], rel=1e-9, abs=1e-12)
        assert a["valid"]["mae_meV"] == pytest.approx(b["valid"]["mae_meV"], rel=1e-9, abs=1e-12)
    log = (tmp_path / "resumed" / "train.log").read_text()
    assert "resuming from" in log
    assert (tmp_path / "resumed" / "metrics.json").exists() and (tmp_path / "resumed" / "config.yaml").exists()


def test_time_limit_stops_a_cosine_time_run_at_its_first_epoch_boundary_when_an_epoch_outlasts_it(tmp_path, rng):
    """``time_limit_s`` is checked after each epoch: a limit far shorter than one epoch stops the run after its
    first epoch (the boundary nearest the limit), with the model, checkpoint and the exact elapsed time and epoch
    duration recorded; the cosine_time anneal then ends at its floor."""
    data = sk_dataset(tmp_path / "d.h5", rng, n_train=2, n_valid=1)
    limit = 1e-3
    res = train_electron(config(data, tmp_path / "run", epochs=6, schedule="cosine_time", time_limit_s=limit),
                         log=None)
    hist = res["history"]
    assert len(hist) == 1
    assert hist[0]["elapsed_s"] > limit and 0.0 < hist[0]["epoch_s"] <= hist[0]["elapsed_s"]
    assert hist[0]["lr"] == pytest.approx(0.01 * 0.01)  # lr x lr_min_factor: the anneal is over
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["stopped_early"] is True and metrics["epochs_run"] == 1
    assert metrics["train_time_s"] == hist[0]["elapsed_s"]
    assert (tmp_path / "run" / "model.pt").exists() and (tmp_path / "run" / "checkpoint.pt").exists()
    assert "time limit: " in (tmp_path / "run" / "train.log").read_text()


@pytest.mark.parametrize("schedule, nothing_left, one_more", [
    ("cosine_time", 56.0, 50.0),  # 4 s / 10 s left of a 60-s limit with 10-s epochs: the nearest boundary
    ("constant", 61.0, 56.0),  # other schedules: the first epoch end past the limit (4 s left: one more)
])
def test_a_resumed_run_keeps_the_time_limit(tmp_path, rng, schedule, nothing_left, one_more):
    """The limit bounds the whole run, resumes included: a checkpoint whose run stopped at its limit trains nothing
    more when resumed, one with time left trains on.  The checkpoint is edited to say how long the run took (10-s
    epochs); with cosine_time the run stops at the epoch boundary nearest the limit (less than half an epoch left:
    done), with other schedules at the first one past it."""
    data = sk_dataset(tmp_path / "d.h5", rng, n_train=2, n_valid=1)
    cfg = config(data, tmp_path / "run", epochs=1, schedule=schedule, time_limit_s=60.0)
    first = train_electron(cfg, log=None)
    assert len(first["history"]) == 1 and first["metrics"]["stopped_early"] is False
    path = tmp_path / "run" / "checkpoint.pt"
    original = torch.load(path, weights_only=True)

    def resume_with(elapsed_s):
        record = dict(json.loads(original["history"])[0], epoch_s=10.0, elapsed_s=elapsed_s)
        torch.save(dict(original, elapsed_s=elapsed_s, history=json.dumps([record])), path)
        cfg["training"]["epochs"] = 2
        return train_electron(cfg, resume=True, log=None)

    done = resume_with(nothing_left)
    assert len(done["history"]) == 1 and done["metrics"]["stopped_early"] is True
    assert "nothing more to train" in (tmp_path / "run" / "train.log").read_text()
    more = resume_with(one_more)  # epochs 2 bounds the test
    assert [h["epoch"] for h in more["history"]] == [1, 2] and more["metrics"]["stopped_early"] is False


def test_cli_train_electron(tmp_path, rng):
    data = sk_dataset(tmp_path / "d.h5", rng, n_train=2, n_valid=1)
    cfg = config(Path("d.h5"), Path("run"), epochs=1, schedule="cosine")  # relative to the YAML file
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    assert data.exists()
    rc = mlepi_main(["train-electron", str(tmp_path / "cfg.yaml"), "--quiet", "--no-progress"])
    assert rc == 0
    assert (tmp_path / "run" / "model.pt").exists() and (tmp_path / "run" / "checkpoint.pt").exists()
    rc = mlepi_main(["train-electron", str(tmp_path / "cfg.yaml"), "--quiet", "--epochs", "2"])
    assert rc == 0
    assert len(json.loads((tmp_path / "run" / "history.json").read_text())) == 2
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"training": {"epochs": 1}}))
    assert mlepi_main(["train-electron", str(tmp_path / "bad.yaml"), "--quiet"]) == 2


def test_deeph_folder_training_round_trip(tmp_path, rng):
    """Teacher (an spd model) → DeepH folders in OpenMX order → train a student from the folders."""
    torch.manual_seed(11)
    spd = {"C": [0, 1, 2]}
    teacher = HedgeNetElectron(dict(TINY_MODEL, basis=spd), dtype=torch.float64)
    teacher.set_onsite_offset({6: np.diag([-3.0] + [3.7] * 3 + [8.0] * 5)})
    hams = []
    for k in range(4):
        atoms = bilayer_graphene("AB", size=(1, 1), vacuum=12.0)
        atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape)
        h = teacher.predict_hamiltonian(atoms)
        write_deeph(h, tmp_path / "folders" / f"s{k}")
        hams.append(h)
    # the files hold OpenMX order: the d block differs from e3nn order and equals the converted one
    b = int(np.nonzero((hams[0].pairs[:, 0] == 0) & (hams[0].pairs[:, 1] == 1))[0][0])
    with h5py.File(tmp_path / "folders" / "s0" / "hamiltonians.h5", "r") as f:
        s = hams[0].shifts[b]
        raw = np.asarray(f[f"[{s[0]}, {s[1]}, {s[2]}, 1, 2]"])
    expect = block_from_e3nn(hams[0].blocks[b], [0, 1, 2], [0, 1, 2], "openmx")
    assert np.allclose(raw, expect, atol=1e-14) and not np.allclose(raw[4:, 4:], hams[0].blocks[b][4:, 4:])
    back = read_deeph(tmp_path / "folders" / "s0")
    assert np.abs(back.blocks[np.lexsort(np.c_[back.pairs, back.shifts][:, ::-1].T)]
                  - hams[0].blocks[np.lexsort(np.c_[hams[0].pairs, hams[0].shifts][:, ::-1].T)]).max() < 1e-13

    cfg = {"data": {"deeph_folders": [str(tmp_path / "folders" / "s*")], "valid_fraction": 0.25},
           "model": dict(TINY_MODEL, basis=spd),
           "training": dict(epochs=4, batch_size=1, lr=0.01, dtype="float64", num_threads=1, progress=False),
           "output": {"dir": str(tmp_path / "student")}}
    result = train_electron(cfg, log=None)
    hist = result["history"]
    assert hist[-1]["train"]["mae_meV"] < hist[0]["train"]["mae_meV"]
    student = load_electron_model(result["model_path"])
    assert student.basis.to_dict() == {"C": [0, 1, 2]}
    pred = student.predict_hamiltonian(back.to_atoms())
    write_deeph(pred, tmp_path / "pred")
    again = read_deeph(tmp_path / "pred")
    assert np.array_equal(again.pairs, pred.pairs[np.lexsort(np.c_[pred.pairs, pred.shifts][:, ::-1].T)])
    assert again.hermiticity_error() < 1e-13
    # wrong basis in the model config is refused with a clear message
    bad = dict(cfg, model=dict(TINY_MODEL, basis={"C": [0, 1]}), output={"dir": str(tmp_path / "bad")})
    with pytest.raises(ValueError, match="basis mismatch"):
        train_electron(bad, log=None)


def test_init_model_starts_from_given_weights(tmp_path, rng):
    data = sk_dataset(tmp_path / "d.h5", rng, n_train=2, n_valid=1)
    first = train_electron(config(data, tmp_path / "a", epochs=2), log=None)
    cfg = config(data, tmp_path / "b", epochs=1, lr=1e-12, init_model=first["model_path"])
    cfg["model"] = {"num_channels": 99}  # ignored: the initial model's configuration is used
    second = train_electron(cfg, log=None)
    a, b = load_electron_model(first["model_path"]), load_electron_model(second["model_path"])
    assert b.config == a.config
    atoms = read_electron_dataset(data, "valid")[0][0].to_atoms()
    assert np.abs(a.predict_hamiltonian(atoms).blocks - b.predict_hamiltonian(atoms).blocks).max() < 1e-8
    assert "starting from the weights" in (tmp_path / "b" / "train.log").read_text()


def test_num_threads_must_be_positive_or_null():
    from mlepi_ase.train.electron import normalize_train_config

    data = {"data": {"dataset": "x.h5"}}
    assert normalize_train_config(data)["training"]["num_threads"] is None
    for bad in (0, -2, 2.0):
        with pytest.raises(ValueError, match="training.num_threads"):
            normalize_train_config({**data, "training": {"num_threads": bad}})
