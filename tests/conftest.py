"""Shared pytest fixtures: small structures and a seeded RNG."""

import numpy as np
import pytest

import mlepi_ase  # noqa: F401  (imports mace first where needed, see mlepi_ase/_torch.py)
from mlepi_ase.structures import bilayer_graphene, monolayer_graphene


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261125)


@pytest.fixture
def ab_bilayer():
    """4-atom AB bilayer primitive cell."""
    return bilayer_graphene("AB", size=(1, 1))


@pytest.fixture
def monolayer():
    """2-atom graphene primitive cell."""
    return monolayer_graphene()


@pytest.fixture(scope="session")
def require_reference_force_field() -> None:
    """Skip the test when the LAMMPS reference force field (REBO + KC) cannot run on this machine."""
    try:
        from mlepi_ase.reference import ReferenceForceField

        probe = bilayer_graphene("AB")
        probe.calc = ReferenceForceField()
        probe.get_forces()
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"needs the LAMMPS reference force field, which cannot run here: {exc}")


@pytest.fixture
def run_tutorial():
    """Run ``tutorials/<script>`` in a fresh interpreter (one thread, Agg backend) and require success.

    Returns a function ``(script, output, *args, timeout=900) -> subprocess.CompletedProcess`` that passes
    ``--quick --output <output> *args`` and fails the test, with the tail of the output, on a non-zero exit.
    """
    import os
    import subprocess
    import sys
    from pathlib import Path

    tutorials = Path(__file__).resolve().parents[1] / "tutorials"

    def run(script: str, output, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
        env = dict(os.environ, OMP_NUM_THREADS="1", MPLBACKEND="Agg")
        proc = subprocess.run([sys.executable, str(tutorials / script), "--quick", "--output", str(output), *args],
                              capture_output=True, text=True, timeout=timeout, env=env)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return proc

    return run


@pytest.fixture
def load_script():
    """Import a script file that is not part of the package (a benchmark or an experiment's helper).

    Returns a function ``(path) -> module`` that executes the file as a module named after its stem.
    """
    import importlib.util
    from pathlib import Path

    def load(path):
        path = Path(path)
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load
