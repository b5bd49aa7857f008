"""Fork handling in one module: the current process id and mcp-otel's at-fork hooks.

Why one module: a forked child inherits locks another thread held at the fork, queues that
belong to the parent's writer threads, and providers whose exporters write the parent's
files. Eight modules used to register their own ``os.register_at_fork`` hooks, each
running in whatever order the modules happened to be imported. Here every hook names a
*stage*, and stages run in a fixed order in the child (and in reverse before the fork):
the process id first, then the file locks, the exporters' counters, the shared pipeline,
and the components (audit, telemetry, cache) built on all of those.

A hook that raises is reported on stderr and the others still run: a child must come up
even when one component cannot be reset.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass

from mcp_otel._settings import stderr_line

#: Stages in the order their ``after_in_child`` / ``after_in_parent`` hooks run.
FILES = 10
EXPORTERS = 20
PIPELINE = 30
COMPONENTS = 40

Hook = Callable[[], object]

_pid = os.getpid()


def pid() -> int:
    """This process's id, kept current by the at-fork hook (``os.getpid()`` is a system
    call; this is read on every audit record and telemetry event)."""
    return _pid


@dataclass(frozen=True)
class _Hooks:
    stage: int
    seq: int
    before: Hook | None
    after_in_parent: Hook | None
    after_in_child: Hook | None


_registry: tuple[_Hooks, ...] = ()
_registry_lock = threading.Lock()


def register(
    stage: int,
    *,
    before: Hook | None = None,
    after_in_parent: Hook | None = None,
    after_in_child: Hook | None = None,
) -> None:
    """Run these hooks around every ``os.fork()`` from now on, at ``stage``."""
    global _registry
    with _registry_lock:
        entry = _Hooks(stage, len(_registry), before, after_in_parent, after_in_child)
        _registry = tuple(sorted((*_registry, entry), key=lambda h: (h.stage, h.seq)))


def _run(hooks: tuple[_Hooks, ...], attr: str) -> None:
    for entry in hooks:
        hook = getattr(entry, attr)
        if hook is None:
            continue
        try:
            hook()
        except Exception as exc:  # one component's reset must not stop the others
            stderr_line(f"mcp-otel: at-fork hook {attr} failed: {exc!r}")


def _before() -> None:
    _run(tuple(reversed(_registry)), "before")


def _after_in_parent() -> None:
    _run(_registry, "after_in_parent")


def _after_in_child() -> None:
    global _pid
    _pid = os.getpid()
    _run(_registry, "after_in_child")


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before, after_in_parent=_after_in_parent, after_in_child=_after_in_child
    )
