"""Cost of HedgeNet-Phonon with the fused edge tensor product vs e3nn's, side by side in one process.

Two workloads, each timed for both implementations (``HeteroInteractionBlock.use_fused_tp``), interleaved
call by call so that machine noise hits both alike, medians over ``--repeats`` (≥ 5) after one warm-up:

* ``training_step``: one optimiser step of ``mlepi train-phonon`` on a batch of ``--batch`` rattled 4×4×1 AB
  bilayers (64 atoms each): energy + forces, the force loss differentiated through the forces (second
  derivatives), backward, Adam step — the work of a training epoch.
* ``energy_forces``: one energy + forces evaluation of the model alone (graph prebuilt) for supercells of
  64 … 2304 atoms — the work of phonopy's displaced supercells and of the sampler.

Both use the shipped model's configuration and weights (``--model``), float32 unless ``--dtype``; the
largest force difference between the two implementations is recorded as a check.

Each is measured twice on a CPU, in two fresh processes: with the C library's default ``malloc``
settings and with freed memory kept in the process (:func:`mlepi_ase.allocator.retain_freed_memory`,
what the ``mlepi`` command does); ``summary`` gives every combination's median relative to e3nn's
product with the default settings.  ``--allocator default|retain`` runs one process only.

On a CPU (with ``--allocator both``) the memory of one energy + forces call at the largest size is
measured for each implementation in a fresh process (``memory``: peak RSS during the call minus the RSS
before it, default malloc).

Writes ``benchmarks/results/edge_tensor_product_cpu.json`` (``_cuda`` with ``--device cuda``).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_edge_tensor_product.py [--repeats 7] [--sizes 4 12 24]
        [--batch 8] [--dtype float32] [--threads 1] [--device cpu] [--allocator both]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = ROOT / "data" / "hedgenet_phonon" / "hedgenet_phonon.pt"
IMPLEMENTATIONS = ("e3nn", "fused")


def set_implementation(model, name: str) -> None:
    """Switch every interaction block of ``model`` to e3nn's or the fused edge tensor product."""
    for block in model.interactions:
        block.use_fused_tp = name == "fused"


def rattled_supercell(n: int, rng: np.random.Generator, amplitude: float = 0.05):
    """AB bilayer n×n×1 supercell (4 n² atoms) with Gaussian displacements of ``amplitude`` Å."""
    from mlepi_ase.structures import bilayer_graphene

    atoms = bilayer_graphene("AB", size=(n, n))
    atoms.positions += rng.normal(scale=amplitude, size=atoms.positions.shape)
    return atoms


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_interleaved(calls: dict[str, Callable[[], None]], repeats: int, device: str) -> dict[str, list[float]]:
    """Wall times (s) of each call, ``repeats`` rounds, implementations alternating within a round."""
    for call in calls.values():  # warm-up
        call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            _sync(device)
            t0 = time.perf_counter()
            call()
            _sync(device)
            times[name].append(time.perf_counter() - t0)
    return times


def summarize(times: dict[str, list[float]]) -> dict[str, object]:
    med = {name: statistics.median(v) for name, v in times.items()}
    return {"median_s": med, "all_s": times, "speedup_fused": med["e3nn"] / med["fused"]}


def bench_training_step(model, batch_size: int, repeats: int, rng: np.random.Generator, device: str
                        ) -> dict[str, object]:
    from mlepi_ase.train.phonon import _loss

    structures = [rattled_supercell(4, rng) for _ in range(batch_size)]
    batch = model.batch(structures)
    targets = {"energy": torch.zeros(batch_size, dtype=model.dtype, device=model.device),
               "forces": torch.zeros((batch.n_atoms, 3), dtype=model.dtype, device=model.device),
               "n_atoms": torch.full((batch_size,), 64.0, dtype=model.dtype, device=model.device),
               "force_weight": torch.ones((batch.n_atoms, 1), dtype=model.dtype, device=model.device)}
    cfg = {"energy_weight": 10.0, "forces_weight": 100.0, "stress_weight": 0.0}
    optimizer = torch.optim.Adam(model.parameters(), lr=0.0, amsgrad=True)  # lr 0: the weights stay put

    def step(name: str) -> Callable[[], None]:
        def call() -> None:
            set_implementation(model, name)
            optimizer.zero_grad(set_to_none=True)
            out = model(batch, compute_forces=True, training=True)
            _loss(out, targets, cfg).backward()
            optimizer.step()
        return call

    model.train()
    result = summarize(time_interleaved({name: step(name) for name in IMPLEMENTATIONS}, repeats, device))
    model.eval()
    return {"batch_size": batch_size, "atoms_per_configuration": 64, **result}


def bench_energy_forces(model, n: int, repeats: int, rng: np.random.Generator, device: str) -> dict[str, object]:
    atoms = rattled_supercell(n, rng)
    batch = model.batch([atoms])
    forces = {}

    def call(name: str) -> Callable[[], None]:
        def run() -> None:
            set_implementation(model, name)
            forces[name] = model(batch, compute_forces=True)["forces"].detach()
        return run

    result = summarize(time_interleaved({name: call(name) for name in IMPLEMENTATIONS}, repeats, device))
    max_diff = float((forces["fused"] - forces["e3nn"]).abs().max())
    return {"supercell": [n, n, 1], "n_atoms": len(atoms), "n_edges": int(batch.edge_index.shape[1]),
            "max_force_difference_eV_per_A": max_diff, **result}


def memory_probe(args: argparse.Namespace, implementation: str, n: int) -> dict[str, object]:
    """Memory of one energy + forces call of an n×n×1 supercell with one implementation (this process).

    As ``bench_phonon_model.py`` measures it: after a warm-up call on the smallest cell the kernel's
    peak-RSS counter is reset; the peak during the call minus the RSS before it (MiB).
    """
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_phonon_model import _vm

    from mlepi_ase.models import load_phonon_model

    torch.set_num_threads(args.threads)
    model = load_phonon_model(args.model, device="cpu", dtype=args.dtype)
    set_implementation(model, implementation)
    rng = np.random.default_rng(0)
    model(model.batch([rattled_supercell(1, rng)]), compute_forces=True)
    batch = model.batch([rattled_supercell(n, rng)])
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    before = _vm("VmRSS")
    model(batch, compute_forces=True)["forces"].detach()
    peak = _vm("VmHWM")
    return {"implementation": implementation, "n_atoms": 4 * n * n, "rss_before_MiB": before, "peak_MiB": peak,
            "call_MiB": peak - before}


def memory_table(args: argparse.Namespace) -> dict[str, object] | None:
    """Call memory of both implementations at the largest size, each in a fresh process (default malloc)."""
    if args.device != "cpu" or not Path("/proc/self/clear_refs").exists():
        return None
    n = max(args.sizes)
    rows = {}
    for impl in IMPLEMENTATIONS:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--memory-probe", impl, str(n), "--model",
               str(args.model), "--dtype", args.dtype, "--threads", str(args.threads)]
        rows[impl] = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
    call = {impl: row["call_MiB"] for impl, row in rows.items()}
    print(f"  memory of one energy + forces call, {4 * n * n} atoms: "
          + ", ".join(f"{k} {v:.0f} MiB" for k, v in call.items()), flush=True)
    # A small cell's call can be served wholly from memory malloc already holds: no growth, no ratio.
    ratio = call["fused"] / call["e3nn"] if call["e3nn"] > 0 else None
    return {"method": "VmHWM after clear_refs, fresh process, default malloc", "n_atoms": 4 * n * n,
            "call_MiB": call, "fused_over_e3nn": ratio, "probes": rows}


def run_one(args: argparse.Namespace) -> dict[str, object]:
    """Both workloads, both implementations, in this process (allocator set as ``args.allocator``)."""
    from mlepi_ase.allocator import retain_freed_memory
    from mlepi_ase.models import load_phonon_model

    if args.allocator == "retain" and not retain_freed_memory():
        raise SystemExit("retain_freed_memory() was refused (not glibc?)")
    torch.set_num_threads(args.threads)
    model = load_phonon_model(args.model, device=args.device, dtype=args.dtype)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    print(f"[{args.allocator} allocator] training step, batch {args.batch} × 64 atoms ...", flush=True)
    training = bench_training_step(model, args.batch, args.repeats, rng, args.device)
    print(f"  e3nn {training['median_s']['e3nn']:.3f} s, fused {training['median_s']['fused']:.3f} s, "
          f"speedup {training['speedup_fused']:.2f}×", flush=True)
    calls = []
    for n in args.sizes:
        row = bench_energy_forces(model, n, args.repeats, rng, args.device)
        calls.append(row)
        print(f"  energy + forces, {row['n_atoms']} atoms: e3nn {row['median_s']['e3nn']:.4f} s, fused "
              f"{row['median_s']['fused']:.4f} s, speedup {row['speedup_fused']:.2f}× "
              f"(max |ΔF| {row['max_force_difference_eV_per_A']:.1e} eV/Å)", flush=True)
    return {"allocator": args.allocator, "training_step": training, "energy_forces": calls,
            "wall_s": time.perf_counter() - t0}


def combine(runs: dict[str, dict]) -> dict[str, object]:
    """Medians of every (allocator, implementation) relative to e3nn with the default allocator."""
    def rel(rows: dict[str, dict]) -> dict[str, object]:
        base = rows["default"]["median_s"]["e3nn"]
        med = {f"{impl}+{alloc}": rows[alloc]["median_s"][impl] for alloc in rows for impl in IMPLEMENTATIONS}
        return {"median_s": med, "speedup_vs_e3nn+default": {k: base / v for k, v in med.items()}}

    summary = {"training_step": rel({a: r["training_step"] for a, r in runs.items()})}
    for k, row in enumerate(runs["default"]["energy_forces"]):
        summary[f"energy_forces_{row['n_atoms']}_atoms"] = rel({a: r["energy_forces"][k] for a, r in runs.items()})
    return summary


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--sizes", type=int, nargs="+", default=[4, 12, 24],
                        help="n of the n×n×1 supercells for energy + forces (4 n² atoms)")
    parser.add_argument("--batch", type=int, default=8, help="configurations per training step")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--allocator", default="both", choices=["both", "default", "retain"],
                        help="CPU malloc settings: both (two fresh processes), default or retain (this process)")
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--memory-probe", nargs=2, metavar=("IMPLEMENTATION", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_probe:
        print(json.dumps(memory_probe(args, args.memory_probe[0], int(args.memory_probe[1]))))
        return {}
    if args.repeats < 5:
        parser.error("--repeats must be at least 5 (medians of ≥ 5 calls)")
    if args.device.startswith("cuda") and args.allocator == "both":
        args.allocator = "default"  # the GPU's memory is PyTorch's own caching allocator
    if any(k.startswith("MALLOC_") for k in os.environ):
        parser.error("unset the MALLOC_* environment variables: they change the default allocator settings")

    if args.allocator == "both":
        runs = {}
        for alloc in ("default", "retain"):
            with tempfile.TemporaryDirectory() as tmp:
                part = Path(tmp) / "run.json"
                cmd = [sys.executable, str(Path(__file__).resolve()), "--allocator", alloc, "--output", str(part),
                       "--model", str(args.model), "--repeats", str(args.repeats), "--batch", str(args.batch),
                       "--dtype", args.dtype, "--threads", str(args.threads), "--device", args.device,
                       "--sizes", *map(str, args.sizes)]
                subprocess.run(cmd, check=True)
                runs[alloc] = json.loads(part.read_text())["runs"][alloc]
    else:
        runs = {args.allocator: run_one(args)}
    result = {
        "model": str(args.model.resolve().relative_to(ROOT)) if args.model.resolve().is_relative_to(ROOT)
        else str(args.model),
        "dtype": args.dtype, "device": args.device, "threads": args.threads, "repeats": args.repeats,
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "cpu_count": os.cpu_count(), "python": sys.version.split()[0], "torch": torch.__version__,
                    "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None},
        "runs": runs,
        "memory": memory_table(args) if args.allocator == "both" else None,  # not again in each allocator's run
    }
    if set(runs) == {"default", "retain"}:
        result["summary"] = combine(runs)
        for name, row in result["summary"].items():
            print(name + ": " + ", ".join(f"{k} {v:.2f}×" for k, v in row["speedup_vs_e3nn+default"].items()))
    out = args.output or ROOT / "benchmarks" / "results" / (
        f"edge_tensor_product_{'cuda' if args.device.startswith('cuda') else 'cpu'}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
