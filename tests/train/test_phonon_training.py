"""Dataset generation and training of HedgeNet-Phonon: labels, splits, loss decrease, exact resume."""

from __future__ import annotations

import ast
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from mlepi_ase._files import file_sha256
from mlepi_ase.cli import main
from mlepi_ase.models import HedgeNetPhonon, load_phonon_model, save_phonon_model
from mlepi_ase.phonon_dataset import (
    REF_ENERGY,
    REF_FORCES,
    read_phonon_dataset,
    slide_configurations,
    split_configurations,
    stacking_configurations,
)
from mlepi_ase.reference import ReferenceForceField
from mlepi_ase.structures import bilayer_graphene
from mlepi_ase.train.phonon import load_train_config, train_phonon
from mlepi_ase.train.schedule import cosine_time_finished

REPO = Path(__file__).resolve().parents[2]
SHIPPED_PHONON = REPO / "data" / "hedgenet_phonon"  # the shipped model's recipes and experiments


def changed_keys(a: dict, b: dict) -> set:
    """Keys of ``a`` whose values differ in ``b`` (two normalised configurations with the same keys)."""
    return {k for k in a if a[k] != b[k]}


def starts_from(cfg: dict, prev: dict) -> bool:
    """Whether training configuration ``cfg`` fine-tunes the model file that ``prev`` writes."""
    return Path(cfg["init_model"]) == Path(prev["output_dir"]) / prev["model_file"]


def annealed_history(path: Path, cfg: dict, n_epochs: int) -> list[dict]:
    """The per-epoch history at ``path``, checked to hold epochs 0 .. n_epochs-1 and to end at ``cfg``'s lr floor."""
    history = json.loads(Path(path).read_text())
    assert [h["epoch"] for h in history] == list(range(n_epochs))
    assert history[-1]["lr"] < 2 * cfg["min_lr"]
    return history


def nearest_boundary_history(path: Path, cfg: dict, n_epochs: int | None = None) -> list[dict]:
    """The per-epoch history at ``path``, checked to end by the ``cosine_time`` nearest-boundary stop of ``cfg``'s
    budget (every epoch but the last continued, the last stopped) and, if given, to hold ``n_epochs`` epochs."""
    history = json.loads(Path(path).read_text())
    if n_epochs is not None:
        assert len(history) == n_epochs
    budget = 60.0 * cfg["max_time_minutes"]
    assert all(not cosine_time_finished(h["elapsed_s"], h["epoch_s"], budget) for h in history[:-1])
    assert cosine_time_finished(history[-1]["elapsed_s"], history[-1]["epoch_s"], budget)
    return history


TINY_DATA = dict(train_supercell=[2, 2], test_supercell=[3, 3], temperatures=[300.0], n_thermal=[8],
                 rattle_amplitudes=[0.01, 0.04], n_rattle=[3, 3], n_stacking=4, n_slide=3, n_test_thermal=2,
                 valid_fraction=0.2, test_fraction=0.1)
TINY_MODEL = dict(num_channels=4, max_L=1, max_ell=1, radial_mlp=[8], num_interactions=2, correlation=2,
                  num_bessel=4, readout_mlp=4, cutoffs={"intra": 3.0, "inter": 4.5})


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """The tiny dataset, made through the command line ``mlepi make-dataset phonon``."""
    out = tmp_path_factory.mktemp("phonon_data")
    settings = out / "settings.yaml"
    settings.write_text(yaml.safe_dump(TINY_DATA))
    assert main(["make-dataset", "phonon", "-o", str(out), "--settings", str(settings), "--seed", "7",
                 "--no-progress"]) == 0
    return out, json.loads((out / "dataset.json").read_text())


def test_dataset_labels_and_splits(dataset):
    out, summary = dataset
    train = read_phonon_dataset(out / "train.xyz")
    valid = read_phonon_dataset(out / "valid.xyz")
    test = read_phonon_dataset(out / "test.xyz")
    held = read_phonon_dataset(out / "test_3x3.xyz", require_stress=True)
    assert len(train) + len(valid) + len(test) == 8 + 6 + 4 + 3
    assert all(len(a) == 16 for a in train) and all(len(a) == 36 for a in held)
    assert {a.info["config_type"] for a in train} == {"thermal_300K", "rattle_0.01", "rattle_0.04", "stacking",
                                                      "slide"}
    assert all(a.info["config_type"] == "thermal_300K" for a in held)
    keys = {tuple(np.round(a.positions.ravel(), 6)) for a in train}
    assert not keys & {tuple(np.round(a.positions.ravel(), 6)) for a in valid + test}
    # labels are the reference force field's
    calc = ReferenceForceField()
    for a in (train[0], held[0]):
        b = a.copy()
        b.calc = calc
        assert b.get_potential_energy() == pytest.approx(a.info[REF_ENERGY], abs=1e-8)
        np.testing.assert_allclose(b.get_forces(), a.arrays[REF_FORCES], atol=1e-8)
    assert summary["seed"] == 7 and summary["counts"]["test_3x3"] == {"thermal_300K": 2}
    assert (out / "reference_phonons_3x3.yaml").is_file()


def test_stacking_configurations_slide_the_top_layer(rng):
    atoms = bilayer_graphene("AB", size=(2, 2))
    configs = stacking_configurations(atoms, 5, (3.1, 3.9), rattle=0.0, rng=rng)
    layers = atoms.arrays["layer"]
    for c in configs:
        z = c.positions[:, 2]
        assert z[layers == 1].mean() - z[layers == 0].mean() == pytest.approx(c.info["interlayer"], abs=1e-9)
        np.testing.assert_allclose(c.positions[layers == 0], atoms.positions[layers == 0], atol=1e-9)


def test_slide_configurations_move_the_top_layer_rigidly(rng):
    atoms = bilayer_graphene("AB", size=(2, 2))
    layers = atoms.arrays["layer"]
    configs = slide_configurations(atoms, 20, max_slide=0.2, interlayer_delta=0.05, rng=rng)
    shifts = []
    for c in configs:
        assert c.info["config_type"] == "slide"
        np.testing.assert_allclose(c.positions[layers == 0], atoms.positions[layers == 0], atol=1e-9)
        d = c.positions[layers == 1] - atoms.positions[layers == 1]
        d[:, :2] -= np.round(np.linalg.solve(atoms.cell[:2, :2].T, d[:, :2].T).T) @ atoms.cell[:2, :2]  # wrap
        np.testing.assert_allclose(d, np.broadcast_to(c.info["slide"], d.shape), atol=1e-9)
        shifts.append(c.info["slide"])
    shifts = np.array(shifts)
    assert np.all(np.linalg.norm(shifts[:, :2], axis=1) <= 0.2) and np.all(np.abs(shifts[:, 2]) <= 0.05)
    assert np.ptp(np.arctan2(shifts[:, 1], shifts[:, 0])) > np.pi  # directions spread, not one axis
    with pytest.raises(ValueError, match="layer"):
        slide_configurations(bilayer_graphene("AB")[:2], 1)


def test_split_is_stratified_and_complete(rng):
    atoms = bilayer_graphene("AB")
    configs = []
    for k in range(20):
        a = atoms.copy()
        a.info["config_type"] = "a" if k < 10 else "b"
        a.info["k"] = k
        configs.append(a)
    split = split_configurations(configs, 0.2, 0.1, rng=rng)
    assert sorted(a.info["k"] for s in split.values() for a in s) == list(range(20))
    assert sum(a.info["config_type"] == "a" for a in split["valid"]) == 2
    with pytest.raises(ValueError):
        split_configurations(configs, 0.6, 0.5)


def _config(dataset_dir, out_dir, **kw):
    cfg = dict(train_file=str(dataset_dir / "train.xyz"), valid_file=str(dataset_dir / "valid.xyz"),
               test_files={"test_3x3": str(dataset_dir / "test_3x3.xyz")}, output_dir=str(out_dir),
               model=TINY_MODEL, dtype="float64", batch_size=2, lr=0.03, progress=False, seed=3,
               ema_decay=0.9, stress_weight=10.0)
    cfg.update(kw)
    return cfg


def test_training_decreases_loss_and_writes_outputs(dataset, tmp_path):
    data_dir, _ = dataset
    result = train_phonon(_config(data_dir, tmp_path / "run", max_epochs=6), resume=False)
    hist = result["history"]
    assert len(hist) == 6
    assert hist[-1]["train_loss"] < 0.5 * hist[0]["train_loss"]
    assert min(h["valid_loss"] for h in hist) < hist[0]["valid_loss"]
    model = load_phonon_model(result["model_file"])
    assert model.metadata["training"]["epoch"] == result["best_epoch"]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())["metrics"]
    assert set(metrics) == {"train", "valid", "test_3x3"}
    assert metrics["test_3x3"]["forces_mae_meV_per_A"] > 0
    assert (tmp_path / "run" / "train.log").read_text().count("epoch") >= 6


def test_resume_reproduces_uninterrupted_run(dataset, tmp_path):
    data_dir, _ = dataset
    torch.set_num_threads(1)
    straight = train_phonon(_config(data_dir, tmp_path / "a", max_epochs=4, scheduler="exponential"), resume=False)
    train_phonon(_config(data_dir, tmp_path / "b", max_epochs=2, scheduler="exponential"), resume=False)
    resumed = train_phonon(_config(data_dir, tmp_path / "b", max_epochs=4, scheduler="exponential"), resume=True)
    assert [h["epoch"] for h in resumed["history"]] == [0, 1, 2, 3]
    np.testing.assert_allclose([h["train_loss"] for h in resumed["history"]],
                               [h["train_loss"] for h in straight["history"]], rtol=1e-10)
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-10, atol=1e-12)


def test_bad_training_config(tmp_path):
    with pytest.raises(KeyError, match="unknown training config"):
        load_train_config({"train_file": "x.xyz", "learning_rate": 1})
    with pytest.raises(ValueError, match="train_file"):
        load_train_config({})
    with pytest.raises(ValueError, match="scheduler"):
        load_train_config({"train_file": "x.xyz", "scheduler": "sometimes"})


def test_train_file_parts_repeat_and_select_configurations(dataset, tmp_path):
    """A list-valued train_file reads its parts in order, keeps the selected config types and repeats each
    selection as a block (list * repeat); paths resolve relative to the YAML file; bad parts are refused."""
    from mlepi_ase.train.phonon import read_training_configs

    data_dir, _ = dataset
    train = read_phonon_dataset(data_dir / "train.xyz")
    valid = read_phonon_dataset(data_dir / "valid.xyz")
    small = [a for a in train if a.info["config_type"] in ("rattle_0.01", "slide")]
    assert 0 < len(small) < len(train)
    path = tmp_path / "sub" / "cfg.yaml"
    path.parent.mkdir()
    spec = [os.path.relpath(data_dir / "train.xyz", path.parent),
            {"file": str(data_dir / "train.xyz"), "config_types": ["rattle_0.01", "slide"], "repeat": 2},
            {"file": str(data_dir / "valid.xyz"), "config_types": "stacking"}]
    path.write_text(yaml.safe_dump({"train_file": spec}))
    cfg = load_train_config(path)
    assert cfg["train_file"][0] == {"file": str(data_dir / "train.xyz"), "repeat": 1, "config_types": None}
    assert load_train_config(cfg)["train_file"] == cfg["train_file"]  # idempotent
    got = read_training_configs(cfg["train_file"])
    expected = train + small * 2 + [a for a in valid if a.info["config_type"] == "stacking"]
    assert len(got) == len(expected) > len(train) + 2 * len(small)
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a.positions, b.positions)
        np.testing.assert_array_equal(a.arrays[REF_FORCES], b.arrays[REF_FORCES])
    with pytest.raises(ValueError, match="no configuration of type"):
        read_training_configs(load_train_config({"train_file": [{"file": str(data_dir / "train.xyz"),
                                                                  "config_types": ["rattle_9"]}]})["train_file"])
    for part, err in [({"file": "x.xyz", "repeat": 0}, ValueError), ({"file": "x.xyz", "times": 2}, KeyError),
                      ({"repeat": 2}, KeyError), ({"file": "x.xyz", "config_types": []}, ValueError)]:
        with pytest.raises(err, match="part 0"):
            load_train_config({"train_file": [part]})
    with pytest.raises(ValueError, match="train_file"):
        load_train_config({"train_file": 3})


def test_training_on_train_file_parts(dataset, tmp_path):
    data_dir, _ = dataset
    parts = [str(data_dir / "train.xyz"), {"file": str(data_dir / "train.xyz"), "config_types": ["slide"],
                                            "repeat": 2}]
    result = train_phonon(_config(data_dir, tmp_path / "run", max_epochs=1, train_file=parts), resume=False)
    n_train = len(read_phonon_dataset(data_dir / "train.xyz"))
    n_slide = sum(a.info["config_type"] == "slide" for a in read_phonon_dataset(data_dir / "train.xyz"))
    assert f"{n_train + 2 * n_slide} train" in (tmp_path / "run" / "train.log").read_text()
    assert load_phonon_model(result["model_file"]).metadata["training"]["train_file"][1]["repeat"] == 2


def test_num_threads_must_be_positive_or_null():
    assert load_train_config({"train_file": "x.xyz"})["num_threads"] is None
    assert load_train_config({"train_file": "x.xyz", "num_threads": 2})["num_threads"] == 2
    for bad in (0, -1, 1.5, "2", True):
        with pytest.raises(ValueError, match="num_threads"):
            load_train_config({"train_file": "x.xyz", "num_threads": bad})


def test_train_phonon_command_line(dataset, tmp_path):
    data_dir, _ = dataset
    cfg = _config(data_dir, "run", max_epochs=2)
    for key in ("train_file", "valid_file"):
        cfg[key] = str(data_dir / Path(cfg[key]).name)
    cfg["test_files"] = {}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["train-phonon", str(path), "--quiet"]) == 0
    assert (tmp_path / "run" / "hedgenet_phonon.pt").is_file()  # output_dir relative to the YAML file
    assert main(["train-phonon", str(path), "--quiet"]) == 0  # resumes: nothing left to do
    assert len(json.loads((tmp_path / "run" / "history.json").read_text())) == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"train_file": "x.xyz", "optimiser": "sgd"}))
    assert main(["train-phonon", str(bad)]) == 2


def test_huber_force_loss_is_the_squared_loss_inside_delta_and_linear_beyond():
    from mlepi_ase.train.phonon import _loss

    delta = 0.01
    residual = torch.tensor([[0.004, -0.006, 0.0], [0.05, -0.2, 0.01]], dtype=torch.float64)
    weight = torch.tensor([[4.0], [0.25]], dtype=torch.float64)  # per-atom force weights w_b
    targets = {"energy": torch.zeros(1, dtype=torch.float64), "n_atoms": torch.ones(1, dtype=torch.float64),
               "forces": torch.zeros(2, 3, dtype=torch.float64), "force_weight": weight}
    out = {"energy": torch.zeros(1, dtype=torch.float64), "forces": residual}
    cfg = {"energy_weight": 1.0, "forces_weight": 1.0, "stress_weight": 0.0, "force_loss_delta": delta}
    r = np.sqrt(weight.numpy()) * residual.numpy()  # weighted residuals: 0.008, -0.012, 0 | 0.025, -0.1, 0.005
    rho = np.where(np.abs(r) <= delta, r ** 2, 2 * delta * np.abs(r) - delta ** 2)
    assert np.isclose(float(_loss(out, targets, dict(cfg, force_loss="huber"))), rho.mean(), rtol=1e-12)
    assert np.isclose(float(_loss(out, targets, dict(cfg, force_loss="mse"))), (r ** 2).mean(), rtol=1e-12)
    forces = residual.clone().requires_grad_(True)  # beyond delta the pull on a force is 2 delta sqrt(w) / 6
    _loss({"energy": out["energy"], "forces": forces}, targets, dict(cfg, force_loss="huber")).backward()
    expected = np.where(np.abs(r) <= delta, 2 * r, 2 * delta * np.sign(r)) * np.sqrt(weight.numpy()) / r.size
    np.testing.assert_allclose(forces.grad.numpy(), expected, rtol=1e-12, atol=1e-15)
    small = {"energy": out["energy"], "forces": 1e-3 * residual}  # all inside delta: the two losses agree
    assert np.isclose(float(_loss(small, targets, dict(cfg, force_loss="huber"))),
                      float(_loss(small, targets, dict(cfg, force_loss="mse"))), rtol=1e-12)
    with pytest.raises(ValueError, match="force_loss must"):
        load_train_config({"train_file": "x.xyz", "force_loss": "l1"})
    with pytest.raises(ValueError, match="force_loss_delta"):
        load_train_config({"train_file": "x.xyz", "force_loss": "huber", "force_loss_delta": 0})


def test_relative_force_weights_equalise_configurations(dataset):
    from mlepi_ase.train.phonon import PhononDataset
    from mlepi_ase.models import normalize_phonon_config

    data_dir, _ = dataset
    data = PhononDataset.from_file(data_dir / "train.xyz", normalize_phonon_config(TINY_MODEL))
    assert np.all(data.force_weights("uniform") == 1.0)
    w = data.force_weights("relative", floor=1e-6)
    msq = np.array([np.mean(f ** 2) for f in data.forces])
    weighted = w * msq  # each configuration's weighted mean squared force: all equal
    np.testing.assert_allclose(weighted, weighted[0], rtol=1e-6)
    small = int(np.argmin(msq))
    assert w[small] == w.max() and w.max() > 3 * w.min()  # rattles of 0.01 Å count more than thermal ones


def test_fine_tuning_starts_from_the_given_model(dataset, tmp_path):
    data_dir, _ = dataset
    first = train_phonon(_config(data_dir, tmp_path / "first", max_epochs=2), resume=False)
    cfg = _config(data_dir, tmp_path / "tuned", max_epochs=1, lr=1e-12, force_weighting="relative")
    del cfg["model"]
    cfg["init_model"] = first["model_file"]
    tuned = train_phonon(cfg, resume=False)
    a, b = load_phonon_model(first["model_file"]), load_phonon_model(tuned["model_file"])
    assert a.config == b.config  # normalisation and architecture kept
    atoms = read_phonon_dataset(data_dir / "valid.xyz")[0]
    assert b.predict(atoms)["energy"] == pytest.approx(a.predict(atoms)["energy"], abs=1e-6)
    with pytest.raises(ValueError, match="either model"):
        load_train_config({"train_file": "x.xyz", "model": {"num_channels": 4}, "init_model": "m.pt"})


@pytest.mark.parametrize("key, size", [("widen_channels", 7), ("widen_readout", 11)])
def test_fine_tuning_can_widen_the_given_model_first(dataset, tmp_path, key, size):
    data_dir, _ = dataset
    first = train_phonon(_config(data_dir, tmp_path / "first", max_epochs=2), resume=False)
    cfg = _config(data_dir, tmp_path / "wide", max_epochs=1, lr=1e-12, evaluate_train_set=False, **{key: size})
    del cfg["model"]
    cfg["init_model"] = first["model_file"]
    wide = train_phonon(cfg, resume=False)
    a, b = load_phonon_model(first["model_file"]), load_phonon_model(wide["model_file"])
    config_key = {"widen_channels": "num_channels", "widen_readout": "readout_mlp"}[key]
    assert b.config[config_key] == size != a.config[config_key]
    assert {k: v for k, v in b.config.items() if k != config_key} == \
        {k: v for k, v in a.config.items() if k != config_key}
    assert b.count_parameters() > a.count_parameters()
    atoms = read_phonon_dataset(data_dir / "valid.xyz")[0]
    assert b.predict(atoms)["energy"] == pytest.approx(a.predict(atoms)["energy"], abs=1e-6)
    np.testing.assert_allclose(b.predict(atoms)["forces"], a.predict(atoms)["forces"], atol=1e-6)
    assert set(wide["metrics"]) == {"valid", "test_3x3"}  # the training set left out
    log = (tmp_path / "wide" / "train.log").read_text()
    grown = {"widen_channels": "4 -> 7 channels", "widen_readout": "readout MLP 4 -> 11"}[key]
    assert f"widened {grown} (" in log
    cfg["max_epochs"] = 2  # a resumed run rebuilds the wide model from its checkpoint
    assert load_phonon_model(train_phonon(cfg)["model_file"]).config[config_key] == size
    with pytest.raises(ValueError, match=f"{key} widens init_model"):
        load_train_config({"train_file": "x.xyz", key: 8})
    with pytest.raises(ValueError, match=key):
        load_train_config({"train_file": "x.xyz", "init_model": "m.pt", key: 0})


def test_export_checkpoint_model_writes_the_last_epoch(dataset, tmp_path):
    from mlepi_ase.train.phonon import export_checkpoint_model

    data_dir, _ = dataset
    train_phonon(_config(data_dir, tmp_path / "run", max_epochs=3), resume=False)
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    for use_ema in (True, False):
        path = export_checkpoint_model(tmp_path / "run" / "checkpoint.pt", tmp_path / f"last_{use_ema}.pt", use_ema)
        model = load_phonon_model(path)
        assert model.metadata["training"]["epoch"] == 2
        assert model.metadata["training"]["ema"] is use_ema
        for name, p in model.named_parameters():
            want = ckpt["ema"]["shadow"][name] if use_ema else ckpt["model"][name]
            torch.testing.assert_close(p.detach(), want, rtol=0, atol=0)
    ema, raw = load_phonon_model(tmp_path / "last_True.pt"), load_phonon_model(tmp_path / "last_False.pt")
    atoms = read_phonon_dataset(data_dir / "valid.xyz")[0]
    assert ema.predict(atoms)["energy"] != raw.predict(atoms)["energy"]  # the averaged weights differ
    with pytest.raises(ValueError, match="not a HedgeNet-Phonon training checkpoint"):
        export_checkpoint_model(tmp_path / "last_True.pt", tmp_path / "x.pt")
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(yaml.safe_dump(_config(data_dir, tmp_path / "run", max_epochs=3)))
    assert main(["train-phonon", str(cfg_file), "--export-last", str(tmp_path / "cli.pt")]) == 0
    torch.testing.assert_close(load_phonon_model(tmp_path / "cli.pt").state_dict(), ema.state_dict())
    cfg_file.write_text(yaml.safe_dump(_config(data_dir, tmp_path / "none", max_epochs=3)))
    assert main(["train-phonon", str(cfg_file), "--export-last", str(tmp_path / "x.pt")]) == 2


def test_cli_threads_override_applies_on_resume(dataset, tmp_path):
    data_dir, _ = dataset
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(yaml.safe_dump(_config(data_dir, tmp_path / "run", max_epochs=1, num_threads=2)))
    before = torch.get_num_threads()
    try:
        assert main(["train-phonon", str(cfg_file), "--quiet"]) == 0
        assert torch.get_num_threads() == 2
        cfg_file.write_text(yaml.safe_dump(_config(data_dir, tmp_path / "run", max_epochs=2, num_threads=2)))
        assert main(["train-phonon", str(cfg_file), "--threads", "1", "--quiet"]) == 0  # resumes after epoch 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [0, 1]
    assert main(["train-phonon", str(cfg_file), "--threads", "0"]) == 2


@pytest.mark.parametrize("folder, n_stages", [("data/hedgenet_phonon", 36),
                                              ("data/hedgenet_phonon/ablation_homogeneous", 10)])
def test_shipped_training_recipe_is_a_consistent_chain(folder, n_stages):
    """The shipped stage configs load, each stage starts from the previous stage's output (the last epoch's
    weights for the cosine anneals of stages 3-9), stages 1-3 train on one file, stage 4 on it with its small
    rattles four times, stages 5 and 6 on that plus the slide set twice, stage 7 on that plus the extra thermal
    set, stage 8 on the same files with the small rattles six times and the slides three times, stage 9 on those
    plus the second extra thermal set with the small rattles 14 times and the slides 7 times, the later stages
    (10-35 of the heterogeneous network, 10 of the ablation) on stage 9's files, stage 36 on those plus a fourth
    thermal set of the second one's settings, and stage 1 builds the architecture of the shipped model file."""
    from mlepi_ase.models.phonon import read_phonon_model_file

    root = REPO / folder
    stages = [load_train_config(root / f"train_config_stage{k}.yaml") for k in range(1, n_stages + 1)]
    assert not (root / f"train_config_stage{n_stages + 1}.yaml").exists()
    assert stages[0]["init_model"] is None and stages[0]["model"]
    for prev, cur in zip(stages, stages[1:]):
        assert starts_from(cur, prev)
        assert cur["valid_file"] == prev["valid_file"]
    assert {s["train_file"] for s in stages[:3]} == {stages[0]["train_file"]}
    dataset = stages[0]["train_file"]
    small_x4 = [{"file": dataset, "repeat": 1, "config_types": None},
                {"file": dataset, "repeat": 3, "config_types": ["rattle_0.003", "rattle_0.01"]}]
    slides = {"file": str(Path(dataset).parent.with_name("phonon_dataset_slides") / "train.xyz"), "repeat": 2,
              "config_types": None}
    thermal = {"file": str(Path(dataset).parent.with_name("phonon_dataset_thermal_extra") / "train.xyz"),
               "repeat": 1, "config_types": None}
    thermal2 = {**thermal, "file": str(Path(dataset).parent.with_name("phonon_dataset_thermal_extra2") / "train.xyz")}
    small_x6 = [small_x4[0], {**small_x4[1], "repeat": 5}]
    small_x14 = [small_x4[0], {**small_x4[1], "repeat": 13}]
    expected = [small_x4, small_x4 + [slides], small_x4 + [slides], small_x4 + [slides, thermal],
                small_x6 + [{**slides, "repeat": 3}, thermal], small_x14 + [{**slides, "repeat": 7}, thermal, thermal2]]
    expected += [expected[-1]] * (min(n_stages, 35) - 9)  # stages 10-35: stage 9's files
    thermal3 = {**thermal, "file": str(Path(dataset).parent.with_name("phonon_dataset_thermal_extra3") / "train.xyz")}
    expected += [expected[-1] + [thermal3]] * (n_stages - 35)  # stage 36: and a fourth thermal set
    assert [s["train_file"] for s in stages[3:]] == expected
    assert [s["select_model"] for s in stages[2:]] == ["last_epoch"] * (n_stages - 2)
    shipped = read_phonon_model_file(root / "hedgenet_phonon.pt")["config"]
    for key, value in stages[0]["model"].items():
        assert shipped[key] == value, key


def test_one_hour_cpu_recipe_is_the_shipped_architecture_from_scratch_on_the_stage5_set():
    """data/hedgenet_phonon/cpu_1h: one run from scratch, the shipped architecture and normalisation inputs, the
    stage-5 training set, a cosine anneal kept at its last epoch on the CPU; the variant changes only the
    force-weight floor (and its output folder)."""
    from mlepi_ase.models.phonon import read_phonon_model_file

    root = SHIPPED_PHONON
    stage1 = load_train_config(root / "train_config_stage1.yaml")
    stage5 = load_train_config(root / "train_config_stage5.yaml")
    cfg = load_train_config(root / "cpu_1h" / "train_config.yaml")
    assert cfg["init_model"] is None and cfg["model"] == stage1["model"]
    assert cfg["train_file"] == stage5["train_file"] and cfg["valid_file"] == stage5["valid_file"]
    assert (cfg["device"], cfg["num_threads"], cfg["scheduler"], cfg["select_model"], cfg["force_weighting"]) == (
        "cpu", 2, "cosine", "last_epoch", "relative")
    variant = load_train_config(root / "cpu_1h" / "train_config_floor05.yaml")
    changed = changed_keys(cfg, variant)
    assert changed == {"force_weight_floor", "output_dir"} and variant["force_weight_floor"] == 0.5
    shipped = read_phonon_model_file(root / "cpu_1h" / "hedgenet_phonon.pt")["config"]
    for key, value in cfg["model"].items():
        assert shipped[key] == value, key


def test_gpu_width_experiment_changes_only_the_channel_width():
    """data/hedgenet_phonon/experiments/gpu_width: three runs from scratch that differ only in num_channels
    (and output folder), on the stage-5 training set with a wall-clock cosine anneal; the fine-tuning run
    starts from stage 5's output with the stage-6 optimiser settings but the same time budget."""
    root = SHIPPED_PHONON
    exp = root / "experiments" / "gpu_width"
    stage1 = load_train_config(root / "train_config_stage1.yaml")
    stage5 = load_train_config(root / "train_config_stage5.yaml")
    stage6 = load_train_config(root / "train_config_stage6.yaml")
    runs = {w: load_train_config(exp / f"train_config_scratch{w}.yaml") for w in (32, 64, 128)}
    assert runs[32]["model"] == stage1["model"] and runs[32]["train_file"] == stage5["train_file"]
    for w, cfg in runs.items():
        changed = changed_keys(cfg, runs[32])
        assert changed == (set() if w == 32 else {"model", "output_dir"})
        assert changed_keys(cfg["model"], stage1["model"]) == (
            set() if w == 32 else {"num_channels"}) and cfg["model"]["num_channels"] == w
        assert (cfg["scheduler"], cfg["max_time_minutes"], cfg["init_model"]) == ("cosine_time", 6.0, None)
    ft = load_train_config(exp / "train_config_ft_stage5.yaml")
    assert ft["init_model"] == stage6["init_model"] and ft["train_file"] == stage6["train_file"]
    assert (ft["lr"], ft["batch_size"], ft["scheduler"]) == (stage6["lr"], stage6["batch_size"], "cosine_time")


def test_stages_7_and_8_differ_between_the_networks_only_in_paths_and_budget():
    """Stages 7 and 8 of the shipped model and of the homogeneous ablation use the same data and settings (the
    ablation's stage 7 had a shorter time budget); stage 8 changes only the repeats, the lr and the budget; the
    extra dataset holds thermal samples only, at temperatures within the shipped set's range."""
    root = SHIPPED_PHONON
    het = [load_train_config(root / f"train_config_stage{k}.yaml") for k in (7, 8)]
    hom = [load_train_config(root / "ablation_homogeneous" / f"train_config_stage{k}.yaml") for k in (7, 8)]
    assert changed_keys(het[0], hom[0]) == {"output_dir", "init_model", "max_time_minutes"}
    assert changed_keys(het[1], hom[1]) == {"output_dir", "init_model"}
    for seven, eight in (het, hom):
        assert (seven["scheduler"], eight["scheduler"], seven["device"]) == ("cosine_time", "cosine_time", "cpu")
        changed = changed_keys(eight, seven)
        assert changed == {"train_file", "test_files", "output_dir", "init_model", "lr", "max_time_minutes"}
        assert eight["lr"] < seven["lr"]
    settings = yaml.safe_load((root / "dataset_thermal_extra.yaml").read_text())
    shipped = yaml.safe_load((root / "dataset.yaml").read_text())
    assert (sum(settings["n_rattle"]), settings["n_stacking"], settings["n_slide"]) == (0, 0, 0)
    assert min(shipped["temperatures"]) <= min(settings["temperatures"])
    assert max(settings["temperatures"]) <= max(shipped["temperatures"])


def test_stage_9_keeps_the_stage_8_shares_and_differs_between_the_networks_only_in_paths_and_budget():
    """Stage 9 (GPU, large batches) adds the second extra thermal set and repeats the small rattles and slides so
    that their shares of an epoch stay within two points of stage 8's; the ablation's stage 9 differs only in
    paths and its shorter budget; the GPU variants under experiments/gpu_stage9 change only what their
    comments say."""
    root = SHIPPED_PHONON
    eight, nine = (load_train_config(root / f"train_config_stage{k}.yaml") for k in (8, 9))
    hom = load_train_config(root / "ablation_homogeneous" / "train_config_stage9.yaml")
    assert changed_keys(nine, hom) == {"output_dir", "init_model", "max_time_minutes"}
    assert hom["max_time_minutes"] < nine["max_time_minutes"]
    assert (nine["device"], nine["scheduler"], nine["batch_size"]) == ("cuda", "cosine_time", 32)
    second = yaml.safe_load((root / "dataset_thermal_extra2.yaml").read_text())
    first = yaml.safe_load((root / "dataset_thermal_extra.yaml").read_text())
    # the first extra set's settings with twice the counts (that set is thermal only:
    # test_stages_7_and_8_differ_between_the_networks_only_in_paths_and_budget)
    assert changed_keys(second, first) == {"n_thermal"}
    assert second["n_thermal"] == [2 * n for n in first["n_thermal"]]

    # training-split sizes of the make-dataset runs behind the configs (their dataset.json), and the 0.003 / 0.01 Å
    # rattles among the 704 of the main set
    sizes = {"phonon_dataset_large": 704, "phonon_dataset_slides": 96, "phonon_dataset_thermal_extra": 1350,
             "phonon_dataset_thermal_extra2": 2700}
    small_rattles = 178

    def shares(parts):
        """Fractions of an epoch that are small rattles and slides."""
        total = small = slide = 0
        for part in parts:
            name = Path(part["file"]).parent.name
            n = (small_rattles if part["config_types"] else sizes[name]) * part["repeat"]
            total += n
            small += small_rattles * part["repeat"] if name == "phonon_dataset_large" else 0
            slide += n if name == "phonon_dataset_slides" else 0
        return small / total, slide / total

    small8, slide8 = shares(eight["train_file"])
    small9, slide9 = shares(nine["train_file"])
    assert round(small8, 3) == 0.330 and round(slide8, 3) == 0.089  # 1,068 and 288 of 3,232
    assert abs(small9 - small8) < 0.02 and abs(slide9 - slide8) < 0.02

    exp = root / "experiments" / "gpu_stage9"
    b8 = load_train_config(exp / "train_config_het_more_b8.yaml")
    same = load_train_config(exp / "train_config_het_same_b32.yaml")
    assert changed_keys(b8, nine) == {"output_dir", "batch_size", "lr", "max_time_minutes"}
    assert changed_keys(same, nine) == {"output_dir", "train_file"}
    assert same["train_file"] == eight["train_file"]


def test_stage_10_and_the_cpu_widen_experiment_change_only_what_they_say():
    """Stage 10 is stage 9's data on the CPU with stage 8's kind of settings (batch 8, one thread, a wall-clock
    anneal); it is the 32-channel run of experiments/cpu_widen, whose widened run differs only in widen_channels."""
    root = SHIPPED_PHONON
    nine, ten = (load_train_config(root / f"train_config_stage{k}.yaml") for k in (9, 10))
    assert ten["train_file"] == nine["train_file"] and ten["widen_channels"] is None
    assert (ten["device"], ten["num_threads"], ten["batch_size"], ten["scheduler"]) == ("cpu", 1, 8, "cosine_time")
    exp = root / "experiments" / "cpu_widen"
    same = load_train_config(exp / "train_config_same32.yaml")
    wide = load_train_config(exp / "train_config_widen64.yaml")
    assert changed_keys(wide, same) == {"widen_channels", "output_dir"} and wide["widen_channels"] == 64
    # the run was stopped by hand after its fourth epoch, where max_epochs stops the recipe
    assert changed_keys(same, ten) == {"output_dir", "max_epochs"} and ten["max_epochs"] == 4
    assert starts_from(ten, nine)
    history = annealed_history(root / "training_history_stage10.json", ten, 4)
    assert history[-1]["elapsed_s"] < 60 * ten["max_time_minutes"]


def test_stages_11_12_and_the_gpu_stage11_experiment_change_only_what_they_say():
    """Stage 11 is stage 9's GPU recipe started from stage 10; stage 12 continues it with a lower peak lr and a
    shorter budget; the ablation's stage 10 is stage 11's recipe from the ablation's stage 9, and its
    equal-training partner (experiments/gpu_stage11, het32_from9) the same from heterogeneous stage 9; the
    widened run there differs from stage 11 only in widen_channels; the CPU run tried as stage 13
    (experiments/cpu_fresh_thermal) is stage 10's recipe from stage 12 with the second extra thermal set
    redrawn.  Each shipped stage's history ends with the lr annealed to its floor."""
    root = SHIPPED_PHONON
    nine, ten, eleven, twelve = (load_train_config(root / f"train_config_stage{k}.yaml") for k in (9, 10, 11, 12))
    hom_nine, hom_ten = (load_train_config(root / "ablation_homogeneous" / f"train_config_stage{k}.yaml")
                         for k in (9, 10))
    exp = root / "experiments" / "gpu_stage11"
    partner = load_train_config(exp / "train_config_het32_from9.yaml")
    wide = load_train_config(exp / "train_config_het128.yaml")

    assert changed_keys(eleven, nine) == {"output_dir", "init_model", "evaluate_train_set"}
    assert starts_from(eleven, ten)
    assert changed_keys(twelve, eleven) == {"output_dir", "init_model", "max_time_minutes", "lr"}
    assert twelve["lr"] < eleven["lr"] and twelve["max_time_minutes"] < eleven["max_time_minutes"]
    assert changed_keys(hom_ten, eleven) == {"output_dir", "init_model"}
    assert starts_from(hom_ten, hom_nine)
    assert changed_keys(partner, eleven) == {"output_dir", "init_model"}
    assert starts_from(partner, nine)
    assert changed_keys(wide, eleven) == {"output_dir", "widen_channels"} and wide["widen_channels"] == 128
    fresh = load_train_config(exp.parent / "cpu_fresh_thermal" / "train_config.yaml")  # tried as stage 13
    assert changed_keys(fresh, ten) == {"output_dir", "init_model", "max_time_minutes", "max_epochs", "train_file"}
    assert starts_from(fresh, twelve)
    assert [f["file"].replace("thermal_extra3", "thermal_extra2") for f in fresh["train_file"]] == \
        [f["file"] for f in ten["train_file"]]
    for history_file, cfg, epochs in [(root / "training_history_stage11.json", eleven, 10),
                                      (root / "training_history_stage12.json", twelve, 7),
                                      (root / "ablation_homogeneous" / "training_history_stage10.json", hom_ten, 9)]:
        annealed_history(history_file, cfg, epochs)


def test_stage_13_and_the_cpu_force_floor_experiment_change_only_what_they_say():
    """experiments/cpu_force_floor: two CPU fine-tunings of stage 12 on stage 12's files, the same but for the
    floor F_0 of the relative force weights (0.5 eV/Å against the shipped 0.1); the 0.1 run is the control, and
    stage 13 is that run (its config differs only in the output folder; its history ends at the lr floor).
    Against the earlier CPU try from stage 12 (cpu_fresh_thermal) they change the peak lr, the budget and the
    epoch cap, and go back to the second extra thermal set stage 12 was trained on."""
    root = SHIPPED_PHONON
    twelve = load_train_config(root / "train_config_stage12.yaml")
    exp = root / "experiments"
    floor5, floor1 = (load_train_config(exp / "cpu_force_floor" / f"train_config_floor{f}.yaml")
                      for f in ("0.5", "0.1"))
    fresh = load_train_config(exp / "cpu_fresh_thermal" / "train_config.yaml")
    assert changed_keys(floor5, floor1) == {"output_dir", "force_weight_floor"}
    assert (floor5["force_weight_floor"], floor1["force_weight_floor"]) == (0.5, 0.1)
    assert twelve["force_weight_floor"] == 0.1
    assert changed_keys(floor1, fresh) == {"output_dir", "lr", "max_time_minutes", "max_epochs", "train_file"}
    assert floor1["lr"] == twelve["lr"] and floor1["train_file"] == twelve["train_file"]
    assert starts_from(floor1, twelve)
    thirteen = load_train_config(root / "train_config_stage13.yaml")
    assert changed_keys(thirteen, floor1) == {"output_dir"}
    history = annealed_history(root / "training_history_stage13.json", thirteen, 4)
    assert history == json.loads((exp / "cpu_force_floor" / "training_history_floor0.1.json").read_text())


def test_the_readout_width_experiment_changes_only_the_readout():
    """experiments/readout_width: two CPU fine-tunings of stage 13 (shipped then) with stage 13's own files and
    settings (3 epochs, a 64-minute anneal), one with the last readout MLP widened 16 -> 128, one control."""
    root = SHIPPED_PHONON
    thirteen = load_train_config(root / "train_config_stage13.yaml")
    exp = root / "experiments" / "readout_width"
    wide, control = (load_train_config(exp / f"train_config_readout{h}.yaml") for h in (128, 16))
    assert changed_keys(wide, control) == {"output_dir", "widen_readout"}
    assert (wide["widen_readout"], control["widen_readout"]) == (128, None)
    assert load_phonon_model(root / "hedgenet_phonon.pt").config["readout_mlp"] == 16
    assert changed_keys(control, thirteen) == {"output_dir", "init_model", "max_epochs", "max_time_minutes"}
    assert starts_from(control, thirteen)
    assert (control["max_epochs"], control["max_time_minutes"]) == (3, 64)


def _smooth_knot_copy(path: str) -> Path:
    """Where ``make_smooth_knot_sets.py`` writes the relabelled copy of ``out/<dataset>/<file>``."""
    return Path(path).parents[1] / "smooth_knot" / Path(path).parent.name / Path(path).name


def test_the_smooth_knot_experiment_relabels_stage_13s_files_and_changes_nothing_else():
    """experiments/smooth_knot: stage 13's training files and shares, relabelled (same file names under
    out/smooth_knot/), the readout_width control's settings but 2 epochs / 44 minutes, all three held-out draws."""
    root = SHIPPED_PHONON
    exp = root / "experiments"
    smooth = load_train_config(exp / "smooth_knot" / "train_config.yaml")
    control = load_train_config(exp / "readout_width" / "train_config_readout16.yaml")
    assert changed_keys(smooth, control) == {"train_file", "valid_file", "test_files", "output_dir", "max_epochs",
                                             "max_time_minutes"}
    assert (smooth["max_epochs"], smooth["max_time_minutes"]) == (2, 44)

    assert [dict(p, file=_smooth_knot_copy(p["file"])) for p in control["train_file"]] == \
        [dict(p, file=Path(p["file"])) for p in smooth["train_file"]]
    assert Path(smooth["valid_file"]) == _smooth_knot_copy(control["valid_file"])
    draws = sorted(Path(p).relative_to(Path(p).parents[2]) for p in smooth["test_files"].values() if "6x6" in p)
    assert draws == [Path("smooth_knot") / d / "test_6x6.xyz" for d in
                     ("phonon_dataset_large", "phonon_dataset_thermal_extra", "phonon_dataset_thermal_extra2")]


def test_the_smooth_knot_scratch_run_is_the_one_hour_recipe_against_the_analytic_reference():
    """experiments/smooth_knot/train_config_cpu_1h.yaml: cpu_1h's network, seed, shares and 20-epoch anneal, its
    files relabelled (same names under out/smooth_knot/); only the time cap differs (the anneal is per epoch)."""
    root = SHIPPED_PHONON
    one_hour = load_train_config(root / "cpu_1h" / "train_config.yaml")
    smooth = load_train_config(root / "experiments" / "smooth_knot" / "train_config_cpu_1h.yaml")
    assert changed_keys(smooth, one_hour) == {"train_file", "valid_file", "test_files", "output_dir",
                                              "max_time_minutes"}
    assert one_hour["scheduler"] == smooth["scheduler"] == "cosine" and smooth["max_epochs"] == 20

    assert [dict(p, file=_smooth_knot_copy(p["file"])) for p in one_hour["train_file"]] == \
        [dict(p, file=Path(p["file"])) for p in smooth["train_file"]]
    assert Path(smooth["valid_file"]) == _smooth_knot_copy(one_hour["valid_file"])
    assert {k: Path(v) for k, v in smooth["test_files"].items()} == \
        {k: _smooth_knot_copy(v) for k, v in one_hour["test_files"].items()}
    script = root / "experiments" / "smooth_knot" / "make_smooth_knot_sets.py"
    files = next(node.value for node in ast.parse(script.read_text()).body
                 if isinstance(node, ast.Assign) and node.targets[0].id == "FILES")
    relabelled_by_script = {REPO / f for f in ast.literal_eval(files)}
    read = [p["file"] for p in one_hour["train_file"]] + [one_hour["valid_file"], *one_hour["test_files"].values()]
    assert {Path(f) for f in read} <= relabelled_by_script


def test_the_two_continuations_of_the_one_hour_runs_differ_only_in_reference():
    """smooth_knot/train_config_cpu_1h_more_{rebo,smooth}.yaml: each one-hour model trained 10 more epochs on its
    own run's files (second anneal from lr 3e-3, one thread each); they differ in files, start and output only."""
    root = SHIPPED_PHONON
    exp = root / "experiments" / "smooth_knot"
    runs = {"rebo": load_train_config(root / "cpu_1h" / "train_config.yaml"),
            "smooth": load_train_config(exp / "train_config_cpu_1h.yaml")}
    more = {k: load_train_config(exp / f"train_config_cpu_1h_more_{k}.yaml") for k in runs}
    assert changed_keys(more["rebo"], more["smooth"]) == {"train_file", "valid_file", "test_files", "output_dir",
                                                         "init_model"}
    for k, run in runs.items():
        assert changed_keys(more[k], run) - {"max_time_minutes"} == {"output_dir", "init_model", "model",
                                                                     "num_threads", "max_epochs", "lr"}
        assert more[k]["max_time_minutes"] == 90  # a guard only: the anneal is per epoch
        assert (more[k]["max_epochs"], more[k]["lr"], more[k]["num_threads"]) == (10, 3e-3, 1)
        assert [more[k][key] for key in ("train_file", "valid_file", "test_files")] == \
            [run[key] for key in ("train_file", "valid_file", "test_files")]
    # the REBO run's model is kept in data/ (cpu_1h/), the analytic-variant run's in its output folder
    assert Path(more["rebo"]["init_model"]) == root / "cpu_1h" / "hedgenet_phonon.pt"
    assert starts_from(more["smooth"], runs["smooth"])


def test_the_first_shell_run_is_the_one_hour_recipe_with_a_2_angstrom_intra_cutoff():
    """experiments/first_shell: cpu_1h's network, seed, files and 20-epoch anneal; only the intra-layer cutoff
    (2.0 instead of 3.2 Å), the thread count and the output folder differ."""
    root = SHIPPED_PHONON
    one_hour = load_train_config(root / "cpu_1h" / "train_config.yaml")
    first_shell = load_train_config(root / "experiments" / "first_shell" / "train_config.yaml")
    assert changed_keys(first_shell, one_hour) == {"model", "num_threads", "output_dir"}
    assert changed_keys(first_shell["model"], one_hour["model"]) == {"cutoffs"}
    assert one_hour["model"]["cutoffs"] == {"intra": 3.2, "inter": 5.0}
    assert first_shell["model"]["cutoffs"] == {"intra": 2.0, "inter": 5.0}


def test_stages_15_16_and_the_gpu_stage15_experiment_change_only_what_they_say():
    """Stage 15 is stage 14's files and loss from the stage-14 weights moved to the GPU (device, threads, seed, a
    7-minute budget at batch 64 and a doubled lr, plus the 4x4x1 test split); its partner in
    experiments/gpu_stage15 differs from it only in batch (32), lr (3e-4) and output; stage 16 continues stage 15
    with a lower peak lr and a shorter budget.  Each history ends with the lr annealed to its floor, after the
    number of epochs the READMEs give."""
    root = SHIPPED_PHONON
    fourteen, fifteen, sixteen = (load_train_config(root / f"train_config_stage{k}.yaml") for k in (14, 15, 16))
    partner = load_train_config(root / "experiments" / "gpu_stage15" / "train_config_bs32.yaml")

    assert changed_keys(fifteen, fourteen) == {"output_dir", "init_model", "device", "seed", "num_threads",
                                               "batch_size", "max_time_minutes", "lr", "test_files"}
    assert starts_from(fifteen, fourteen)
    assert fifteen["test_files"] == {**fourteen["test_files"], "test_4x4": fourteen["valid_file"].replace(
        "valid.xyz", "test.xyz")}
    assert (fifteen["device"], fifteen["batch_size"], fifteen["lr"], fifteen["max_time_minutes"]) == \
        ("cuda", 64, 6e-4, 7.0)
    assert changed_keys(partner, fifteen) == {"output_dir", "batch_size", "lr"}
    assert (partner["batch_size"], partner["lr"]) == (32, 3e-4)
    assert changed_keys(sixteen, fifteen) == {"output_dir", "init_model", "max_time_minutes", "lr"}
    assert starts_from(sixteen, fifteen)
    assert sixteen["lr"] < fifteen["lr"] and sixteen["max_time_minutes"] < fifteen["max_time_minutes"]
    for history_file, cfg, epochs in [(root / "training_history_stage15.json", fifteen, 35),
                                      (root / "training_history_stage16.json", sixteen, 18),
                                      (root / "experiments" / "gpu_stage15" / "training_history_bs32.json",
                                       partner, 19)]:
        annealed_history(history_file, cfg, epochs)


def test_the_cpu_stage17_runs_are_stage_14s_cpu_recipe_from_stage_16_and_differ_only_in_the_hot_share():
    """experiments/cpu_stage17: stage 14's CPU recipe and files from stage 16's output (another seed and budget, the
    4x4x1 split and the 1000 K check file as extra test sets); the hot run adds only the 128-sample 1000 K set,
    drawn with a seed and settings of its own (not the check set's)."""
    root = SHIPPED_PHONON
    folder = root / "experiments" / "cpu_stage17"
    fourteen, sixteen = (load_train_config(root / f"train_config_stage{k}.yaml") for k in (14, 16))
    plain, hot = (load_train_config(folder / f"train_config_{n}.yaml") for n in ("plain", "hot128"))
    assert changed_keys(plain, fourteen) == {"output_dir", "init_model", "seed", "max_time_minutes", "test_files"}
    assert starts_from(plain, sixteen)
    assert {k: v for k, v in plain["test_files"].items() if k in fourteen["test_files"]} == fourteen["test_files"]
    assert changed_keys(hot, plain) == {"train_file", "output_dir"}
    assert hot["train_file"][:-1] == plain["train_file"]
    assert Path(hot["train_file"][-1]["file"]).parent.name == "phonon_dataset_hot128"
    text = (folder / "dataset_hot128.yaml").read_text()
    settings = yaml.safe_load(text)
    check = yaml.safe_load((root / "experiments" / "hot_1000K" / "dataset_check.yaml").read_text())
    assert settings["temperatures"] == [1000.0] and settings["n_thermal"] == [128]
    assert "--seed 13" in text and settings != check
    for name, cfg in (("plain", plain), ("hot128", hot)):
        annealed_history(folder / f"training_history_{name}.json", cfg, 3)


def test_the_hot_run_is_stage_14s_recipe_from_stage_14_with_the_hot_set_added():
    """experiments/hot_1000K: stage 14's files plus the hot 800/1000 K set, started from stage 14's output; the
    recipe differs only in seed and time budget (and the extra held-out file), and the hot training set is drawn
    with another seed and other settings than the check set it is judged on."""
    root = SHIPPED_PHONON
    folder = root / "experiments" / "hot_1000K"
    stage14 = load_train_config(root / "train_config_stage14.yaml")
    hot = load_train_config(folder / "train_config.yaml")
    assert changed_keys(hot, stage14) == {"train_file", "test_files", "output_dir", "init_model", "seed",
                                          "max_time_minutes"}
    assert starts_from(hot, stage14)
    hot_train = Path(hot["train_file"][-1]["file"])
    assert hot["train_file"][:-1] == stage14["train_file"] and hot_train.parent.name == "phonon_dataset_hot_train"
    assert {k: v for k, v in hot["test_files"].items() if k != "hot_1000K_6x6"} == stage14["test_files"]
    assert Path(hot["test_files"]["hot_1000K_6x6"]).parent.name == "phonon_dataset_hot"
    train_settings = yaml.safe_load((folder / "dataset_train.yaml").read_text())
    check_settings = yaml.safe_load((folder / "dataset_check.yaml").read_text())
    assert train_settings["temperatures"] == [800.0, 1000.0] and check_settings["temperatures"] == [1000.0]
    assert (train_settings["valid_fraction"], train_settings["test_fraction"]) == (0.0, 0.0)
    commands = {name: (folder / name).read_text() for name in ("dataset_train.yaml", "dataset_check.yaml")}
    assert "--seed 12" in commands["dataset_train.yaml"] and "--seed 11" in commands["dataset_check.yaml"]


def test_hot_check_geometry_of_flat_and_displaced_sites(load_script):
    """worst_atoms.atom_geometry: a flat AB layer gives 1.42 Å bonds, 120° angles, no pyramidal height and second
    neighbours at a = 2.46 Å; lifting one atom by dz gives pyramidal height dz (its neighbours stay in plane) and
    bonds sqrt(1.42² + dz²); the other layer never counts as a neighbour."""
    from mlepi_ase.structures import GRAPHENE_A

    module = load_script(SHIPPED_PHONON / "experiments" / "hot_1000K" / "worst_atoms.py")
    atoms = bilayer_graphene(size=(3, 3))
    bond = GRAPHENE_A / np.sqrt(3)
    flat = module.atom_geometry(atoms, 0)
    np.testing.assert_allclose(flat["bonds_A"], [bond] * 3, atol=1e-3)
    np.testing.assert_allclose(flat["angles_deg"], [120.0] * 3, atol=0.1)
    assert flat["pyramidal_height_A"] < 1e-3
    assert abs(flat["second_neighbour_A"] - GRAPHENE_A) < 1e-3
    dz = 0.2
    atoms.positions[0, 2] += dz
    lifted = module.atom_geometry(atoms, 0)
    assert abs(lifted["pyramidal_height_A"] - dz) < 1e-3
    np.testing.assert_allclose(lifted["bonds_A"], [np.hypot(bond, dz)] * 3, atol=1e-3)
    assert all(angle < 120.0 for angle in lifted["angles_deg"])


def test_the_harmonic_fit_experiment_fine_tunes_the_shipped_model_on_its_own_set():
    """experiments/harmonic_fit: the stage-13 weights (shipped then) fine-tuned on the ± rattle-pair set alone (its script's
    output folder), uniform force weights; the same 6×6×1 held-out draw as the shipped model's test."""
    root = SHIPPED_PHONON
    cfg = load_train_config(root / "experiments" / "harmonic_fit" / "train_config_ft_stage13.yaml")
    thirteen = load_train_config(root / "train_config_stage13.yaml")
    assert starts_from(cfg, thirteen)
    assert Path(cfg["train_file"]).parent.name == "phonon_dataset_harmonic"
    assert Path(cfg["valid_file"]).parent.name == "phonon_dataset_harmonic"
    assert cfg["force_weighting"] == "uniform"
    thirteen = load_train_config(root / "train_config_stage13.yaml")
    assert cfg["test_files"]["test_6x6_300K"] == thirteen["test_files"]["test_6x6_300K"]


def test_a_missing_test_file_is_reported_before_training_starts(dataset, tmp_path):
    data_dir, _ = dataset
    cfg = _config(data_dir, tmp_path / "run", max_epochs=1,
                  test_files={"test_3x3": str(data_dir / "test_3x3.xyz"), "gone": str(tmp_path / "gone.xyz")})
    with pytest.raises(FileNotFoundError, match=r"test_files\['gone'\].*gone.xyz"):
        train_phonon(cfg, resume=False)
    assert not (tmp_path / "run").exists()
    with pytest.raises(FileNotFoundError, match="valid_file"):
        train_phonon(_config(data_dir, tmp_path / "run", valid_file=str(tmp_path / "none.xyz")), resume=False)


def test_select_model_last_epoch_keeps_the_final_ema_weights(dataset, tmp_path):
    from mlepi_ase.train.phonon import export_checkpoint_model

    data_dir, _ = dataset
    result = train_phonon(_config(data_dir, tmp_path / "run", max_epochs=3, select_model="last_epoch"),
                          resume=False)
    kept = load_phonon_model(result["model_file"])
    assert kept.metadata["training"]["epoch"] == 2
    exported = load_phonon_model(export_checkpoint_model(tmp_path / "run" / "checkpoint.pt", tmp_path / "e.pt"))
    torch.testing.assert_close(kept.state_dict(), exported.state_dict(), rtol=0, atol=0)
    with pytest.raises(ValueError, match="select_model"):
        load_train_config({"train_file": "x.xyz", "select_model": "best"})


def test_angular_basis_experiment_changes_only_the_angular_basis():
    """The experiment configs under data/hedgenet_phonon/experiments/angular_basis repeat the shipped stage 1
    on the same data with the same optimiser, changing only max_ell / max_L; the fine-tuning step starts
    from the exported l = 3 run."""
    root = SHIPPED_PHONON
    base = load_train_config(root / "train_config_stage1.yaml")
    exp = root / "experiments" / "angular_basis"
    same = ("lr", "batch_size", "scheduler", "scheduler_factor", "scheduler_patience", "force_weighting",
            "energy_weight", "forces_weight", "ema_decay", "seed", "dtype", "clip_grad_norm")
    for name, angular in {"ell3_L1": (3, 1), "ell3_L0": (3, 0)}.items():
        cfg = load_train_config(exp / f"train_config_{name}.yaml")
        changed = changed_keys(base["model"], cfg["model"])
        assert changed <= {"max_ell", "max_L"} and set(cfg["model"]) == set(base["model"])
        assert (cfg["model"]["max_ell"], cfg["model"]["max_L"]) == angular
        assert [cfg[k] for k in same] == [base[k] for k in same]
        for key in ("train_file", "valid_file"):
            assert Path(cfg[key]).resolve() == Path(base[key]).resolve()
    uniform = load_train_config(exp / "train_config_ell3_L1.yaml")
    fine = load_train_config(exp / "train_config_ell3_L1_relative.yaml")
    assert Path(fine["init_model"]).resolve().parent == Path(uniform["output_dir"]).resolve()
    assert fine["force_weighting"] == "relative" and fine["select_model"] == "last_epoch"


def test_cosine_time_needs_a_time_budget(dataset, tmp_path):
    data_dir, _ = dataset
    with pytest.raises(ValueError, match="max_time_minutes"):
        load_train_config(_config(data_dir, tmp_path / "run", scheduler="cosine_time"))


def test_cosine_time_run_anneals_and_stops_at_the_budget(dataset, tmp_path):
    data_dir, _ = dataset
    budget_min = 0.1
    result = train_phonon(_config(data_dir, tmp_path / "run", max_epochs=1000, scheduler="cosine_time",
                                  max_time_minutes=budget_min, lr=0.03, min_lr=1e-4), resume=False)
    hist = result["history"]
    assert result["stopped"] == "time_limit" and len(hist) >= 3
    lrs = [h["lr"] for h in hist]  # the rate of each epoch's last step
    assert lrs[0] < 0.03 and np.all(np.diff(lrs) < 0)
    # stopped at the first epoch end nearest the budget's end: no earlier epoch end was within half an epoch of it
    budget = 60 * budget_min
    assert all(h["epoch_s"] > 0 and h["elapsed_s"] + 0.5 * h["epoch_s"] < budget for h in hist[:-1])
    assert hist[-1]["elapsed_s"] + 0.5 * hist[-1]["epoch_s"] >= budget
    assert "time budget: " in (tmp_path / "run" / "train.log").read_text()


def test_a_resumed_cosine_time_run_keeps_the_nearest_boundary_rule(dataset, tmp_path):
    """A checkpoint whose run stopped within half an epoch of its budget's end trains nothing more when resumed;
    one with more than half an epoch left trains on (here its checkpoint is edited to say so: 10-s epochs)."""
    data_dir, _ = dataset
    cfg = _config(data_dir, tmp_path / "run", scheduler="cosine_time", max_time_minutes=1.0, lr=0.03, min_lr=1e-4)
    first = train_phonon({**cfg, "max_epochs": 1}, resume=False)
    assert first["stopped"] == "max_epochs" and len(first["history"]) == 1
    path = tmp_path / "run" / "checkpoint.pt"
    original = torch.load(path, weights_only=True)

    def resume_with(elapsed_s):
        ckpt = dict(original, elapsed_s=elapsed_s, history=[dict(original["history"][0], epoch_s=10.0,
                                                                 elapsed_s=elapsed_s)])
        torch.save(ckpt, path)
        return train_phonon({**cfg, "max_epochs": 2}, resume=True)

    done = resume_with(60.0 - 4.0)  # 4 s left, less than half of a 10-s epoch
    assert done["stopped"] == "time_limit" and len(done["history"]) == 1
    more = resume_with(60.0 - 6.0)  # 6 s left: one more epoch (max_epochs 2 bounds the test)
    assert more["stopped"] == "max_epochs" and len(more["history"]) == 2


def test_cosine_time_resumes_the_anneal_where_it_stopped(dataset, tmp_path):
    """The anneal runs over the whole run's time: a run stopped early (here by max_epochs) and resumed goes on
    lowering the rate from where it was, and a resumed run whose budget is spent trains nothing more."""
    data_dir, _ = dataset
    cfg = _config(data_dir, tmp_path / "run", scheduler="cosine_time", max_time_minutes=0.1, lr=0.03, min_lr=1e-4)
    first = train_phonon({**cfg, "max_epochs": 2}, resume=False)
    assert first["stopped"] == "max_epochs" and first["history"][-1]["elapsed_s"] < 6.0  # budget left
    resumed = train_phonon({**cfg, "max_epochs": 1000}, resume=True)
    hist = resumed["history"]
    assert resumed["stopped"] == "time_limit" and len(hist) > 3 and hist[:2] == first["history"]
    assert np.all(np.diff([h["lr"] for h in hist]) < 0) and np.all(np.diff([h["elapsed_s"] for h in hist]) > 0)
    again = train_phonon({**cfg, "max_epochs": 1000}, resume=True)
    assert again["stopped"] == "time_limit" and again["history"] == hist


def test_the_angular_spline_probe_basis_is_a_c2_spline_with_exact_forces(load_script, rng):
    """experiments/angular_spline_probe: the cubic B-splines sum to one on [−1, 1], their third derivative jumps at
    the knot cos θ = −1/2 (graphene's angle; the non-analyticity the probe looks for) while value, slope and
    curvature are continuous, and the basis forces are −dE/dx (central differences, float64)."""
    import torch

    module = load_script(SHIPPED_PHONON / "experiments" / "angular_spline_probe" / "probe.py")
    t = module.knots()
    assert len(t) - 4 == 15 and np.isclose(t, -0.5).any()
    x = torch.linspace(-1.0, 0.999, 301, dtype=torch.float64)
    np.testing.assert_allclose(module.bsplines(x, t).sum(1).numpy(), 1.0, atol=1e-12)

    def piece(lo, hi):  # the exact cubic of every B-spline on [lo, hi] (inside one knot interval)
        pts = torch.linspace(lo, hi, 7, dtype=torch.float64)
        return np.polyfit(pts.numpy(), module.bsplines(pts, t).numpy(), 3)  # (4, 15), highest power first

    left, right = piece(-0.65, -0.51), piece(-0.49, -0.35)
    at_knot = [np.polyval(np.polyder(np.poly1d(left[:, k]) - np.poly1d(right[:, k]), m), -0.5)
               for m in range(3) for k in range(15)]
    np.testing.assert_allclose(at_knot, 0.0, atol=1e-8)  # value, slope and curvature continuous
    jump = 6 * (left[0] - right[0])  # third derivatives
    assert np.abs(jump).max() > 100.0

    atoms = bilayer_graphene(size=(2, 2))
    atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape)
    forces = module.basis_forces(atoms, 2.0, 2)
    assert forces.shape == (3 * len(atoms), 30) and np.abs(forces).max() > 0.1
    step = 1e-5
    for atom, axis in [(0, 0), (3, 2), (5, 1)]:
        plus, minus = atoms.positions.copy(), atoms.positions.copy()
        plus[atom, axis] += step
        minus[atom, axis] -= step
        energy = [module.basis_energies(atoms, 2.0, 2, torch.tensor(p)).numpy() for p in (plus, minus)]
        np.testing.assert_allclose(forces[3 * atom + axis], -(energy[0] - energy[1]) / (2 * step), atol=1e-6)


def test_stage_17_is_the_cpu_stage17_plain_run_and_stages_18_to_22_and_a_batch32_partner_continue_it():
    """Stage 17 is experiments/cpu_stage17's plain run promoted (only the output folder differs); stages 18 to 22
    continue it with the same recipe and other seeds (stage 20, with the fused edge tensor product, had four
    epochs in the budget, stages 21 and 22, with freed memory kept too, five); experiments/cpu_batch32 differs from
    stage 18 only in batch (32), lr (6e-4) and output.  Each history ends with the lr annealed to its floor."""
    root = SHIPPED_PHONON
    stage = {k: load_train_config(root / f"train_config_stage{k}.yaml") for k in range(17, 23)}
    for k, n_epochs in ((18, 3), (19, 3), (20, 4), (21, 5), (22, 5)):
        assert changed_keys(stage[k], stage[k - 1]) == {"output_dir", "init_model", "seed"}
        assert starts_from(stage[k], stage[k - 1])
        annealed_history(root / f"training_history_stage{k}.json", stage[k], n_epochs)
    plain = load_train_config(root / "experiments" / "cpu_stage17" / "train_config_plain.yaml")
    partner = load_train_config(root / "experiments" / "cpu_batch32" / "train_config_bs32.yaml")
    assert changed_keys(stage[17], plain) == {"output_dir"}
    assert changed_keys(partner, stage[18]) == {"output_dir", "batch_size", "lr"}
    assert (partner["batch_size"], partner["lr"]) == (32, 6e-4)
    annealed_history(root / "experiments" / "cpu_batch32" / "training_history_bs32.json", partner, 3)


def test_stage_23_is_stage_15s_gpu_recipe_from_stage_22_and_its_batch128_partner_differs_only_in_batch():
    """Stage 23 is stage 22's files and loss from the stage-22 weights on a GPU with stage 15's recipe (batch 64, lr
    6e-4, four threads) over a 6.5-minute budget and another seed; experiments/gpu_stage23 holds the copy it ran from
    (only the output folder differs) and a partner that differs only in batch (128).  Each history ends with the lr
    annealed to its floor, after the number of epochs the README gives."""
    root = SHIPPED_PHONON
    folder = root / "experiments" / "gpu_stage23"
    fifteen, twentytwo, twentythree = (load_train_config(root / f"train_config_stage{k}.yaml") for k in (15, 22, 23))
    ran, partner = (load_train_config(folder / f"train_config_{n}.yaml") for n in ("bs64", "bs128"))
    assert changed_keys(twentythree, twentytwo) == {"output_dir", "init_model", "seed", "device", "num_threads",
                                                    "batch_size", "lr", "max_time_minutes"}
    assert starts_from(twentythree, twentytwo)
    assert all(twentythree[k] == fifteen[k] for k in ("device", "num_threads", "batch_size", "lr"))
    assert (twentythree["max_time_minutes"], twentythree["seed"]) == (6.5, 12)
    assert changed_keys(ran, twentythree) == {"output_dir"}
    assert changed_keys(partner, ran) == {"output_dir", "batch_size"} and partner["batch_size"] == 128
    annealed_history(root / "training_history_stage23.json", twentythree, 25)
    annealed_history(folder / "training_history_bs128.json", partner, 41)


@pytest.mark.parametrize("stage, seed", [(24, 13), (26, 15)])
def test_cpu_stages_after_a_gpu_stage_are_stage_22s_recipe(stage, seed):
    """Stages 24 and 26 go back to the CPU after a GPU stage: stage 22's config with only its start (the previous
    stage's output), seed and output changed; each history ends with the lr annealed to its floor after six epochs."""
    root = SHIPPED_PHONON
    twentytwo, previous, cur = (load_train_config(root / f"train_config_stage{k}.yaml") for k in (22, stage - 1, stage))
    assert changed_keys(cur, twentytwo) == {"output_dir", "init_model", "seed"}
    assert cur["seed"] == seed
    assert starts_from(cur, previous)
    annealed_history(root / f"training_history_stage{stage}.json", cur, 6)


def check_probes(folder: Path, prefix: str, start: dict, seed: int, minutes: float, tag: str, key: str, value: float,
                 n_epochs: int) -> None:
    """Two short probes from ``start``'s output in ``folder`` (``{prefix}control.yaml`` and ``{prefix}{tag}.yaml``):
    the control changes only its start, seed and budget, the other only ``key`` (to ``value``) beside that; both
    histories end annealed after ``n_epochs`` epochs."""
    probe, other = (load_train_config(folder / f"{prefix}{v}.yaml") for v in ("control", tag))
    assert changed_keys(probe, start) == {"output_dir", "init_model", "seed", "max_time_minutes"}
    assert starts_from(probe, start) and (probe["seed"], probe["max_time_minutes"]) == (seed, minutes)
    assert changed_keys(other, probe) == {"output_dir", key} and other[key] == value
    for v, cfg in (("control", probe), (tag, other)):
        annealed_history(folder / f"training_history_{prefix}{v}.json", cfg, n_epochs)


def check_floor_probes(folder: Path, prefix: str, start: dict, seed: int, minutes: float, floor: float,
                       n_epochs: int) -> None:
    """``check_probes`` for a probe that changes the force-weight floor (files tagged ``floorNN``, NN = 10 floor)."""
    check_probes(folder, prefix, start, seed, minutes, f"floor{round(floor * 10):02d}", "force_weight_floor", floor,
                 n_epochs)


def check_stage_and_sibling(stage: int, cur: dict, tag: str, sibling: dict, n_epochs: int = 6) -> None:
    """Stage ``stage`` (``cur``) and its sibling in experiments/huber_loss (``sibling``, files tagged ``tag``): both
    histories end annealed after ``n_epochs`` epochs, and ``heldout_draws_stage{stage}.json`` there compares the
    two."""
    folder = SHIPPED_PHONON / "experiments" / "huber_loss"
    annealed_history(SHIPPED_PHONON / f"training_history_stage{stage}.json", cur, n_epochs)
    annealed_history(folder / f"training_history_stage{stage}_{tag}.json", sibling, n_epochs)
    heldout = json.loads((folder / f"heldout_draws_stage{stage}.json").read_text())
    assert set(heldout["models"]) == {f"stage{stage}", f"stage{stage}_{tag}"}


def test_stage_27_is_stage_22s_recipe_with_huber_loss_beside_a_squared_loss_control():
    """Stage 27 is stage 22's CPU recipe from stage 26's output with another seed and Huber's force loss; the
    control of experiments/huber_loss differs from it only in the loss (and its output folder).  Both histories end
    with the lr annealed to its floor after six epochs, and the held-out file compares the two.  The two short
    probes from stage 27 change only their start, seed and budget (and one the force-weight floor), two epochs each."""
    root = SHIPPED_PHONON
    twentytwo, twentysix, cur = (load_train_config(root / f"train_config_stage{k}.yaml") for k in (22, 26, 27))
    folder = root / "experiments" / "huber_loss"
    control = load_train_config(folder / "train_config_mse.yaml")
    assert changed_keys(cur, twentytwo) == {"output_dir", "init_model", "seed", "force_loss", "force_loss_delta"}
    assert (cur["seed"], cur["force_loss"], cur["force_loss_delta"]) == (16, "huber", 0.005)
    assert starts_from(cur, twentysix)
    assert changed_keys(control, cur) == {"output_dir", "force_loss", "force_loss_delta"}
    assert control["force_loss"] == "mse"
    annealed_history(root / "training_history_stage27.json", cur, 6)
    annealed_history(folder / "training_history_mse.json", control, 6)
    heldout = json.loads((folder / "heldout_draws.json").read_text())
    assert set(heldout["models"]) == {"stage27_huber", "stage27_mse_control"}
    check_floor_probes(folder, "probe_", cur, seed=17, minutes=22.0, floor=0.3, n_epochs=2)


def test_stage_28_is_stage_27s_recipe_with_the_force_weight_floor_03_beside_a_smaller_delta():
    """Stage 28 is stage 27's recipe from stage 27's output with seed 17 and the floor of the relative force weights
    0.3 eV/Å (the recipe of the floor-0.3 probe, at full length); its sibling in experiments/huber_loss halves
    Huber's delta and nothing else.  Both histories end with the lr annealed to its floor after six epochs, and
    the held-out file compares the two.  The two 30-minute probes from stage 28 change only their start, seed and
    budget (and one the floor, to 0.5 eV/Å), three epochs each."""
    root = SHIPPED_PHONON
    twentyseven, cur = (load_train_config(root / f"train_config_stage{k}.yaml") for k in (27, 28))
    folder = root / "experiments" / "huber_loss"
    sibling = load_train_config(folder / "train_config_stage28_delta0025.yaml")
    probe = load_train_config(folder / "probe_floor03.yaml")
    assert changed_keys(cur, twentyseven) == {"output_dir", "init_model", "seed", "force_weight_floor"}
    assert (cur["seed"], cur["force_weight_floor"], cur["force_loss"], cur["force_loss_delta"]) == (
        17, 0.3, "huber", 0.005)
    assert starts_from(cur, twentyseven)
    assert changed_keys(cur, probe) == {"output_dir", "max_time_minutes"} and cur["max_time_minutes"] == 62.0
    assert changed_keys(sibling, cur) == {"output_dir", "force_loss_delta"} and sibling["force_loss_delta"] == 0.0025
    check_stage_and_sibling(28, cur, "delta0025", sibling)
    check_floor_probes(folder, "probe29_", cur, seed=18, minutes=30.0, floor=0.5, n_epochs=3)


def test_stage_29_is_stage_28s_recipe_beside_the_force_weight_floor_05():
    """Stage 29 is stage 28's config from stage 28's output with another seed (the 30-minute control probe at full
    length); its sibling in experiments/huber_loss raises the force-weight floor to 0.5 eV/Å and changes nothing
    else (the floor probe at full length).  Both histories end with the lr annealed to its floor after six epochs,
    and the held-out file compares the two.  The two 30-minute probes from stage 29 change only their start, seed
    and budget (and one the floor, to 0.4 eV/Å), three epochs each."""
    root = SHIPPED_PHONON
    twentyeight, cur = (load_train_config(root / f"train_config_stage{k}.yaml") for k in (28, 29))
    folder = root / "experiments" / "huber_loss"
    sibling = load_train_config(folder / "train_config_stage29_floor05.yaml")
    probe = load_train_config(folder / "probe29_control.yaml")
    assert changed_keys(cur, twentyeight) == {"output_dir", "init_model", "seed"} and cur["seed"] == 19
    assert starts_from(cur, twentyeight)
    assert changed_keys(cur, probe) == {"output_dir", "seed", "max_time_minutes"} and cur["max_time_minutes"] == 62.0
    assert changed_keys(sibling, cur) == {"output_dir", "force_weight_floor"} and sibling["force_weight_floor"] == 0.5
    check_stage_and_sibling(29, cur, "floor05", sibling)
    check_floor_probes(folder, "probe30_", cur, seed=20, minutes=30.0, floor=0.4, n_epochs=3)


@pytest.mark.parametrize("stage, seed, key, value, previous, tag, n_epochs", [
    (30, 21, "ema_decay", 0.999, 0.99, "ema099", 6),  # the EMA decay 0.99 of stages 1-29 -> 0.999
    (31, 22, "lr", 6e-4, 3e-4, "lr3e4", 6),  # the peak lr 3e-4 of every CPU stage since stage 13 -> 6e-4
    (32, 24, "lr", 1e-3, 6e-4, "lr6e4", 3),  # -> 1e-3; a slower machine: three epochs in the 62-minute anneal
    (33, 25, "lr", 2e-3, 1e-3, "lr1e3", 3),  # -> 2e-3; the same machine
])
def test_stages_30_to_33_change_one_knob_beside_the_unchanged_recipe(stage, seed, key, value, previous, tag,
                                                                      n_epochs):
    """Stages 30-33 are the previous stage's config from its output with another seed and one knob changed
    (``key``: ``previous`` -> ``value``); the sibling in experiments/huber_loss keeps ``previous`` and changes
    nothing else (the previous stage's recipe unchanged).  Both histories end with the lr annealed to its floor
    after ``n_epochs`` epochs, and the held-out file compares the two."""
    root = SHIPPED_PHONON
    prev, cur = (load_train_config(root / f"train_config_stage{k}.yaml") for k in (stage - 1, stage))
    sibling = load_train_config(root / "experiments" / "huber_loss" / f"train_config_stage{stage}_{tag}.yaml")
    assert changed_keys(cur, prev) == {"output_dir", "init_model", "seed", key}
    assert (cur["seed"], cur[key], prev[key]) == (seed, value, previous)
    assert starts_from(cur, prev)
    assert changed_keys(sibling, cur) == {"output_dir", key} and sibling[key] == previous
    check_stage_and_sibling(stage, cur, tag, sibling, n_epochs)


@pytest.mark.parametrize("stage, seed, tag, sibling_lr", [(34, 26, "lr3e3", 3e-3), (35, 27, "lr25e4", 2.5e-3)])
def test_stages_34_and_35_repeat_the_previous_recipe_beside_another_peak_lr(stage, seed, tag, sibling_lr):
    """Stages 34 and 35 are the previous stage's config from its output with another seed and nothing else changed;
    each sibling in experiments/huber_loss changes only the peak lr (2e-3 -> 3e-3, then 2.5e-3).  All ran with the
    nearest-boundary stop: every epoch but the last ended more than half an epoch before the 62-minute budget's
    end, the last within half an epoch of it, after three epochs with the lr annealed to its floor."""
    root = SHIPPED_PHONON
    prev, cur = (load_train_config(root / f"train_config_stage{k}.yaml") for k in (stage - 1, stage))
    sibling = load_train_config(root / "experiments" / "huber_loss" / f"train_config_stage{stage}_{tag}.yaml")
    assert changed_keys(cur, prev) == {"output_dir", "init_model", "seed"} and cur["seed"] == seed
    assert starts_from(cur, prev)
    assert changed_keys(sibling, cur) == {"output_dir", "lr"} and (cur["lr"], sibling["lr"]) == (2e-3, sibling_lr)
    check_stage_and_sibling(stage, cur, tag, sibling, 3)
    nearest_boundary_history(root / f"training_history_stage{stage}.json", cur)
    nearest_boundary_history(root / "experiments" / "huber_loss" / f"training_history_stage{stage}_{tag}.json", sibling)


def test_stage_36_adds_a_fourth_thermal_set_beside_the_unchanged_recipe():
    """Stage 36 is stage 35's config from its output with another seed and one more training file, a fresh draw
    of the second extra thermal set's settings (the set experiments/cpu_fresh_thermal made; its command is the
    one there); the sibling in experiments/huber_loss is stage 35's recipe unchanged.  Both ran with the
    nearest-boundary stop (the stage after two longer epochs, the sibling after three); the held-out file
    compares the two."""
    root = SHIPPED_PHONON
    prev, cur = (load_train_config(root / f"train_config_stage{k}.yaml") for k in (35, 36))
    sibling = load_train_config(root / "experiments" / "huber_loss" / "train_config_stage36_repeat.yaml")
    assert changed_keys(cur, prev) == {"output_dir", "init_model", "seed", "train_file"} and cur["seed"] == 28
    assert starts_from(cur, prev)
    added = [f for f in cur["train_file"] if f not in prev["train_file"]]
    assert cur["train_file"][:-1] == prev["train_file"] and added == [cur["train_file"][-1]]
    assert Path(added[0]["file"]).parent.name == "phonon_dataset_thermal_extra3"
    fresh = load_train_config(root / "experiments" / "cpu_fresh_thermal" / "train_config.yaml")
    assert added[0] in fresh["train_file"]
    command = "--seed 9 --settings data/hedgenet_phonon/dataset_thermal_extra2.yaml"
    assert f"out/phonon_dataset_thermal_extra3 {command}" in (root / "README.md").read_text()
    assert changed_keys(sibling, cur) == {"output_dir", "train_file"} and sibling["train_file"] == prev["train_file"]
    nearest_boundary_history(root / "training_history_stage36.json", cur, 2)
    nearest_boundary_history(root / "experiments" / "huber_loss" / "training_history_stage36_repeat.json", sibling, 3)
    heldout = json.loads((root / "experiments" / "huber_loss" / "heldout_draws_stage36.json").read_text())
    assert set(heldout["models"]) == {"stage36", "stage36_repeat"}


def test_the_rattle_share_experiment_changes_only_the_small_rattles_repeat():
    """experiments/rattle_share: stage 36's config from stage 36's output with another seed and the 0.003 / 0.01 Å
    rattles repeated 20 times instead of 13, which brings their share of an epoch back to stage 35's (about 32 %);
    its history obeys the nearest-boundary stop."""
    root = SHIPPED_PHONON
    cur = load_train_config(root / "train_config_stage36.yaml")
    exp = load_train_config(root / "experiments" / "rattle_share" / "train_config.yaml")
    assert changed_keys(exp, cur) == {"output_dir", "init_model", "seed", "train_file"} and exp["seed"] == 29
    assert starts_from(exp, cur)
    differ = [(a, b) for a, b in zip(exp["train_file"], cur["train_file"]) if a != b]
    assert len(exp["train_file"]) == len(cur["train_file"]) and len(differ) == 1
    (new, old), = differ
    assert new == {**old, "repeat": 20} and old["repeat"] == 13
    assert old["config_types"] == ["rattle_0.003", "rattle_0.01"]
    nearest_boundary_history(root / "experiments" / "rattle_share" / "training_history.json", exp, 2)


def test_the_untouched_draw_error_is_the_mean_of_configuration_maes_with_their_standard_error(load_script):
    """experiments/untouched_draw: the pooled MAE of equal-size configurations is the mean of their MAEs, its
    standard error s/sqrt(N) (s with N - 1 degrees of freedom), blocks of 16 are consecutive means; the shipped
    results file is what that function gives from its own per-configuration errors, for the shipped model among
    others, on the 64-configuration draw of its dataset file."""
    folder = SHIPPED_PHONON / "experiments" / "untouched_draw"
    module = load_script(folder / "evaluate.py")
    m = np.array([9.0, 11.0] * 8 + [10.0, 12.0] * 8)  # 32 configurations
    res = module.mae_with_standard_error(m)
    assert res["forces_mae_meV_per_A"] == pytest.approx(10.5) and res["n_configs"] == 32
    assert res["standard_error_meV_per_A"] == pytest.approx(np.sqrt(((m - 10.5) ** 2).sum() / 31) / np.sqrt(32))
    assert res["block_mae_meV_per_A"] == pytest.approx([10.0, 11.0])
    with pytest.raises(ValueError):
        module.mae_with_standard_error(np.array([10.0]))
    settings = yaml.safe_load((folder / "dataset.yaml").read_text())
    results = json.loads((folder / "results.json").read_text())
    assert results["n_atoms_per_config"] == 144 and settings["n_test_thermal"] == 64
    assert results["models"]["stage36"]["file"] == "data/hedgenet_phonon/hedgenet_phonon.pt"
    assert results["models"]["stage36"]["sha256"] == file_sha256(SHIPPED_PHONON / "hedgenet_phonon.pt")
    for entry in results["models"].values():
        again = module.mae_with_standard_error(np.array(entry["per_config_mae_meV_per_A"]))
        assert again["n_configs"] == entry["n_configs"] == 64
        for key in ("forces_mae_meV_per_A", "standard_error_meV_per_A", "block_mae_meV_per_A"):
            assert again[key] == pytest.approx(entry[key])


def test_the_untouched_draw_paired_differences(load_script):
    """experiments/untouched_draw: the paired difference of two models is the mean and standard error of their
    per-configuration differences (the common spread cancels), and the results file's pairs are what it gives
    from the stored per-configuration errors; each pair the README quotes is there, the newer stage lower."""
    folder = SHIPPED_PHONON / "experiments" / "untouched_draw"
    module = load_script(folder / "evaluate.py")
    base = np.array([8.0, 12.0, 9.0, 11.0])
    res = module.paired_difference(base - np.array([0.1, 0.3, 0.1, -0.1]), base)
    assert res["mean_meV_per_A"] == pytest.approx(-0.1) and res["n_a_lower"] == 3 and res["n_configs"] == 4
    assert res["standard_error_meV_per_A"] == pytest.approx(np.std([0.1, 0.3, 0.1, -0.1], ddof=1) / 2.0)
    with pytest.raises(ValueError):
        module.paired_difference(base, base[:3])
    results = json.loads((folder / "results.json").read_text())
    models, pairs = results["models"], results["paired"]
    assert {"stage36-stage35", "stage35-stage34", "stage34-stage33", "stage33-stage32"} <= set(pairs)
    for key, entry in pairs.items():
        a, b = key.split("-")
        again = module.paired_difference(models[a]["per_config_mae_meV_per_A"], models[b]["per_config_mae_meV_per_A"])
        assert again == pytest.approx(entry)
    for key in ("stage36-stage35", "stage35-stage34", "stage34-stage33", "stage33-stage32"):
        assert pairs[key]["mean_meV_per_A"] < -5 * pairs[key]["standard_error_meV_per_A"]


def test_the_untouched_draw_script_reuses_only_entries_of_an_unchanged_model_file(dataset, tmp_path, load_script,
                                                                                 monkeypatch):
    """experiments/untouched_draw/evaluate.py --reuse keeps an existing entry only when the model's name and file
    SHA-256 both match (a kept entry is not recomputed: a marker planted in it survives); a changed file is
    evaluated again, and without --reuse everything is."""
    module = load_script(SHIPPED_PHONON / "experiments" / "untouched_draw" / "evaluate.py")
    out, _ = dataset
    data, output = str(out / "test_3x3.xyz"), tmp_path / "results.json"
    files = {}
    for name, seed in (("a", 0), ("b", 1)):
        torch.manual_seed(seed)
        files[name] = save_phonon_model(HedgeNetPhonon(dict(TINY_MODEL, atomic_energies=[-7.0]), dtype=torch.float64),
                                        tmp_path / f"{name}.pt")

    def run(*extra):
        argv = ["evaluate.py", "--data", data, "--output", str(output), "--pair", "a-b", *extra]
        for name, path in files.items():
            argv += ["--model", f"{name}={path}"]
        monkeypatch.setattr("sys.argv", argv)
        module.main()
        return json.loads(output.read_text())

    first = run()
    assert first["models"]["a"]["n_configs"] == 2
    planted = dict(first, models={k: dict(v, forces_mae_meV_per_A=-1.0) for k, v in first["models"].items()})
    output.write_text(json.dumps(planted))
    torch.manual_seed(2)
    save_phonon_model(HedgeNetPhonon(dict(TINY_MODEL, atomic_energies=[-7.0]), dtype=torch.float64), files["b"])
    second = run("--reuse")
    assert second["models"]["a"] == planted["models"]["a"]  # same file: kept as stored
    assert second["models"]["b"]["sha256"] != first["models"]["b"]["sha256"]
    assert second["models"]["b"]["forces_mae_meV_per_A"] > 0  # changed file: evaluated again
    third = run()
    assert third["models"]["a"] == first["models"]["a"]  # no --reuse: recomputed, the marker is gone
    assert third["paired"]["a-b"] == pytest.approx(module.paired_difference(
        third["models"]["a"]["per_config_mae_meV_per_A"], third["models"]["b"]["per_config_mae_meV_per_A"]))


def test_probes_from_stage_31_change_only_their_start_seed_budget_and_one_the_peak_lr():
    """The two 22-minute probes from stage 31 change only their start, seed and budget (and one the peak lr, to
    1e-3), two epochs each."""
    cur = load_train_config(SHIPPED_PHONON / "train_config_stage31.yaml")
    check_probes(SHIPPED_PHONON / "experiments" / "huber_loss", "probe32_", cur, seed=23, minutes=22.0, tag="lr1e3",
                 key="lr", value=1e-3, n_epochs=2)


def test_stage_25_is_stage_23s_gpu_recipe_for_two_minutes_from_stage_24():
    """Stage 25 goes back to the GPU for two minutes: stage 23's config with its start (stage 24's output), seed,
    lr (3e-4) and budget (2 minutes) changed and no test files; experiments/gpu_stage25 holds the copy it ran from
    (only the output folder differs).  Its history ends with the lr annealed to its floor after nine epochs."""
    root = SHIPPED_PHONON
    twentythree, twentyfour, twentyfive = (load_train_config(root / f"train_config_stage{k}.yaml")
                                           for k in (23, 24, 25))
    ran = load_train_config(root / "experiments" / "gpu_stage25" / "train_config.yaml")
    assert changed_keys(twentyfive, twentythree) == {"output_dir", "init_model", "seed", "lr", "max_time_minutes",
                                                     "test_files"}
    assert starts_from(twentyfive, twentyfour)
    assert (twentyfive["lr"], twentyfive["max_time_minutes"], twentyfive["seed"], twentyfive["test_files"]) == (
        3e-4, 2.0, 14, {})
    assert changed_keys(ran, twentyfive) == {"output_dir"}
    annealed_history(root / "training_history_stage25.json", twentyfive, 9)
