"""Import e3nn safely under recent torch.

e3nn 0.4.4 (the version mace-torch pins) loads its constants with a bare ``torch.load``, which
torch ≥ 2.6 refuses by default (``weights_only=True``).  ``import mace`` sets
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` process-wide, after which e3nn imports.  Because that variable
makes every *bare* ``torch.load`` unpickle arbitrary code, this package always passes
``weights_only=True`` explicitly when it loads a file.  Import e3nn through this module only.
"""

import warnings

import mace  # noqa: F401  (must precede e3nn; see module docstring)

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD.*")
    from e3nn import o3  # noqa: E402

__all__ = ["o3"]
