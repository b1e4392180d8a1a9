r"""How much of a force error is a three-body term with a non-analytic angular spline?

The reference's angular function (REBO's :math:`G_C(\cos\theta)`) is a piecewise polynomial with a knot at
:math:`\cos\theta = -1/2`, graphene's bond angle, where its third derivative jumps
(``../force_error_anatomy/``).  A MACE network is analytic in the positions.  If the knot is what a trained
HedgeNet-Phonon fails to represent, its force residual :math:`F_\mathrm{ref} - F_\mathrm{model}` should be
largely the force of some three-body energy

.. math::

    E_3 = \sum_i \sum_{j<k \in \mathcal N(i)} f_c(r_{ij}) f_c(r_{ik})
          \sum_{n=0}^{N_r-1} \big[(r_{ij} - r_0)^n + (r_{ik} - r_0)^n\big]/2^{[n=0]}
          \sum_a w_{na} B_a(\cos\theta_{jik}),

with cubic B-splines :math:`B_a` on uniform knots of spacing 1/6 in :math:`\cos\theta` (15 functions on
[−1, 1]; the grid contains REBO's knots −1, −2/3, −1/2, −1/3 and 1, and each B-spline's third derivative jumps at
its knots), the first-neighbour pairs within ``--cutoff`` (MACE's polynomial envelope, p = 6) and
:math:`r_0` = 1.42 Å.  :math:`E_3` is linear in :math:`w`, so the best such term is a least-squares fit of its
basis forces (autograd, float64) to the residual.  Fit on 4×4×1 training configurations, scored on the held-out
6×6×1 300 K draws: if adding the fitted term lowers the held-out MAE a lot, a model with such a term would gain.

``--target knot`` is the positive control: the same fit to the part of REBO's forces that the knot switches on,
:math:`F_\mathrm{REBO} - F_\mathrm{analytic}` (the relabelled files of ``../smooth_knot/``, same configurations),
which is a three-body angular force by construction.

Usage (one thread; ~2 min per basis size for the residual, plus ~1 min to predict)::

    OMP_NUM_THREADS=1 python data/hedgenet_phonon/experiments/angular_spline_probe/probe.py \
        --target residual --model data/hedgenet_phonon/hedgenet_phonon.pt --radial-orders 1 3 --output F.json
    OMP_NUM_THREADS=1 python data/hedgenet_phonon/experiments/angular_spline_probe/probe.py \
        --target knot --radial-orders 1 3 --output F.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[4]
TRAIN = [("out/phonon_dataset_large/train.xyz", slice(None)),
         ("out/phonon_dataset_thermal_extra2/train.xyz", slice(None, None, 6))]
HELDOUT = {
    "6x6_300K_draw_large": "out/phonon_dataset_large/test_6x6.xyz",
    "6x6_300K_draw_thermal_extra": "out/phonon_dataset_thermal_extra/test_6x6.xyz",
    "6x6_300K_draw_thermal_extra2": "out/phonon_dataset_thermal_extra2/test_6x6.xyz",
    "4x4_test": "out/phonon_dataset_large/test.xyz",
}
KNOT_ROOT = "out/smooth_knot"  # the analytic variant's relabelled copies (../smooth_knot/make_smooth_knot_sets.py)
KNOT_SPACING = 1.0 / 6.0
R0 = 1.42  # Å, graphene's bond length


def knots(spacing: float = KNOT_SPACING) -> np.ndarray:
    """Uniform cubic-spline knots covering [−1, 1] with three extra knots on each side."""
    n = int(round(2.0 / spacing))
    return -1.0 + spacing * np.arange(-3, n + 4)


def bsplines(x, t):
    """Cubic B-splines (Cox–de Boor) at ``x`` (torch, (n,)); knots ``t`` (K,); returns (n, K − 4)."""
    import torch

    t = torch.as_tensor(t, dtype=x.dtype)
    b = ((x[:, None] >= t[None, :-1]) & (x[:, None] < t[None, 1:])).to(x.dtype)
    for k in range(1, 4):
        left = (x[:, None] - t[None, :-(k + 1)]) / (t[k:-1] - t[:-(k + 1)])[None]
        right = (t[None, k + 1:] - x[:, None]) / (t[k + 1:] - t[1:-k])[None]
        b = left * b[:, :-1] + right * b[:, 1:]
    return b


def basis_energies(atoms, cutoff: float, radial_orders: int, positions=None):
    """The basis energies of :math:`E_3` (module docstring), torch (15 · radial_orders,) eV per unit coefficient.

    ``positions`` (torch (N, 3), Å) replaces ``atoms.positions`` (for autograd); the neighbour pairs are those of
    ``atoms``.
    """
    import torch
    from ase.neighborlist import neighbor_list

    import mlepi_ase._e3nn  # noqa: F401  (mace before e3nn)
    from mace.modules.radial import PolynomialCutoff

    i, j, shift = neighbor_list("ijS", atoms, cutoff)
    pos = torch.tensor(atoms.positions, dtype=torch.float64) if positions is None else positions
    cell = torch.tensor(np.array(atoms.cell), dtype=torch.float64)
    d = pos[j] - pos[i] + torch.tensor(shift, dtype=torch.float64) @ cell
    r = d.norm(dim=1)
    same = i[:, None] == i[None, :]
    a, b = np.nonzero(np.triu(same, k=1))  # edge pairs with a common centre
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    cos = ((d[a] * d[b]).sum(1) / (r[a] * r[b])).clamp(-1.0, 1.0 - 1e-12)
    spline = bsplines(cos, knots())
    envelope = PolynomialCutoff.calculate_envelope  # MACE's radial envelope, here in float64
    r_max, p = torch.tensor(cutoff, dtype=torch.float64), torch.tensor(6)
    weight = envelope(r[a], r_max, p) * envelope(r[b], r_max, p)
    columns = [weight[:, None] * spline]
    for n in range(1, radial_orders):
        columns.append((weight * ((r[a] - R0) ** n + (r[b] - R0) ** n))[:, None] * spline)
    return torch.cat(columns, dim=1).sum(0)


def basis_forces(atoms, cutoff: float, radial_orders: int) -> np.ndarray:
    """Forces of every basis energy, −∂E_a/∂r: (3N, 15 · radial_orders) eV/Å (autograd)."""
    import torch

    pos = torch.tensor(atoms.positions, dtype=torch.float64, requires_grad=True)
    forces = []
    for e in basis_energies(atoms, cutoff, radial_orders, pos):
        (grad,) = torch.autograd.grad(e, pos, retain_graph=True)
        forces.append(-grad.numpy().ravel())
    return np.stack(forces, axis=1)


def read(path: str, which: slice = slice(None)) -> list:
    from mlepi_ase.phonon_dataset import read_phonon_dataset

    frames = read_phonon_dataset(ROOT / path)[which]
    return [a for a in frames if a.info.get("config_type") != "stacking"]  # rigid slides: no angle changes


def targets(frames: list, path: str, which: slice, target: str, calc) -> np.ndarray:
    """The force vector to explain, (3N·configs,) eV/Å."""
    ref = np.concatenate([a.arrays["REF_forces"].ravel() for a in frames])
    if target == "knot":
        other = read(f"{KNOT_ROOT}/{path.removeprefix('out/')}", which)
        if len(other) != len(frames) or any(not np.allclose(x.positions, y.positions) for x, y in zip(frames, other)):
            raise ValueError(f"{KNOT_ROOT}/{path.removeprefix('out/')} does not hold the configurations of {path}: "
                             "remake it with ../smooth_knot/make_smooth_knot_sets.py")
        return ref - np.concatenate([a.arrays["REF_forces"].ravel() for a in other])
    pred = []
    for a in frames:
        a = a.copy()
        a.calc = calc
        pred.append(a.get_forces().ravel())
    return ref - np.concatenate(pred)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", choices=("residual", "knot"), required=True)
    parser.add_argument("--model", help="model file (for --target residual)")
    parser.add_argument("--cutoff", type=float, default=2.0, help="first-neighbour cutoff, Å (default 2.0)")
    parser.add_argument("--radial-orders", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--output", required=True)
    args = parser.parse_args()
    if args.target == "residual" and not args.model:
        parser.error("--target residual needs --model")

    calc = None
    if args.model:
        from mlepi_ase.calculators import HedgeNetPhononCalculator

        calc = HedgeNetPhononCalculator(args.model, dtype="float64")
    max_order = max(args.radial_orders)
    t0 = time.time()
    sets = {"train": [(p, w, read(p, w)) for p, w in TRAIN]}
    sets.update({name: [(p, slice(None), read(p))] for name, p in HELDOUT.items()})
    data = {}
    for name, parts in sets.items():
        basis = np.concatenate([basis_forces(a, args.cutoff, max_order) for _, _, fr in parts for a in fr])
        y = np.concatenate([targets(fr, p, w, args.target, calc) for p, w, fr in parts])
        data[name] = (basis, y, sum(len(fr) for _, _, fr in parts))
        print(f"{name}: {data[name][2]} configurations ({time.time() - t0:.0f} s)", flush=True)
    n_angular = len(knots()) - 4
    out = {"target": args.target, "model": args.model, "cutoff_A": args.cutoff, "knot_spacing": KNOT_SPACING,
           "n_angular": n_angular, "train": [f"{p}[{w.start}:{w.stop}:{w.step}]" for p, w in TRAIN], "fits": {}}
    for order in args.radial_orders:
        cols = slice(0, n_angular * order)
        a, y, _ = data["train"]
        a = a[:, cols]
        gram = a.T @ a
        ridge = 1e-8 * np.trace(gram) / gram.shape[0]
        w = np.linalg.solve(gram + ridge * np.eye(gram.shape[0]), a.T @ y)
        fit = {"coefficients_eV": w.tolist()}
        for name, (basis, y, n) in data.items():
            fit[name] = {"n_configs": n, "mae_before_meV_per_A": 1e3 * float(np.abs(y).mean()),
                         "mae_after_meV_per_A": 1e3 * float(np.abs(y - basis[:, cols] @ w).mean())}
            print(f"radial orders {order}: {name:30s} MAE {fit[name]['mae_before_meV_per_A']:8.2f} -> "
                  f"{fit[name]['mae_after_meV_per_A']:8.2f} meV/Å", flush=True)
        out["fits"][str(order)] = fit
    Path(args.output).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
