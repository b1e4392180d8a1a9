"""Cost vs system size (the paper's Fig. 5), MC-sample stages, and CPU tuning ratios.

Parts (each writes into one JSON, ``benchmarks/results/scaling_<device>.json``, and PNGs):

``scaling``
    Wall time and peak memory of one evaluation vs number of atoms for
    HedgeNet-Phonon (energy + forces), HedgeNet-Electron (full H), the reference force field
    (LAMMPS REBO + KC) and the reference sp3 Slater–Koster Hamiltonian, on AB bilayer supercells
    (64 … 12,800 atoms) and the twisted bilayer i = 30 (11,164 atoms).  Every (method, structure)
    runs in a fresh subprocess: median of ``--repeats`` calls after one warm-up call, peak resident
    memory (``ru_maxrss``) of that process.  Fitted exponents t ∝ N^α from the AB series.
    A DFT stand-in (PySCF Γ-point LDA, GTH-SZV, optional, ``--dft``) on the 4-atom cell (and 64 if
    given ``--dft-sizes 1 4``).
``stages``
    One Monte Carlo sample of the electronic step on the 6×6×1 AB bilayer (144 atoms), split into
    H inference, unfolding (k-point diagonalisation) and the Fermi-velocity fit.
``tuning``
    Before/after ratios of CPU tunings measured side by side: 1 vs 2 threads, float32 vs float64
    inference, graph reuse between configurations of one supercell, batched k-points.

Models: the shipped files when present (``--phonon-model``, ``--electron-model``), else untrained
models of the same architecture (the cost does not depend on the weights).

Usage::

    python benchmarks/bench_scaling.py [--parts scaling stages tuning] [--repeats 5] [--device cpu]
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
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PHONON_MODEL = ROOT / "data" / "hedgenet_phonon" / "hedgenet_phonon.pt"
ELECTRON_MODEL = ROOT / "data" / "hedgenet_electron" / "model.pt"
AB_SIZES = [4, 8, 12, 16, 24, 32, 40, 56, 80]  # n×n supercells: 64 … 25,600 atoms
TBG_INDEX = 30


# ----------------------------------------------------------------------------- structures / models
def build_structure(name: str):
    from mlepi_ase.structures import bilayer_graphene, twisted_bilayer_graphene

    if name.startswith("AB"):
        n = int(name[2:])
        atoms = bilayer_graphene("AB", (n, n))
    elif name.startswith("TBG"):
        atoms = twisted_bilayer_graphene(int(name[3:]))
    else:
        raise ValueError(name)
    atoms.rattle(0.02, seed=0)
    return atoms


def model_file(kind: str, path: str | None, dtype: str) -> Path:
    """The shipped model, or an untrained one of the default architecture saved to a temp file."""
    if path and Path(path).is_file():
        return Path(path)
    tmp = Path(tempfile.gettempdir()) / f"mlepi_bench_untrained_{kind}.pt"
    if not tmp.exists():
        import torch

        torch.manual_seed(0)
        if kind == "phonon":
            from mlepi_ase.models.phonon import HedgeNetPhonon, save_phonon_model

            save_phonon_model(HedgeNetPhonon({"cutoffs": {"intra": 3.2, "inter": 5.0}}), tmp)
        else:
            from mlepi_ase.models.electron import HedgeNetElectron, save_electron_model

            save_electron_model(HedgeNetElectron({"basis": {"C": [0, 1]}}), tmp)
    return tmp


def make_evaluator(method: str, args) -> callable:
    """A function atoms → None doing one full evaluation of ``method``."""
    if method == "hedgenet_phonon":
        from mlepi_ase.calculators import HedgeNetPhononCalculator

        calc = HedgeNetPhononCalculator(model_file("phonon", args.phonon_model, args.dtype), device=args.device,
                                        dtype=args.dtype)

        def run(atoms):
            calc.calculate(atoms, ["energy", "forces"], ["positions"])

        return run
    if method == "hedgenet_electron":
        from mlepi_ase.calculators.electron import HedgeNetElectronCalculator

        calc = HedgeNetElectronCalculator(model_file("electron", args.electron_model, args.dtype), device=args.device,
                                          dtype=args.dtype)
        return calc.get_hamiltonian
    if method == "reference_forces":
        from mlepi_ase.reference import ReferenceForceField

        calc = ReferenceForceField()

        def run(atoms):
            calc.calculate(atoms, ["energy", "forces"], ["positions"])

        return run
    if method == "reference_sp3":
        from mlepi_ase.reference import SlaterKosterSP3

        return SlaterKosterSP3().get_hamiltonian
    if method == "dft_pyscf":
        return dft_energy
    raise ValueError(method)


def dft_energy(atoms):
    """DFT stand-in: PySCF PBC, LDA, GTH-SZV/GTH-Padé, Γ point, density fitting (10 Å vacuum)."""
    from pyscf.pbc import dft, gto

    cell = gto.Cell()
    cell.atom = [("C", p) for p in atoms.positions]
    cell.a = np.asarray(atoms.cell)
    cell.basis, cell.pseudo, cell.ke_cutoff, cell.verbose = "gth-szv", "gth-pade", 60, 0
    cell.build()
    mf = dft.RKS(cell).density_fit()
    mf.xc = "lda,vwn"
    mf.kernel()


def worker(args) -> None:
    """Run in a subprocess: time ``args.method`` on ``args.structure``, print one JSON line."""
    import torch

    torch.set_num_threads(args.threads)
    atoms = build_structure(args.structure)
    if args.method == "dft_pyscf":
        atoms.cell[2, 2] = 10.0 + 3.35  # 10 Å vacuum keeps the FFT grid affordable
    run = make_evaluator(args.method, args)
    run(atoms)  # warm-up (graph buffers, LAMMPS start, lazy imports)
    times = []
    repeats = 1 if args.method == "dft_pyscf" else args.repeats
    for k in range(repeats):
        moved = atoms.copy()
        moved.positions += np.random.default_rng(k).normal(scale=1e-3, size=moved.positions.shape)
        t = time.perf_counter()
        run(moved)
        times.append(time.perf_counter() - t)
    row = {"method": args.method, "structure": args.structure, "n_atoms": len(atoms),
           "median_s": statistics.median(times), "times_s": times,
           "peak_rss_MiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if args.device.startswith("cuda") and torch.cuda.is_available():
        row["gpu_peak_MiB"] = torch.cuda.max_memory_allocated() / 2**20
    print(json.dumps(row))


def run_worker(method: str, structure: str, args, timeout: float) -> dict | None:
    cmd = [sys.executable, __file__, "--worker", "--method", method, "--structure", structure, "--repeats",
           str(args.repeats), "--threads", str(args.threads), "--dtype", args.dtype, "--device", args.device]
    for flag, value in (("--phonon-model", args.phonon_model), ("--electron-model", args.electron_model)):
        if value:
            cmd += [flag, value]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        print(f"  {method} {structure}: timed out after {timeout:.0f} s", flush=True)
        return {"method": method, "structure": structure, "timed_out_s": timeout}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        print(f"  {method} {structure}: failed\n{proc.stderr[-2000:]}", flush=True)
        return {"method": method, "structure": structure, "error": proc.stderr[-500:]}
    row = json.loads(lines[-1])
    print(f"  {method:18s} {structure:7s} N={row['n_atoms']:6d}  {row['median_s']:.4g} s  "
          f"{row['median_s'] / row['n_atoms'] * 1e3:.4f} ms/atom  peak {row['peak_rss_MiB']:.0f} MiB", flush=True)
    return row


def fit_exponent(rows: list[dict]) -> dict | None:
    pts = [(r["n_atoms"], r["median_s"]) for r in rows if "median_s" in r and r["structure"].startswith("AB")]
    if len(pts) < 3:
        return None
    n, t = np.array(pts, dtype=float).T
    alpha, logc = np.polyfit(np.log(n), np.log(t), 1)
    per_atom = t / n
    big = n >= 100
    return {"alpha": float(alpha), "prefactor_s": float(np.exp(logc)),
            "per_atom_ms_min": float(per_atom[big].min() * 1e3), "per_atom_ms_max": float(per_atom[big].max() * 1e3),
            "per_atom_spread_1e2_1e4": float(per_atom[big].max() / per_atom[big].min() - 1.0)}


def part_scaling(args) -> dict:
    methods = ["hedgenet_phonon", "hedgenet_electron", "reference_forces", "reference_sp3"]
    structures = [f"AB{n}" for n in args.sizes] + [f"TBG{TBG_INDEX}"]
    rows = []
    for method in methods:
        print(f"scaling: {method}", flush=True)
        for s in structures:
            row = run_worker(method, s, args, timeout=args.timeout)
            rows.append(row)
            if row and ("timed_out_s" in row or "error" in row) and s.startswith("AB"):
                break  # larger sizes will not do better
    if args.dft:
        print("scaling: dft_pyscf", flush=True)
        for n in args.dft_sizes:
            rows.append(run_worker("dft_pyscf", f"AB{n}", args, timeout=args.dft_timeout))
    fits = {m: fit_exponent([r for r in rows if r and r.get("method") == m]) for m in methods}
    return {"rows": rows, "fits": fits}


def plot_scaling(result: dict, path: Path) -> None:
    from mlepi_ase.plotting import new_figure

    labels = {"hedgenet_phonon": "HedgeNet-Phonon (E+F)", "hedgenet_electron": "HedgeNet-Electron (H)",
              "reference_forces": "REBO+KC (LAMMPS)", "reference_sp3": "sp3 Slater–Koster H",
              "dft_pyscf": "DFT stand-in (PySCF LDA Γ)"}
    fig, (ax, ax2) = new_figure(1, 2, figsize=(10, 4))
    for n, (method, label) in enumerate(labels.items()):
        rows = [r for r in result["rows"] if r and r.get("method") == method and "median_s" in r]
        ab = sorted((r for r in rows if r["structure"].startswith("AB")), key=lambda r: r["n_atoms"])
        if not ab:
            continue
        fit = result["fits"].get(method)
        tag = f"{label}" + (f", α = {fit['alpha']:.2f}" if fit else "")
        ax.loglog([r["n_atoms"] for r in ab], [r["median_s"] for r in ab], "o-", color=f"C{n}", label=tag)
        ax2.loglog([r["n_atoms"] for r in ab], [r["peak_rss_MiB"] for r in ab], "o-", color=f"C{n}", label=label)
        for r in rows:
            if r["structure"].startswith("TBG"):
                ax.loglog(r["n_atoms"], r["median_s"], "*", ms=12, color=f"C{n}")
                ax2.loglog(r["n_atoms"], r["peak_rss_MiB"], "*", ms=12, color=f"C{n}")
    ax.set_xlabel("atoms")
    ax.set_ylabel("time per evaluation (s)")
    ax.set_title("cost vs size (★ = twisted bilayer i = 30)")
    ax.legend(fontsize=7)
    ax2.set_xlabel("atoms")
    ax2.set_ylabel("peak resident memory (MiB)")
    fig.tight_layout()
    fig.savefig(path, dpi=150)


# ------------------------------------------------------------------------------------ stages
def _median(fn, repeats):
    times = []
    out = None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def part_stages(args) -> dict:
    """One MC sample on the 6×6×1 AB bilayer, by stage, with the demo's observable settings."""
    import torch

    from mlepi_ase.calculators.electron import HedgeNetElectronCalculator
    from mlepi_ase.observables import UnfoldingMap, _fermi_kpoints, fermi_velocity, primitive_kpoint, unfold
    from mlepi_ase.reference import SlaterKosterSP3
    from mlepi_ase.structures import bilayer_graphene

    torch.set_num_threads(args.threads)
    prim = bilayer_graphene("AB")
    ref = prim.repeat((6, 6, 1))
    unfolding = UnfoldingMap.from_structures(prim, ref)
    config = ref.copy()
    config.positions += np.random.default_rng(1).normal(scale=0.05, size=config.positions.shape)
    q, directions = (0.02, 0.04), (0.0, 60.0)
    kfit, _, _ = _fermi_kpoints(unfolding, q, directions, "K", True)
    kpts = np.vstack([primitive_kpoint(unfolding, "K")[None], kfit])
    out = {"structure": "AB 6x6x1", "n_atoms": len(config), "n_kpoints_unfolded": len(kpts)}
    for label, calc in (("hedgenet_electron", HedgeNetElectronCalculator(
            model_file("electron", args.electron_model, args.dtype), dtype=args.dtype)),
            ("reference_sp3", SlaterKosterSP3())):
        calc.get_hamiltonian(config)
        t_h, h = _median(lambda: calc.get_hamiltonian(config), args.repeats)
        t_u, spec = _median(lambda: unfold(h, unfolding, kfit), args.repeats)
        t_f, _ = _median(lambda: fermi_velocity(h, unfolding, "bilayer", q=q, directions=directions,
                                                spectrum=spec), args.repeats)
        out[label] = {"hamiltonian_s": t_h, "unfolding_diagonalisation_s": t_u, "fermi_velocity_fit_s": t_f,
                      "total_s": t_h + t_u + t_f}
        print(f"stages ({label}): " + ", ".join(f"{k} {v:.3f}" for k, v in out[label].items()), flush=True)
    return out


# ------------------------------------------------------------------------------------ tuning
def part_tuning(args) -> dict:
    """Side-by-side ratios of CPU tunings (medians of interleaved repeats)."""
    import torch

    from mlepi_ase.calculators import HedgeNetPhononCalculator
    from mlepi_ase.calculators.electron import HedgeNetElectronCalculator
    from mlepi_ase.reference import SlaterKosterSP3
    from mlepi_ase.structures import bilayer_graphene

    atoms = bilayer_graphene("AB", (12, 12))
    atoms.rattle(0.03, seed=2)
    res: dict = {"structure": "AB 12x12 (576 atoms)"}

    def interleave(fns: dict, repeats: int) -> dict:
        times = {k: [] for k in fns}
        for f in fns.values():
            f()
        for _ in range(repeats):
            for k, f in fns.items():
                t = time.perf_counter()
                f()
                times[k].append(time.perf_counter() - t)
        return {k: statistics.median(v) for k, v in times.items()}

    # threads
    pm = model_file("phonon", args.phonon_model, "float64")
    em = model_file("electron", args.electron_model, "float64")
    for name, make in (("hedgenet_phonon", lambda dt: HedgeNetPhononCalculator(pm, dtype=dt)),
                       ("hedgenet_electron", lambda dt: HedgeNetElectronCalculator(em, dtype=dt))):
        calcs = {dt: make(dt) for dt in ("float64", "float32")}

        def call(c):
            if name == "hedgenet_phonon":
                return lambda: c.calculate(atoms, ["energy", "forces"], ["positions"])
            return lambda: c.get_hamiltonian(atoms)

        t_dtype = interleave({dt: call(c) for dt, c in calcs.items()}, args.repeats)
        threads = {}
        for n in (1, 2):
            torch.set_num_threads(n)
            threads[n] = interleave({"x": call(calcs["float32"])}, args.repeats)["x"]
        torch.set_num_threads(args.threads)
        res[name] = {"float64_s": t_dtype["float64"], "float32_s": t_dtype["float32"],
                     "float32_speedup": t_dtype["float64"] / t_dtype["float32"],
                     "threads1_s": threads[1], "threads2_s": threads[2], "two_thread_speedup": threads[1] / threads[2]}
        print(f"tuning {name}: {res[name]}", flush=True)

    # graph reuse: neighbour search share of one reference-H evaluation
    from mlepi_ase.graph import build_graph

    sk = SlaterKosterSP3()
    t = interleave({"graph": lambda: build_graph(atoms, sk.cutoffs), "hamiltonian": lambda: sk.get_hamiltonian(atoms)},
                   args.repeats)
    res["graph_share_of_reference_H"] = t["graph"] / t["hamiltonian"]

    # batched k-points: one dense eigh per k vs a stacked numpy eigh over all k
    h = sk.get_hamiltonian(bilayer_graphene("AB", (6, 6)))
    kpts = np.random.default_rng(0).random((8, 3)) * [1, 1, 0]
    loop = lambda: h.eigh(kpts)  # noqa: E731
    stacked = lambda: np.linalg.eigvalsh(np.stack([h.hk(k) for k in kpts]))  # noqa: E731
    t = interleave({"loop": loop, "stacked": stacked}, args.repeats)
    res["batched_kpoints"] = {"loop_s": t["loop"], "stacked_s": t["stacked"], "speedup": t["loop"] / t["stacked"]}
    print(f"tuning: {res}", flush=True)
    return res


def machine(args) -> dict:
    info = {"platform": platform.platform(), "processor": platform.machine(), "cpu_count": os.cpu_count(),
            "python": platform.python_version(), "threads": args.threads, "device": args.device, "dtype": args.dtype}
    if args.device.startswith("cuda"):
        import torch

        info["gpu"] = torch.cuda.get_device_name(0)
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu_model"] = next((line.split(":", 1)[1].strip() for line in f if "model name" in line), None)
    except OSError:
        pass
    return info


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", nargs="*", default=["scaling", "stages", "tuning"])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--sizes", type=int, nargs="*", default=AB_SIZES, help="n of the n×n AB supercells")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--dtype", default="float32", help="model inference dtype")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per (method, structure)")
    p.add_argument("--dft", action="store_true", help="also time the PySCF DFT stand-in (needs pyscf)")
    p.add_argument("--dft-sizes", type=int, nargs="*", default=[1])
    p.add_argument("--dft-timeout", type=float, default=1800.0)
    p.add_argument("--phonon-model", default=str(PHONON_MODEL))
    p.add_argument("--electron-model", default=str(ELECTRON_MODEL))
    p.add_argument("--output", default=None)
    # worker mode
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--method", help=argparse.SUPPRESS)
    p.add_argument("--structure", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args)
        return
    device_tag = "cpu" if args.device == "cpu" else "gpu"
    out = Path(args.output or RESULTS / f"scaling_{device_tag}.json")
    result = json.loads(out.read_text()) if out.exists() else {}
    result["machine"] = machine(args)
    result["models"] = {"phonon": str(model_file("phonon", args.phonon_model, args.dtype)),
                        "electron": str(model_file("electron", args.electron_model, args.dtype))}
    for part in args.parts:
        result[part] = {"scaling": part_scaling, "stages": part_stages, "tuning": part_tuning}[part](args)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(result, indent=2))
        os.replace(tmp, out)
        if part == "scaling":
            plot_scaling(result["scaling"], out.with_name(out.stem + "_fig5.png"))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
