"""Cost of HedgeNet-Phonon (heterogeneous edges) vs a homogeneous MACE of the same width.

For AB bilayer graphene supercells of 64 … 2304 atoms, both models (same channels, irreps, radial MLP
widths, interactions and correlation; the heterogeneous one has an intra-layer and an inter-layer edge
network with their own cutoffs, the homogeneous one a single edge network with the largest cutoff) are
timed side by side — plus, to isolate the cost of two edge networks, the heterogeneous model with both
cutoffs equal to the homogeneous one (the same edges) — in one process, interleaved call by call: one
energy + forces evaluation through the ASE calculator (neighbour graph included) and, separately, the model
alone (graph prebuilt).  Medians
over ``--repeats`` (≥ 5) calls after one warm-up call.  Peak memory of one energy + forces call is
measured in a fresh subprocess per (model, size): the kernel's peak-RSS counter is reset after a warm-up
call, and the peak during the call minus the RSS before it is reported (``call_MiB``) with the absolute
peak (``peak_MiB``).  With ``--device cuda`` the models run on the GPU, every timed call ends with a device
synchronisation, and memory is the GPU's: PyTorch's peak allocation during the call minus the allocation
before it (``torch.cuda.max_memory_allocated``, in this process).

Writes ``benchmarks/results/phonon_model_cost.json`` (``phonon_model_cost_cuda.json`` on a GPU).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_phonon_model.py [--repeats 5] [--sizes 4 6 8 12 16 24]
        [--model data/hedgenet_phonon/hedgenet_phonon.pt] [--dtype float64] [--threads 1] [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = ROOT / "data" / "hedgenet_phonon" / "hedgenet_phonon.pt"


def build_models(model_path: Path | None, dtype: torch.dtype, device: str = "cpu"):
    """Heterogeneous and homogeneous models of the same width (weights random unless a file is given)."""
    from mlepi_ase.models import HedgeNetPhonon
    from mlepi_ase.models.phonon import read_phonon_model_file

    if model_path is not None and model_path.is_file():
        config = read_phonon_model_file(model_path)["config"]
    else:
        config = {"cutoffs": {"intra": 3.2, "inter": 5.0}}
    torch.manual_seed(0)
    het = HedgeNetPhonon(config, heterogeneous=True, dtype=dtype, device=device)
    rmax = max(het.graph_cutoffs.values())
    hom = HedgeNetPhonon(config, heterogeneous=False, cutoff=rmax, dtype=dtype, device=device)
    # isolates the overhead of two edge networks: heterogeneous, but the same edges as the homogeneous one
    het_eq = HedgeNetPhonon(config, heterogeneous=True, cutoffs={"intra": rmax, "inter": rmax}, dtype=dtype,
                            device=device)
    return {"heterogeneous": het, "homogeneous": hom, "heterogeneous_equal_cutoffs": het_eq}


def structure(n: int):
    from mlepi_ase.structures import bilayer_graphene

    atoms = bilayer_graphene("AB", size=(n, n))
    atoms.rattle(0.02, seed=n)
    return atoms


def _vm(key: str) -> float | None:
    """``VmRSS`` / ``VmHWM`` of this process from /proc (MiB), or None where unavailable."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def memory_probe(kind: str, n: int, model_path: str, dtype: str, threads: int) -> None:
    """Subprocess entry: print JSON with the peak memory of one energy + forces call.

    After a warm-up call on a 4-atom cell the kernel's peak-RSS counter is reset (``echo 5 >
    /proc/self/clear_refs``); the peak during the call minus the RSS before it is the memory the call
    needs.  Where the reset is not possible, ``ru_maxrss`` is reported instead (an upper bound that
    includes the model construction).
    """
    torch.set_num_threads(threads)
    from mlepi_ase.calculators import HedgeNetPhononCalculator

    model = build_models(Path(model_path) if model_path else None, getattr(torch, dtype))[kind]
    calc = HedgeNetPhononCalculator(model=model, dtype=dtype)
    small = structure(1)
    small.calc = calc
    small.get_forces()
    atoms = structure(n)
    atoms.calc = calc
    method = "VmHWM after clear_refs"
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        method = "ru_maxrss"
    before = _vm("VmRSS")
    atoms.get_forces()
    peak = _vm("VmHWM") if method != "ru_maxrss" else None
    if peak is None or before is None:
        method = "ru_maxrss"
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        before = 0.0
    print(json.dumps({"method": method, "rss_before_MiB": before, "peak_MiB": peak, "call_MiB": peak - before}))


def cuda_call_memory(calc, atoms) -> dict:
    """GPU memory of one energy + forces call: peak allocation during it minus the allocation before (MiB)."""
    atoms = atoms.copy()
    atoms.positions[0, 0] -= 1e-4  # a state the calculator has not cached
    atoms.calc = calc
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    atoms.get_forces()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated()
    mib = 1024.0 ** 2
    return {"method": "torch.cuda.max_memory_allocated", "rss_before_MiB": None, "allocated_before_MiB": before / mib,
            "peak_MiB": peak / mib, "call_MiB": (peak - before) / mib}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="+", default=[4, 6, 8, 12, 16, 24],
                        help="n of the n×n AB bilayer supercells (4 n² atoms)")
    parser.add_argument("--model", default=str(DEFAULT_MODEL),
                        help="model file whose config is used (random weights if absent)")
    parser.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (models on the GPU, GPU memory)")
    parser.add_argument("--output", default=None,
                        help="JSON file (default benchmarks/results/phonon_model_cost[_cuda].json)")
    parser.add_argument("--memory-probe", nargs=2, metavar=("KIND", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_probe:
        memory_probe(args.memory_probe[0], int(args.memory_probe[1]), args.model, args.dtype, args.threads)
        return
    if args.repeats < 5:
        parser.error("--repeats must be at least 5")
    gpu = torch.device(args.device).type == "cuda"
    if gpu and not torch.cuda.is_available():
        parser.error("--device cuda: PyTorch sees no CUDA device")
    if args.output is None:
        args.output = str(ROOT / "benchmarks" / "results" / f"phonon_model_cost{'_cuda' if gpu else ''}.json")
    sync = torch.cuda.synchronize if gpu else (lambda: None)
    torch.set_num_threads(args.threads)
    from mlepi_ase.calculators import HedgeNetPhononCalculator
    from mlepi_ase.graph import build_graph

    dtype = getattr(torch, args.dtype)
    models = build_models(Path(args.model), dtype, args.device)
    calcs = {k: HedgeNetPhononCalculator(model=m, dtype=args.dtype, device=args.device) for k, m in models.items()}
    rows = []
    for n in args.sizes:
        atoms = structure(n)
        row = {"n_atoms": len(atoms), "supercell": [n, n]}
        batches = {k: m.batch([atoms]) for k, m in models.items()}
        for k, m in models.items():
            row[k] = {"edges_per_atom": batches[k].edge_index.shape[1] / len(atoms),
                      "calculator_s": [], "model_s": []}
        row["graph_counts"] = build_graph(atoms, models["heterogeneous"].graph_cutoffs).counts
        for k in models:  # warm-up
            a = atoms.copy()
            a.calc = calcs[k]
            a.get_forces()
        for rep in range(args.repeats):
            for k in models:  # interleaved: het, hom, het, hom, ...
                a = atoms.copy()
                a.positions[0, 0] += 1e-4 * (rep + 1)  # a new state: no cache hit
                a.calc = calcs[k]
                sync()
                t = time.perf_counter()
                a.get_forces()  # forces come back as a NumPy array: the device has finished
                row[k]["calculator_s"].append(time.perf_counter() - t)
                t = time.perf_counter()
                models[k](batches[k], compute_forces=True)
                sync()
                row[k]["model_s"].append(time.perf_counter() - t)
        for k in models:
            r = row[k]
            r["calculator_median_s"] = statistics.median(r["calculator_s"])
            r["model_median_s"] = statistics.median(r["model_s"])
            if gpu:
                r["memory"] = cuda_call_memory(calcs[k], atoms)
                continue
            probe = subprocess.run(
                [sys.executable, __file__, "--memory-probe", k, str(n), "--model", args.model,
                 "--dtype", args.dtype, "--threads", str(args.threads)],
                capture_output=True, text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
            r["memory"] = json.loads(probe.stdout.strip().splitlines()[-1])
        row["ratio_het_over_hom_calculator"] = (row["heterogeneous"]["calculator_median_s"]
                                                / row["homogeneous"]["calculator_median_s"])
        row["ratio_het_over_hom_model"] = (row["heterogeneous"]["model_median_s"]
                                           / row["homogeneous"]["model_median_s"])
        row["ratio_het_equal_cutoffs_over_hom_model"] = (row["heterogeneous_equal_cutoffs"]["model_median_s"]
                                                         / row["homogeneous"]["model_median_s"])
        rows.append(row)
        print(f"{len(atoms):5d} atoms: het {row['heterogeneous']['calculator_median_s']:.3f} s "
              f"({row['heterogeneous']['edges_per_atom']:.1f} edges/atom, "
              f"{row['heterogeneous']['memory']['call_MiB']:.0f} MiB), "
              f"hom {row['homogeneous']['calculator_median_s']:.3f} s "
              f"({row['homogeneous']['edges_per_atom']:.1f} edges/atom, "
              f"{row['homogeneous']['memory']['call_MiB']:.0f} MiB), "
              f"ratio {row['ratio_het_over_hom_calculator']:.2f}; same-edges ratio (model only) "
              f"{row['ratio_het_equal_cutoffs_over_hom_model']:.2f}", flush=True)
    het, hom = models["heterogeneous"], models["homogeneous"]
    result = {
        "description": "time per energy+forces call (median of repeats, interleaved), HedgeNet-Phonon "
                       "heterogeneous vs homogeneous MACE of the same width",
        "models": {"heterogeneous": {"cutoffs": het.graph_cutoffs, "parameters": het.count_parameters()},
                   "homogeneous": {"cutoff": hom.config["cutoff"], "parameters": hom.count_parameters()},
                   "heterogeneous_equal_cutoffs": {"cutoffs": models["heterogeneous_equal_cutoffs"].graph_cutoffs,
                                                   "parameters": models["heterogeneous_equal_cutoffs"].count_parameters()},
                   "config": {k: v for k, v in het.config.items() if k not in ("atomic_energies",)},
                   "weights_from": args.model if Path(args.model).is_file() else "random"},
        "dtype": args.dtype,
        "torch_threads": args.threads,
        "repeats": args.repeats,
        "device": args.device,
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                    "python": platform.python_version(), "torch": torch.__version__,
                    "gpu": torch.cuda.get_device_name() if gpu else None,
                    "note": "the GPU machine ran nothing else" if gpu else
                            "shared 2-core machine: other jobs may have run at the same time"},
        "rows": rows,
    }
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2))
    os.replace(tmp, out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
