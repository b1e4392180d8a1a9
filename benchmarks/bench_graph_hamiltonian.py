"""Time the heterogeneous graph and the reference Hamiltonians for bilayers of 64 … 11,164 atoms.

Writes ``benchmarks/results/graph_hamiltonian.json``: per structure the number of atoms, edge counts,
the median wall time of ``build_graph`` (cutoffs 6 Å) and of ``SlaterKosterSP3.get_hamiltonian`` /
``MoonKoshinoPz.get_hamiltonian`` (each includes its own graph), the sparse H(Γ) assembly time, and
the process's peak resident memory.

Usage: ``python benchmarks/bench_graph_hamiltonian.py [--repeats 5] [--output PATH]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import time
from pathlib import Path

from mlepi_ase.graph import build_graph
from mlepi_ase.reference import MoonKoshinoPz, SlaterKosterSP3
from mlepi_ase.structures import bilayer_graphene, twisted_bilayer_graphene


def _median_time(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def machine() -> dict:
    return {"platform": platform.platform(), "processor": platform.machine(), "cpu_count": os.cpu_count(),
            "python": platform.python_version()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "graph_hamiltonian.json"))
    args = parser.parse_args()
    systems = [("AB 4x4", lambda: bilayer_graphene("AB", (4, 4))),
               ("AB 12x12", lambda: bilayer_graphene("AB", (12, 12))),
               ("AB 24x24", lambda: bilayer_graphene("AB", (24, 24))),
               ("TBG i=10", lambda: twisted_bilayer_graphene(10)),
               ("AB 40x40", lambda: bilayer_graphene("AB", (40, 40))),
               ("TBG i=30", lambda: twisted_bilayer_graphene(30))]
    rows = []
    for name, build in systems:
        atoms = build()
        t_graph, g = _median_time(lambda: build_graph(atoms, {"intra": 6.0, "inter": 6.0}), args.repeats)
        t_sp3, h = _median_time(lambda: SlaterKosterSP3().get_hamiltonian(atoms), args.repeats)
        t_pz, _ = _median_time(lambda: MoonKoshinoPz().get_hamiltonian(atoms), args.repeats)
        t_hk, hk = _median_time(lambda: h.hk([0, 0, 0], sparse=True), max(1, args.repeats // 2))
        row = {"system": name, "n_atoms": len(atoms), "edges_6A": g.counts, "t_graph_s": t_graph,
               "t_sp3_hamiltonian_s": t_sp3, "t_pz_hamiltonian_s": t_pz, "t_sparse_hk_gamma_s": t_hk,
               "sp3_blocks": h.n_blocks, "sp3_nnz": int(hk.nnz),
               "peak_rss_MiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
        rows.append(row)
        print(json.dumps(row))
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    with open(tmp, "w") as f:
        json.dump({"machine": machine(), "repeats": args.repeats, "results": rows}, f, indent=2)
    os.replace(tmp, out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
