"""Embedded Slater–Koster reference Hamiltonians for carbon (stand-ins for DFT).

sp3 model (:class:`SlaterKosterSP3`)
------------------------------------
Orthogonal basis s, p per carbon (4 orbitals, p in e3nn order (x, y, z)); 4 valence electrons per
atom, so the Fermi level of graphene sits at the Dirac point.  Two-centre Slater–Koster blocks
(Slater & Koster, Phys. Rev. 94, 1498 (1954)) with the direction cosines ``n = r_ij / |r_ij|``::

    H_ss   = V_ssσ
    H_s,b  =  n_b V_spσ          H_a,s = −n_a V_spσ
    H_a,b  = V_ppπ δ_ab + (V_ppσ − V_ppπ) n_a n_b

Channels:

* intra-layer σ channels and on-site energies from Xu, Wang, Chan & Ho, J. Phys.: Condens. Matter 4,
  6047 (1992): ``E_s = −2.99``, ``E_p = 3.71`` eV; ``V_ssσ = −5.0``, ``V_spσ = 4.7``, ``V_ppσ = 5.5`` eV
  times ``s(r) = (r0/r)^n exp{n[−(r/r_c)^{n_c} + (r0/r_c)^{n_c}]}`` (r0 = 1.536329 Å, n = 2,
  n_c = 6.5, r_c = 2.18 Å), replaced for 2.45 ≤ r < 2.6 Å by the cubic tail
  ``Σ_k c_k (r − 2.45)^k`` and zero beyond 2.6 Å;
* ``V_ppπ`` for all pairs and ``V_ppσ`` for inter-layer pairs from Moon & Koshino, PRB 85, 195458
  (2012): ``V_ppπ(d) = −2.7 exp(−(d − a0)/δ0)``, ``V_ppσ(d) = 0.48 exp(−(d − d0)/δ0)`` eV, a0 = 1.42 Å,
  d0 = 3.35 Å, δ0 = 0.184 · 2.46 Å, times the smooth cutoff ``1/(1 + exp((d − 6.14)/0.265))``.

Pairs farther apart than ``cutoff`` (default 6.5 Å, where the largest dropped hopping is below 0.1 meV)
are not stored.  Intra- and inter-layer pairs follow different physics by construction, which is why
the learned models use a heterogeneous edge graph.

π model (:class:`MoonKoshinoPz`)
---------------------------------
One p_z orbital per carbon: the p_z–p_z element of the sp3 model,
``t(d) = V_ppπ(d) + (V_ppσ(d) − V_ppπ(d)) n_z²`` with the same channels and on-site ``E_p``.  For flat
layers this is the Moon–Koshino graphene/twisted-bilayer model: monolayer ħv_F ≈ 5.23 eV·Å with the
Dirac point at ``E_p + 0.788`` eV; the AB dimer-site splitting at K is ±0.338 eV (not the 0.48 eV
vertical hopping, because farther inter-layer neighbours add with Bloch phases).
"""

from __future__ import annotations

import numpy as np
from ase import Atoms

from ..graph import HeteroGraph, build_graph
from ..orbitals import OrbitalBasis
from ..structures import check_positions
from ..tb import HamiltonianCalculator, TBHamiltonian

__all__ = [
    "SlaterKosterSP3",
    "MoonKoshinoPz",
    "xwch_scaling",
    "mk_vpppi",
    "mk_vppsigma",
    "XWCH_ONSITE",
    "XWCH_V0",
]

CARBON = 6
XWCH_ONSITE = {"s": -2.99, "p": 3.71}
"""On-site energies (eV), Xu et al. 1992."""
XWCH_V0 = {"sss": -5.0, "sps": 4.7, "pps": 5.5}
"""σ hopping prefactors at r0 (eV), Xu et al. 1992."""
_XWCH = {"r0": 1.536329, "n": 2.0, "nc": 6.5, "rc": 2.18, "r1": 2.45, "rcut": 2.6}
_XWCH_TAIL = np.array([6.7392620074314e-3, -8.1885359517898e-2, 0.1932365259144, 0.3542874332380])
_MK = {"vpppi0": -2.7, "vppsigma0": 0.48, "a0": 1.42, "d0": 3.35, "delta0": 0.184 * 2.46, "rc": 6.14, "lc": 0.265}


def xwch_scaling(r: np.ndarray) -> np.ndarray:
    """Xu–Wang–Chan–Ho distance scaling s(r) with its cubic tail; shape of ``r``, dimensionless."""
    r = np.asarray(r, dtype=np.float64)
    p = _XWCH
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        main = (p["r0"] / r) ** p["n"] * np.exp(p["n"] * (-((r / p["rc"]) ** p["nc"]) + (p["r0"] / p["rc"]) ** p["nc"]))
    x = r - p["r1"]
    tail = _XWCH_TAIL[0] + x * (_XWCH_TAIL[1] + x * (_XWCH_TAIL[2] + x * _XWCH_TAIL[3]))
    return np.where(r < p["r1"], main, np.where(r < p["rcut"], tail, 0.0))


def _mk_cutoff(d: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp((d - _MK["rc"]) / _MK["lc"]))


def mk_vpppi(d: np.ndarray) -> np.ndarray:
    """Moon–Koshino V_ppπ(d) with the smooth cutoff (eV); ``d`` in Å."""
    d = np.asarray(d, dtype=np.float64)
    return _MK["vpppi0"] * np.exp(-(d - _MK["a0"]) / _MK["delta0"]) * _mk_cutoff(d)


def mk_vppsigma(d: np.ndarray) -> np.ndarray:
    """Moon–Koshino V_ppσ(d) with the smooth cutoff (eV); ``d`` in Å."""
    d = np.asarray(d, dtype=np.float64)
    return _MK["vppsigma0"] * np.exp(-(d - _MK["d0"]) / _MK["delta0"]) * _mk_cutoff(d)


def _channels(graph: HeteroGraph) -> dict[str, np.ndarray]:
    """Hopping channels V_ssσ, V_spσ, V_ppσ, V_ppπ per edge (eV)."""
    d = graph.distances
    intra = graph.relation == 0
    s = np.where(intra, xwch_scaling(d), 0.0)
    return {
        "sss": XWCH_V0["sss"] * s,
        "sps": XWCH_V0["sps"] * s,
        "pps": np.where(intra, XWCH_V0["pps"] * s, mk_vppsigma(d)),
        "ppp": mk_vpppi(d),
    }


def _require_carbon(atoms: Atoms, model: str) -> None:
    numbers = atoms.get_atomic_numbers()
    bad = np.nonzero(numbers != CARBON)[0]
    if len(bad):
        sym = atoms.get_chemical_symbols()[bad[0]]
        raise ValueError(
            f"{model} is a carbon model; atom {bad[0]} is {sym} ({len(bad)} non-carbon atoms in all)"
        )
    check_positions(atoms)


class _CarbonSlaterKoster(HamiltonianCalculator):
    """Shared machinery: graph, on-site blocks, assembly of the TBHamiltonian."""

    name = "carbon Slater-Koster"

    def __init__(self, cutoff: float = 6.5):
        if not np.isfinite(cutoff) or cutoff <= 2.6:
            raise ValueError(f"cutoff must exceed the 2.6 Å range of the σ channels, got {cutoff!r}")
        self.cutoff = float(cutoff)

    @property
    def cutoffs(self) -> dict[str, float]:
        """Cutoffs (Å) per relation of the stored pairs."""
        return {"intra": self.cutoff, "inter": self.cutoff}

    def _onsite(self) -> np.ndarray:  # (n, n)
        raise NotImplementedError

    def _hoppings(self, graph: HeteroGraph) -> np.ndarray:  # (E, n, n)
        raise NotImplementedError

    def get_hamiltonian(self, atoms: Atoms) -> TBHamiltonian:
        """Tight-binding Hamiltonian of ``atoms``.

        Parameters
        ----------
        atoms
            Carbon structure; layers from ``arrays["layer"]`` (detected when absent).

        Returns
        -------
        TBHamiltonian
            On-site blocks ``(i, i, 0)`` first, then one block per directed graph edge; eV.
        """
        _require_carbon(atoms, type(self).__name__)
        graph = build_graph(atoms, self.cutoffs)
        n = len(atoms)
        onsite = np.broadcast_to(self._onsite(), (n,) + self._onsite().shape)
        pairs = np.concatenate([np.stack([np.arange(n), np.arange(n)], axis=1), graph.edge_index.T])
        shifts = np.concatenate([np.zeros((n, 3), dtype=np.int64), graph.shifts])
        hoppings = self._hoppings(graph)
        # exact Hermiticity: each reverse edge (j, i, -S) takes the transpose of its partner's block
        rev = graph.reverse_edges()
        derived = np.arange(graph.n_edges) > rev
        hoppings[derived] = hoppings[rev[derived]].transpose(0, 2, 1)
        blocks = np.concatenate([onsite, hoppings])
        return TBHamiltonian(
            cell=np.array(atoms.cell),
            positions=atoms.get_positions(),
            numbers=atoms.get_atomic_numbers(),
            basis=self.basis,
            pairs=pairs,
            shifts=shifts,
            blocks=blocks,
            pbc=atoms.pbc,
            layers=graph.layers,
        )


class SlaterKosterSP3(_CarbonSlaterKoster):
    """Orthogonal sp3 Slater–Koster carbon model (XWCH 1992 σ channels + Moon–Koshino π/inter-layer).

    Parameters
    ----------
    cutoff
        Largest pair distance stored (Å).

    Examples
    --------
    >>> from mlepi_ase.structures import bilayer_graphene
    >>> h = SlaterKosterSP3().get_hamiltonian(bilayer_graphene("AB"))
    >>> h.n_orbitals
    16
    """

    basis = OrbitalBasis.from_dict({"C": [0, 1]})

    def _onsite(self) -> np.ndarray:
        return np.diag([XWCH_ONSITE["s"], XWCH_ONSITE["p"], XWCH_ONSITE["p"], XWCH_ONSITE["p"]])

    def _hoppings(self, graph: HeteroGraph) -> np.ndarray:
        v = _channels(graph)
        n = graph.vectors / graph.distances[:, None]
        e = len(n)
        h = np.empty((e, 4, 4))
        h[:, 0, 0] = v["sss"]
        h[:, 0, 1:] = n * v["sps"][:, None]
        h[:, 1:, 0] = -n * v["sps"][:, None]
        h[:, 1:, 1:] = (v["pps"] - v["ppp"])[:, None, None] * n[:, :, None] * n[:, None, :]
        h[:, 1:, 1:] += v["ppp"][:, None, None] * np.eye(3)
        return h


class MoonKoshinoPz(_CarbonSlaterKoster):
    """π-only (one p_z per carbon) variant of :class:`SlaterKosterSP3`: the Moon–Koshino model.

    Parameters
    ----------
    cutoff
        Largest pair distance stored (Å).
    """

    basis = OrbitalBasis.from_dict({"C": ["pz"]})

    def _onsite(self) -> np.ndarray:
        return np.array([[XWCH_ONSITE["p"]]])

    def _hoppings(self, graph: HeteroGraph) -> np.ndarray:
        v = _channels(graph)
        nz2 = (graph.vectors[:, 2] / graph.distances) ** 2
        return (v["ppp"] + (v["pps"] - v["ppp"]) * nz2)[:, None, None]
