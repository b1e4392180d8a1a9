"""The ``mlepi`` command line: every subcommand registers, errors are reported, datasets are made."""

import pytest
import yaml

from mlepi_ase.cli import COMMANDS, build_parser, main


def test_every_subcommand_has_help(capsys):
    parser = build_parser()
    names = set(parser._subparsers._group_actions[0].choices)
    assert {"demo", "run", "phonons", "sample", "make-dataset", "train-phonon", "train-electron"} <= names
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
