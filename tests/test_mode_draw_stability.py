"""benchmarks/mode_draw_stability.py: Γ-mode detection and the report on two force-constant files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from test_phonons import spring_phonons

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "mode_draw_stability.py"


def test_gamma_modes_of_a_3x3_supercell_are_the_unit_cells_12(load_script):
    script = load_script(SCRIPT)
    modes = spring_phonons((3, 3)).supercell_modes()
    flags = [script.at_gamma(modes, k) for k in range(len(modes.frequencies))]
    assert len(flags) == 3 * 36 and sum(flags) == 12  # 4 atoms per unit cell, 3 directions each
    assert all(flags[k] for k in np.flatnonzero(modes.acoustic))  # the rigid translations repeat too


def test_report_finds_no_change_for_equal_files_and_some_for_other_springs(load_script, tmp_path, capsys,
                                                                           monkeypatch):
    script = load_script(SCRIPT)
    a = spring_phonons((3, 3)).save(tmp_path / "a.yaml")
    b = spring_phonons((3, 3), k_inter=(0.45, 0.05)).save(tmp_path / "b.yaml")
    monkeypatch.setattr("sys.argv", ["x", str(a), str(a), str(b), "--supercell", "3", "3", "1"])
    script.main()
    same, other = capsys.readouterr().out.split(" -> ")[1:]
    assert "< 0.99: 0, < 0.5: 0" in same
    assert "displacement difference 0.0000 expected (mass-weighted), 0.0000 measured" in same
    assert "< 0.99: 0," not in other  # stiffer interlayer springs change some patterns
    assert "Cartesian draw basis: 0.0000 expected (mass-weighted), 0.0000 measured" in same
    assert "Cartesian draw basis: 0.0000" not in other
