"""The edge tensor product benchmark: both implementations timed, both allocators, forces compared."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import pytest
import torch

from mlepi_ase.models import HedgeNetPhonon, save_phonon_model

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_edge_tensor_product.py"


@pytest.fixture
def tiny_model_file(tmp_path):
    path = tmp_path / "tiny.pt"
    torch.manual_seed(0)
    model = HedgeNetPhonon(dict(num_channels=4, max_L=1, max_ell=2, radial_mlp=[8], correlation=2, num_bessel=4,
                                readout_mlp=4), dtype=torch.float32)
    save_phonon_model(model, path)
    return path


def test_both_allocators_and_implementations_are_timed(load_script, tiny_model_file, tmp_path, monkeypatch):
    for key in [k for k in os.environ if k.startswith("MALLOC_")]:
        monkeypatch.delenv(key)
    out = tmp_path / "bench.json"
    load_script(SCRIPT).main(["--model", str(tiny_model_file), "--repeats", "5", "--sizes", "1", "2",
                              "--batch", "2", "--output", str(out)])
    result = json.loads(out.read_text())
    assert set(result["runs"]) == {"default", "retain"}
    for run in result["runs"].values():
        assert len(run["training_step"]["all_s"]["fused"]) == 5
        assert [row["n_atoms"] for row in run["energy_forces"]] == [4, 16]
        for row in run["energy_forces"]:
            assert row["max_force_difference_eV_per_A"] < 1e-5  # float32: the same forces
            assert row["speedup_fused"] == pytest.approx(row["median_s"]["e3nn"] / row["median_s"]["fused"])
    summary = result["summary"]["training_step"]
    assert set(summary["median_s"]) == {"e3nn+default", "fused+default", "e3nn+retain", "fused+retain"}
    assert summary["speedup_vs_e3nn+default"]["e3nn+default"] == pytest.approx(1.0)
    if Path("/proc/self/clear_refs").exists():
        memory = result["memory"]
        assert memory["n_atoms"] == 16 and set(memory["call_MiB"]) == {"e3nn", "fused"}
        assert all(row["peak_MiB"] >= row["rss_before_MiB"] > 0 for row in memory["probes"].values())


def test_fewer_than_five_repeats_are_refused(load_script, tiny_model_file):
    with pytest.raises(SystemExit):
        load_script(SCRIPT).main(["--model", str(tiny_model_file), "--repeats", "3"])


@pytest.mark.parametrize("e3nn_call, expected", [(0.0, None), (2.0, 1.5)])
def test_memory_ratio_is_left_out_when_a_call_did_not_grow_the_process(load_script, monkeypatch, tmp_path,
                                                                       e3nn_call, expected):
    """A tiny cell's call may be served from memory malloc already holds (0 MiB growth): no ratio, no crash."""
    module = load_script(SCRIPT)
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("memory_table measures only where /proc/self/clear_refs exists (Linux)")
    calls = {"e3nn": e3nn_call, "fused": 3.0}

    def fake_run(cmd, **kwargs):
        impl = cmd[cmd.index("--memory-probe") + 1]
        row = {"implementation": impl, "n_atoms": 16, "rss_before_MiB": 100.0,
               "peak_MiB": 100.0 + calls[impl], "call_MiB": calls[impl]}
        return type("Done", (), {"stdout": "loading\n" + json.dumps(row)})()

    monkeypatch.setattr(module.subprocess, "run", fake_run)
    args = argparse.Namespace(model=tmp_path / "m.pt", sizes=[1, 2], dtype="float32", threads=1, device="cpu")
    memory = module.memory_table(args)
    assert memory["call_MiB"] == calls
    assert memory["fused_over_e3nn"] == expected
