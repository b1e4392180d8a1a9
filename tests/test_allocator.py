"""Keeping freed memory (glibc mallopt) and the ``mlepi`` command's use of it."""

from __future__ import annotations

import platform

import pytest

from mlepi_ase import allocator, cli

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


@pytest.mark.skipif(not GLIBC, reason="mallopt settings exist in glibc only")
def test_settings_are_accepted_by_glibc():
    assert allocator.retain_freed_memory() is True


def test_values_outside_a_c_int_are_an_error():
    if not GLIBC:
        assert allocator.retain_freed_memory(trim_threshold=2 ** 31) is False
        return
    with pytest.raises(ValueError, match="2\\*\\*31"):
        allocator.retain_freed_memory(trim_threshold=2 ** 31)


@pytest.mark.parametrize("value, expected", [(None, True), ("1", True), ("0", False), ("false", False),
                                             (" No ", False), ("off", False), ("yes", True)])
def test_environment_switch(monkeypatch, value, expected):
    if value is None:
        monkeypatch.delenv(allocator.ENV_SWITCH, raising=False)
    else:
        monkeypatch.setenv(allocator.ENV_SWITCH, value)
    assert allocator.enabled_by_environment() is expected


@pytest.mark.parametrize("switch, calls", [("1", 1), ("0", 0)])
def test_mlepi_command_keeps_freed_memory_unless_switched_off(monkeypatch, capsys, switch, calls):
    seen = []
    monkeypatch.setattr(cli, "retain_freed_memory", lambda: seen.append(True) or True)
    monkeypatch.setenv(allocator.ENV_SWITCH, switch)
    assert cli.main([]) == 1  # no subcommand: help, exit status 1
    assert len(seen) == calls
