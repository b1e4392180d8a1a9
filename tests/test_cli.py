"""The ``mlepi`` command line: every subcommand registers, errors are reported, datasets are made."""

import pytest
import yaml

from mlepi_ase.cli import COMMANDS, build_parser, main


def test_every_subcommand_has_help(capsys):
    parser = build_parser()
    names = set(parser._subparsers._group_actions[0].choices)
    assert {"demo", "run", "compare", "phonons", "sample", "make-dataset", "train-phonon", "train-electron"} <= names
    assert len(names) == len(COMMANDS)
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0


def test_run_rejects_unknown_setting(capsys):
    assert main(["run", "--set", "temprature=3"]) == 2
    assert "unknown pipeline setting" in capsys.readouterr().err


def test_make_dataset_electron_tiny(tmp_path):
    settings = {"thermal_method": "rattle", "temperatures": [300.0], "n_thermal": [2], "n_rattle": [1, 1],
                "n_stacking": 2, "n_test": 1}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(settings))
    assert main(["make-dataset", "electron", "-o", str(tmp_path / "ds"), "--settings", str(tmp_path / "s.yaml"),
                 "--no-progress"]) == 0
    from mlepi_ase.models.electron_data import read_electron_dataset

    data = read_electron_dataset(tmp_path / "ds" / "electron_dataset.h5")
    assert len(data) > 0


TINY_PHONON = dict(num_channels=4, max_L=1, max_ell=1, radial_mlp=[8], num_interactions=1, correlation=2,
                   num_bessel=4, readout_mlp=4, cutoffs={"intra": 3.0, "inter": 4.5}, atomic_energies=[-7.0])


@pytest.fixture(scope="module")
def tiny_phonon_model(tmp_path_factory):
    import torch

    from mlepi_ase.models import HedgeNetPhonon, save_phonon_model

    torch.manual_seed(0)
    return save_phonon_model(HedgeNetPhonon(TINY_PHONON, dtype=torch.float32),
                             tmp_path_factory.mktemp("model") / "tiny.pt")


@pytest.mark.filterwarnings("ignore:the undisplaced supercell has residual forces")
def test_phonons_with_a_model_file(tmp_path, tiny_phonon_model, capsys):
    import json

    import numpy as np
    import phonopy

    out = tmp_path / "ph"
    assert main(["phonons", "ab-bilayer", "--calculator", str(tiny_phonon_model), "--supercell", "2", "2", "1",
                 "--no-relax", "--npoints", "5", "--dos-mesh", "4", "4", "1", "--no-progress", "-o", str(out)]) == 0
    assert str(tiny_phonon_model) in capsys.readouterr().out
    for name in ("phonopy_params.yaml", "phonon_bands.png", "phonons_summary.json"):
        assert (out / name).is_file()
    fc = phonopy.load(out / "phonopy_params.yaml").force_constants
    assert np.isfinite(fc).all() and np.abs(fc).max() > 0
    np.testing.assert_allclose(fc.sum(axis=1), 0.0, atol=1e-8)  # acoustic sum rule after symmetrisation
    assert json.loads((out / "phonons_summary.json").read_text())["info"]["n_displacements"] > 0


def test_phonons_calculator_names_and_paths(tmp_path, tiny_phonon_model, capsys, monkeypatch):
    import torch

    from mlepi_ase import pipeline
    from mlepi_ase.calculators import HedgeNetPhononCalculator
    from mlepi_ase.cli.phonons import make_calculator

    calc = make_calculator(str(tiny_phonon_model))
    assert isinstance(calc, HedgeNetPhononCalculator)
    assert calc.model.dtype == torch.float64  # saved in float32, evaluated in float64
    monkeypatch.setattr(pipeline, "DEFAULT_PHONON_MODEL", tiny_phonon_model)
    assert make_calculator("hedgenet").model_path == str(tiny_phonon_model)
    monkeypatch.setattr(pipeline, "DEFAULT_PHONON_MODEL", tmp_path / "absent.pt")
    with pytest.raises(FileNotFoundError, match="absent.pt"):
        make_calculator("hedgenet")
    missing = tmp_path / "missing.pt"
    assert main(["phonons", "monolayer", "--calculator", str(missing), "-o", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "not found" in err and "missing.pt" in err
    assert main(["phonons", "monolayer", "--calculator", "lammps", "-o", str(tmp_path / "x")]) == 2
    assert "unknown calculator 'lammps'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
