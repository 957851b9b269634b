"""Errors raised while reading ``.aic`` files."""

from __future__ import annotations


class AicFormatError(ValueError):
    """A .aic file that is truncated, corrupted, from another model, or hostile.

    A subclass of ``ValueError`` so that callers that already catch bad input
    keep working; readers raise nothing else for bad bytes, so a worker can
    reject a file without guessing which low-level exception a parser leaked.
    """
