"""The folders the API may read from and write to, and the check every path given over HTTP passes.

A token holder is trusted to queue work, not to reach the whole server: without limits,
`restore` could write into `/etc` and `add` with `policy: delete` could have the workers
delete images anywhere the worker's user may. So the server is given its roots
(AIC_API_ROOTS, folders separated by os.pathsep; `aic-admin serve --root DIR`; `aic-admin
run` passes its watched folder, archive, done folder and AIC_HOME/restored), and a path
given over HTTP is resolved (symbolic links followed, `..` refused) and must lie under one
of them. With no roots, add and restore over HTTP are refused.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

ROOTS_VARIABLE = "AIC_API_ROOTS"


class OutsideRoots(Exception):
    """A path given over HTTP that the server may not touch (answered with 403)."""


def configured_roots(configured: str | None, extra: Iterable[Path] = ()) -> tuple[Path, ...]:
    """AIC_API_ROOTS's folders and `extra`, resolved, without repeats, in order."""
    given = [Path(p) for p in (configured or "").split(os.pathsep) if p.strip()] + list(extra)
    roots: list[Path] = []
    for root in given:
        resolved = root.expanduser().resolve()
        if resolved not in roots:
            roots.append(resolved)
    return tuple(roots)


def inside_roots(given: str | Path, roots: Sequence[Path], *, what: str, must_exist: bool) -> Path:
    """`given` resolved, when it lies under one of `roots`; else OutsideRoots naming it.

    Symbolic links are resolved (strictly when `must_exist`), so a link inside a root that
    points out of it is outside; `..` is refused outright, so a folder made later can't
    change where a checked path leads.
    """
    if not roots:
        raise OutsideRoots(
            f"{what} over HTTP is off: this server has no roots (set {ROOTS_VARIABLE} or "
            "`aic-admin serve --root DIR`)"
        )
    path = Path(given)
    if not path.is_absolute():
        raise OutsideRoots(f"{what}: {given} is not an absolute path on the server")
    if ".." in path.parts:
        raise OutsideRoots(f"{what}: {given} contains `..`")
    try:
        resolved = path.resolve(strict=must_exist)
    except (OSError, RuntimeError) as error:  # missing, or a loop of links
        raise OutsideRoots(f"{what}: {given}: {getattr(error, 'strerror', None) or error}") from error
    if not any(resolved.is_relative_to(root) for root in roots):
        raise OutsideRoots(f"{what}: {given} is outside the server's roots ({ROOTS_VARIABLE})")
    return resolved
