"""The one rule for every mcp-otel setting: argument, else environment variable, else default.

Why one module: the rule used to be re-implemented five times with five behaviours
(``MCP_OTEL_AUDIT_OTLP=off`` meant *on*, ``queue_timeout=0`` silently became 30 s, some
modules warned on stderr, some through logging, some not at all). Here:

* an explicit argument is used as given; ``None`` means "not given" and is the only value
  that falls through to the environment, so ``0`` and ``False`` are values;
* an invalid explicit argument raises ``ValueError`` (a programming error the caller can fix);
* an unset or blank variable means the default;
* an invalid variable keeps the default with one line on stderr (fd 2, once per name and
  value): a deployment typo must never stop the host server;
* booleans accept ``1/true/yes/on`` and ``0/false/no/off`` in any case, nothing else.

The environment is read when a component is built, never cached here, so tests and hosts
that set a variable before constructing see it.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterable
from typing import TypeVar

TRUE: frozenset[str] = frozenset({"1", "true", "yes", "on"})
FALSE: frozenset[str] = frozenset({"0", "false", "no", "off"})

_N = TypeVar("_N", int, float)
_S = TypeVar("_S", str, None)
_warned: set[tuple[str, str]] = set()


def stderr_line(message: str) -> None:
    """One diagnostic line straight to fd 2.

    Why not ``sys.stderr`` or logging: the host may have replaced ``sys.stderr`` or routed
    logging into the very pipeline being configured, and stdout belongs to stdio servers'
    protocol.
    """
    with contextlib.suppress(OSError):
        os.write(2, (message.rstrip("\n") + "\n").encode("utf-8", "backslashreplace"))


def warn_invalid(name: str, raw: str, fallback: object, expected: str) -> None:
    """Say once per (variable, value) that an environment value was ignored."""
    if (name, raw) in _warned:
        return
    _warned.add((name, raw))
    stderr_line(f"mcp-otel: ignoring {name}={raw!r} ({expected}); using {fallback!r}")


def env_text(name: str) -> str | None:
    """The variable's value without surrounding blanks; ``None`` when unset or blank."""
    value = os.environ.get(name)
    if value is None:
        return None
    value = value.strip()
    return value or None


def parse_bool(raw: str) -> bool | None:
    """``True``/``False`` for the accepted spellings, ``None`` for anything else."""
    lowered = raw.strip().lower()
    if lowered in TRUE:
        return True
    if lowered in FALSE:
        return False
    return None


def env_bool(name: str, default: bool) -> bool:
    raw = env_text(name)
    if raw is None:
        return default
    value = parse_bool(raw)
    if value is None:
        warn_invalid(name, raw, default, "expected true/false, 1/0, yes/no or on/off")
        return default
    return value


def bool_setting(value: bool | None, name: str, default: bool, *, arg: str) -> bool:
    """An explicit ``value`` (must be a bool), else ``name``, else ``default``."""
    if value is None:
        return env_bool(name, default)
    if not isinstance(value, bool):
        raise ValueError(f"{arg} must be True or False, not {value!r}")
    return value


def _number_ok(value: float, minimum: float, maximum: float | None, inclusive: bool) -> bool:
    if isinstance(value, float) and not math.isfinite(value):
        return False
    if value < minimum or (not inclusive and value == minimum):
        return False
    return maximum is None or value <= maximum


def _describe(kind: type, minimum: float, maximum: float | None, inclusive: bool) -> str:
    noun = "an integer" if kind is int else "a finite number"
    bound = f">= {minimum:g}" if inclusive else f"> {minimum:g}"
    upper = f" and <= {maximum:g}" if maximum is not None else ""
    return f"expected {noun} {bound}{upper}"


def env_number(
    name: str,
    default: _N,
    kind: type[_N],
    *,
    minimum: float = 0,
    maximum: float | None = None,
    inclusive: bool = True,
) -> _N:
    """An ``int`` or ``float`` variable within bounds; anything else keeps ``default``."""
    raw = env_text(name)
    if raw is None:
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or not _number_ok(value, minimum, maximum, inclusive):
        warn_invalid(name, raw, default, _describe(kind, minimum, maximum, inclusive))
        return default
    return value


def number_setting(
    value: _N | None,
    name: str,
    default: _N,
    kind: type[_N],
    *,
    minimum: float = 0,
    maximum: float | None = None,
    inclusive: bool = True,
    arg: str,
) -> _N:
    """An explicit number (checked against the same bounds), else ``name``, else ``default``."""
    if value is None:
        return env_number(
            name, default, kind, minimum=minimum, maximum=maximum, inclusive=inclusive
        )
    acceptable = (int,) if kind is int else (int, float)
    if isinstance(value, bool) or not isinstance(value, acceptable) or not _number_ok(
        value, minimum, maximum, inclusive
    ):
        expected = _describe(kind, minimum, maximum, inclusive).removeprefix("expected ")
        raise ValueError(f"{arg} must be {expected}, not {value!r}")
    return kind(value)


def env_choice(name: str, allowed: Iterable[str], default: _S) -> str | _S:
    """A variable that names one of ``allowed`` (any case); anything else keeps ``default``."""
    raw = env_text(name)
    if raw is None:
        return default
    options = sorted(allowed)
    if raw.lower() in options:
        return raw.lower()
    warn_invalid(name, raw, default, f"expected one of {', '.join(options)}")
    return default


def choice_setting(
    value: str | None, name: str, allowed: Iterable[str], default: str, *, arg: str
) -> str:
    """An explicit choice (must be one of ``allowed``), else ``name``, else ``default``."""
    options = frozenset(allowed)
    if value is None:
        return env_choice(name, options, default)
    if value not in options:
        raise ValueError(f"{arg} must be one of {sorted(options)}, not {value!r}")
    return value

