"""File formats: DeepH processed folders (:mod:`.deeph`)."""

from .deeph import DeepHFormatError, read_deeph, write_deeph

__all__ = ["read_deeph", "write_deeph", "DeepHFormatError"]
