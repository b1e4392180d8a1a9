"""Atomic file writes, content digests and plain-Python conversion shared by the package's writers.

Every result file (model files, checkpoints, datasets, JSON/YAML summaries, figures) is written to a
temporary file in the destination folder and renamed over the target, so an interrupted run never
leaves a truncated file behind: a reader sees either the old file or the complete new one.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

__all__ = ["atomic_write", "atomic_torch_save", "atomic_json", "file_sha256", "to_plain"]


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 digest of a file's bytes (read in 1 MiB blocks): identifies a model file by content,
    not by path, e.g. to tell whether a resumed run still uses the same model."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write(path: str | os.PathLike, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it to ``path``.

    The parent folder is created; the file gets the permissions of a normally created file
    (``0o666`` minus the umask; ``mkstemp`` would leave ``0o600``).  On any error the temporary
    file is removed and the exception propagates.  Returns ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj, path)`` through :func:`atomic_write`."""
    import torch

    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def atomic_json(path: str | os.PathLike, data: Any, indent: int = 2) -> Path:
    """``json.dump(data)`` to ``path`` through :func:`atomic_write`."""

    def write(tmp: Path) -> None:
        with open(tmp, "w") as fh:
            json.dump(data, fh, indent=indent)

    return atomic_write(path, write)


def to_plain(value: Any) -> Any:
    """Nested containers with numpy scalars/arrays and tuples → plain Python (str keys, lists).

    Plain values (str, int, float, bool, None) pass through; any other object becomes its ``str``,
    so the result can always be stored by ``torch.save`` for ``weights_only=True`` loading, JSON or HDF5
    attributes.
    """
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
