"""The HedgeNet-Electron dataset generator and its HDF5 format."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mlepi_ase.models.electron_data import (
    ElectronDatasetError,
    dataset_splits,
    make_electron_dataset,
    read_electron_dataset,
    thermal_rattles,
)
from mlepi_ase.reference.slater_koster import SlaterKosterSP3
from mlepi_ase.structures import bilayer_graphene

TINY = {"thermal_method": "rattle", "train_supercell": [2, 2], "test_supercell": [3, 3], "temperatures": [300.0],
        "n_thermal": [3], "rattle_amplitudes": [0.05], "n_rattle": [1], "n_stacking": 3, "n_test": 2,
        "valid_fraction": 0.2, "interlayer_range": [3.2, 3.6]}


def test_make_electron_dataset(tmp_path):
    summary = make_electron_dataset(tmp_path, TINY, rng=4, progress=False, log=None)
    path = tmp_path / summary["files"]["dataset"]
    assert json.loads((tmp_path / "dataset.json").read_text())["seed"] == 4
    splits = dataset_splits(path)
    assert splits == {"train": 6, "valid": 1, "test_3x3": 2}
    assert summary["counts"]["test_3x3"] == {"thermal_300K": 2}
    items = read_electron_dataset(path)
    ref = SlaterKosterSP3()
    kinds = set()
    for h, info in items:
        kinds.add(info["config_type"].split("_")[0])
        assert h.n_atoms == (36 if info["split"] == "test_3x3" else 16)
        again = ref.get_hamiltonian(h.to_atoms())  # labels are the reference's blocks
        assert np.array_equal(again.pairs, h.pairs) and np.abs(again.blocks - h.blocks).max() == 0.0
        if info["config_type"] == "stacking":
            assert 3.2 <= info["interlayer"] <= 3.6
            z = h.positions[:, 2]
            gap = z[h.layers == 1].mean() - z[h.layers == 0].mean()
            assert abs(gap - info["interlayer"]) < 0.1
    assert kinds == {"thermal", "rattle", "stacking"}
    # same seed, same data
    again = make_electron_dataset(tmp_path / "again", TINY, rng=4, progress=False, log=None)
    a = read_electron_dataset(tmp_path / "again" / again["files"]["dataset"])
    assert all(np.array_equal(x.positions, y.positions) for (x, _), (y, _) in zip(items, a))


def test_thermal_rattle_width_scales_with_temperature():
    atoms = bilayer_graphene("AB", size=(3, 3))
    for temp in (300.0, 600.0):
        configs = thermal_rattles(atoms, temp, 20, sigma_300K=0.07, rng=1)
        u = np.concatenate([c.positions - atoms.positions for c in configs])
        expect = 0.07**2 * temp / 300.0
        assert abs(u.var() / expect - 1.0) < 0.1
        assert configs[0].info["temperature"] == temp
        assert np.array_equal(configs[0].arrays["layer"], atoms.arrays["layer"])


def test_bad_settings_and_files(tmp_path):
    with pytest.raises(KeyError, match="unknown electron dataset setting"):
        make_electron_dataset(tmp_path, {"n_thermals": 3}, log=None)
    with pytest.raises(ValueError, match="thermal_method"):
        make_electron_dataset(tmp_path, {"thermal_method": "md"}, log=None)
    with pytest.raises(ElectronDatasetError, match="does not exist"):
        read_electron_dataset(tmp_path / "none.h5")
    (tmp_path / "junk.h5").write_bytes(b"junk")
    with pytest.raises(ElectronDatasetError):
        read_electron_dataset(tmp_path / "junk.h5")
    summary = make_electron_dataset(tmp_path / "d", TINY, rng=0, progress=False, log=None)
    with pytest.raises(ElectronDatasetError, match="no split"):
        read_electron_dataset(tmp_path / "d" / summary["files"]["dataset"], split="nonexistent")
