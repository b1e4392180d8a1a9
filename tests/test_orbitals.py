"""Orbital orderings: e3nn definitions pinned to e3nn, OpenMX/spherical conversions pinned by
Slater–Koster blocks that must transform with e3nn's Wigner matrices under rotations and reflections."""

import numpy as np
import pytest
import torch

from mlepi_ase._e3nn import o3
from mlepi_ase.orbitals import (
    OrbitalBasis,
    _cartesian_functions,
    block_from_e3nn,
    block_to_e3nn,
    conversion_matrix,
)

# bond-frame character of the OpenMX functions: p = (x, y, z), d = (z², x²−y², xy, xz, yz)
_OPENMX_LABELS = {0: ["s"], 1: ["px", "py", "s"], 2: ["s", "d1", "d2", "px", "py"]}
_KIND = {"s": 0, "px": 1, "py": 1, "d1": 2, "d2": 2}  # σ, π, δ


def _sphere_quadrature():
    x, w = np.polynomial.legendre.leggauss(12)
    phi = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    ct, ph = np.meshgrid(x, phi, indexing="ij")
    st = np.sqrt(1 - ct**2)
    pts = np.stack([st * np.cos(ph), st * np.sin(ph), ct], axis=-1).reshape(-1, 3)
    wts = np.repeat(w, len(phi)) * (2 * np.pi / len(phi))
    return pts, wts


def _frame(n):
    """Rotation Q with Q @ ẑ = n."""
    n = n / np.linalg.norm(n)
    a = np.array([1.0, 0, 0]) if abs(n[0]) < 0.9 else np.array([0, 1.0, 0])
    x = np.cross(a, n)
    x /= np.linalg.norm(x)
    y = np.cross(n, x)
    return np.stack([x, y, n], axis=1)


def sk_block_openmx(l1, l2, n, V):
    """Two-centre block between shells l1 (at 0) and l2 (at n) in the OpenMX Cartesian basis.

    Built independently of e3nn: project the OpenMX functions on the same functions in the bond
    frame (z' = n̂) and pair σ/π/δ components with the bond integrals V[(l1, l2, |m|)].
    """
    pts, w = _sphere_quadrature()
    q = _frame(np.asarray(n, float))

    def coeffs(l):
        f = _cartesian_functions("openmx", l, pts)  # lab frame
        g = _cartesian_functions("openmx", l, pts @ q)  # bond frame: g(r) = f(Q^T r)
        norm = (f**2 * w[:, None]).sum(0)
        return (f * w[:, None]).T @ g / norm[:, None]  # (lab component a, bond component m)

    c1, c2 = coeffs(l1), coeffs(l2)
    h = np.zeros((2 * l1 + 1, 2 * l2 + 1))
    for m1, lab1 in enumerate(_OPENMX_LABELS[l1]):
        for m2, lab2 in enumerate(_OPENMX_LABELS[l2]):
            if lab1 == lab2:
                h += V[(l1, l2, _KIND[lab1])] * np.outer(c1[:, m1], c2[:, m2])
    return h


def _irrep(l):
    return o3.Irreps(f"1x{l}{'e' if l % 2 == 0 else 'o'}")


@pytest.mark.parametrize("l", [1, 2])
def test_e3nn_definitions_match_e3nn(l):
    pts = np.random.default_rng(0).normal(size=(20, 3))
    pts /= np.linalg.norm(pts, axis=1, keepdims=True)
    ours = _cartesian_functions("e3nn", l, pts)
    theirs = o3.spherical_harmonics(l, torch.tensor(pts), normalize=True).numpy()
    ratio = theirs / ours
    assert np.allclose(ratio, ratio.flat[0], rtol=1e-10)


def test_sk_construction_reproduces_textbook_sp_and_sd():
    n = np.array([0.3, -0.5, 0.81])
    n /= np.linalg.norm(n)
    V = {(0, 1, 0): 1.7, (0, 2, 0): 0.9}
    assert np.allclose(sk_block_openmx(0, 1, n, V)[0], 1.7 * n)  # H_s,b = n_b V_spσ
    l, m, nz = n
    sd = sk_block_openmx(0, 2, n, V)[0]
    expected = 0.9 * np.array(
        [nz**2 - 0.5 * (l**2 + m**2), np.sqrt(3) / 2 * (l**2 - m**2), np.sqrt(3) * l * m,
         np.sqrt(3) * l * nz, np.sqrt(3) * m * nz]
    )  # Slater & Koster (1954) table, OpenMX order
    assert np.allclose(sd, expected)


@pytest.mark.parametrize("convention", ["openmx", "spherical"])
@pytest.mark.parametrize("improper", [False, True])
def test_converted_sk_blocks_are_equivariant(convention, improper):
    rng = np.random.default_rng(7)
    V = {(a, b, k): rng.normal() for a in range(3) for b in range(3) for k in range(3)}
    to_sph = {0: [0], 1: [1, 2, 0], 2: [2, 4, 0, 3, 1]}  # spherical component -> OpenMX component
    torch.manual_seed(3)
    for _ in range(3):
        q = o3.rand_matrix(dtype=torch.float64)
        if improper:
            q = -q
        n = rng.normal(size=3)
        for l1 in range(3):
            for l2 in range(3):
                h = sk_block_openmx(l1, l2, n, V)
                hq = sk_block_openmx(l1, l2, q.numpy() @ n, V)
                if convention == "spherical":
                    h = h[np.ix_(to_sph[l1], to_sph[l2])]
                    hq = hq[np.ix_(to_sph[l1], to_sph[l2])]
                e = block_to_e3nn(h, [l1], [l2], convention)
                eq = block_to_e3nn(hq, [l1], [l2], convention)
                d1 = _irrep(l1).D_from_matrix(q).numpy()
                d2 = _irrep(l2).D_from_matrix(q).numpy()
                assert np.allclose(eq, d1 @ e @ d2.T, atol=1e-10), (l1, l2)


def test_conversion_round_trip_and_orthogonality():
    rng = np.random.default_rng(1)
    shells = [0, 0, 1, 1, 2]
    block = rng.normal(size=(13, 13))
    back = block_from_e3nn(block_to_e3nn(block, shells, shells, "openmx"), shells, shells, "openmx")
    assert np.allclose(back, block, atol=1e-12)
    for conv in ("openmx", "spherical"):
        for l in range(3):
            u = conversion_matrix(conv, l)
            assert np.allclose(u @ u.T, np.eye(2 * l + 1))
    assert np.allclose(conversion_matrix("openmx", 1), np.eye(3), atol=1e-14)  # OpenMX p = (x, y, z) like e3nn


def test_basis_errors():
    basis = OrbitalBasis.from_dict({"C": [0, 1], "H": [0]})
    assert basis.norb_per_atom([6, 1, 6]).tolist() == [4, 1, 4]
    with pytest.raises(ValueError, match="N is not in the orbital basis"):
        basis.norb(7)
    with pytest.raises(ValueError, match="unknown element"):
        OrbitalBasis.from_dict({"Xx": [0]})
    with pytest.raises(ValueError, match="unknown shell"):
        OrbitalBasis.from_dict({"C": [-1]})
    with pytest.raises(NotImplementedError, match="l ≤ 2"):
        conversion_matrix("openmx", 3)
