"""Helpers shared by the test suite."""

from __future__ import annotations

import os
import shutil

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require(condition: object, reason: str) -> None:
    """Skip locally when a real peer is missing; fail under ``CI=true``, where it must exist."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required in CI but missing: {reason}")
    pytest.skip(reason)


def require_program(name: str) -> str:
    """Path of an installed program, or skip (fail in CI) with a clear reason."""
    path = shutil.which(name)
    require(path, f"program {name!r} is not installed")
    assert path is not None
    return path
