"""benchmarks/phonon_model_vf_error.py: a HedgeNet-Phonon model + sp3 run paired with a reference run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlepi_ase.pipeline import DEFAULT_PHONON_MODEL, compare_runs, run_pipeline

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "phonon_model_vf_error.py"

TINY_REFERENCE = {
    "structure": {"builder": "ab-bilayer"}, "force_calculator": "reference", "hamiltonian_calculator": "sp3",
    "fc_supercell": [3, 3, 1], "temperatures": [0.0, 300.0], "n_samples": 4, "fit_q": [0.02, 0.04],
    "fit_directions": [0.0, 60.0], "kpoints": ["K"], "spectral_window": [], "seed": 5, "draw_basis": "cartesian",
}


def test_model_run_config_keeps_the_reference_settings_and_refuses_unpaired_runs(load_script):
    script = load_script(SCRIPT)
    cfg = script.model_run_config(TINY_REFERENCE, "m.pt", "out/x")
    assert cfg["force_calculator"] == "hedgenet" and cfg["force_model"] == "m.pt" and cfg["output"] == "out/x"
    for key in ("seed", "temperatures", "n_samples", "draw_basis", "fc_supercell", "hamiltonian_calculator"):
        assert cfg[key] == TINY_REFERENCE[key]
    with pytest.raises(ValueError, match="cartesian"):
        script.model_run_config({**TINY_REFERENCE, "draw_basis": "modes"}, "m.pt", "out/x")
    with pytest.raises(ValueError, match="sp3"):
        script.model_run_config({**TINY_REFERENCE, "hamiltonian_calculator": "pz"}, "m.pt", "out/x")


def test_shipped_model_against_a_tiny_reference_run(load_script, tmp_path, monkeypatch, capsys):
    script = load_script(SCRIPT)
    ref_dir = tmp_path / "reference"
    reference = run_pipeline({**TINY_REFERENCE, "output": str(ref_dir)}, verbose=False)
    # a run compared with itself: zero difference, zero error, full correlation
    same = compare_runs(ref_dir, ref_dir)["temperatures"]
    assert all(d["mean"] == 0.0 and d["stderr"] == 0.0 and d["renormalization"]["difference"] == 0.0
               for d in same.values())
    out = tmp_path / "e.json"
    monkeypatch.setattr("sys.argv", ["x", str(ref_dir), "--model", f"shipped={DEFAULT_PHONON_MODEL}",
                                     "--model", f"again={DEFAULT_PHONON_MODEL}",
                                     "--output-root", str(tmp_path / "runs"), "--json", str(out)])
    script.main()
    report = json.loads(out.read_text())
    rows = report["models"]["shipped"]["temperatures"]
    assert set(rows) == {"0", "300"} and report["settings"]["draw_basis"] == "cartesian"
    model = json.loads((tmp_path / "runs" / "shipped" / "results.json").read_text())
    for t, d in rows.items():
        expected = model["temperatures"][t]["v_F"]["mean"] - reference["temperatures"][t]["v_F"]["mean"]
        assert d["mean"] == pytest.approx(expected, abs=1e-12)
        assert d["stderr"] < 0.25 * d["unpaired_stderr"]  # paired draws of two force models
    # the same model twice: the direct pairing gives zero, up to the float32 round-off of two separate
    # force-constant calculations (seen: ~1e-7 eV·Å, against paired errors of 1e-3 between models)
    again = report["against_first_model"]["models"]["again"]
    assert report["against_first_model"]["first"] == "shipped"
    assert all(abs(d["mean"]) < 1e-5 and d["stderr"] < 1e-5 for d in again.values()), again
    assert out.with_suffix(".png").stat().st_size > 1000
    assert "shipped T = 300 K" in capsys.readouterr().out
