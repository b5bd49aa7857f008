"""Compile the redaction patterns so that every CPython 3.11+ runs them correctly.

The redaction rules stay linear on hostile text because their loops never give back what
they took: they are written with possessive quantifiers (``X*+``, ``X++``, ``X?+``).
CPython 3.11.0 to 3.11.4 (Debian 12 ships 3.11.2) match a possessive quantifier over a
group that can itself backtrack wrongly (python/cpython#106052, fixed in 3.11.5): on those
versions ``postgres://user:s3cret@db`` and ``password: hunter2`` came out unmasked.
CPython 3.11.5 fixed it by compiling ``X*+`` as the atomic group ``(?>X*)``, which the
``re`` documentation defines as its equivalent. :func:`compile_linear` makes that same
rewrite in the pattern text before compiling, on every version, so one spelling is
compiled and tested everywhere and the patterns stay readable in their possessive form.

:func:`check_engine` runs at import: an interpreter whose ``re`` gets the rewritten forms
wrong cannot mask secrets, so mcp-otel refuses to import there rather than write them.
"""

from __future__ import annotations

import re
import sys

__all__ = ["atomic_spelling", "check_engine", "compile_linear"]

_COUNTED = re.compile(r"\{\d*(?:,\d*)?\}")


def atomic_spelling(pattern: str) -> str:
    """``pattern`` with each possessive quantifier written as an atomic group."""
    out, end = _sequence(pattern, 0)
    if end != len(pattern):
        raise ValueError(f"unbalanced ')' at {end} in {pattern!r}")
    return out


def compile_linear(pattern: str, flags: int = 0) -> re.Pattern[str]:
    return re.compile(atomic_spelling(pattern), flags)


def _sequence(p: str, i: int) -> tuple[str, int]:
    """The alternatives from ``i`` up to the ``)`` that closes them (or the end)."""
    parts: list[str] = []
    n = len(p)
    while i < n and p[i] != ")":
        c = p[i]
        if c == "|":
            parts.append(c)
            i += 1
            continue
        if c == "(":
            body = _group_body_start(p, i)
            if p[body - 1] == ")":  # inline flags such as (?i): no body, no quantifier
                parts.append(p[i:body])
                i = body
                continue
            inner, close = _sequence(p, body)
            if close >= n:
                raise ValueError(f"unclosed group at {i} in {p!r}")
            atom, i = p[i:body] + inner + ")", close + 1
        elif c == "[":
            j = i + 1
            if j < n and p[j] == "^":
                j += 1
            if j < n and p[j] == "]":
                j += 1
            while j < n and p[j] != "]":
                j += 2 if p[j] == "\\" else 1
            if j >= n:
                raise ValueError(f"unclosed character class at {i} in {p!r}")
            atom, i = p[i : j + 1], j + 1
        elif c == "\\":
            atom, i = p[i : i + 2], i + 2
        else:
            atom, i = c, i + 1
        quantifier = ""
        if i < n and p[i] in "*+?":
            quantifier, i = p[i], i + 1
        elif i < n and p[i] == "{" and (m := _COUNTED.match(p, i)):
            quantifier, i = m.group(), m.end()
        if quantifier and i < n and p[i] == "+":
            atom, i = f"(?>{atom}{quantifier})", i + 1
        elif quantifier and i < n and p[i] == "?":
            atom, i = atom + quantifier + "?", i + 1
        else:
            atom += quantifier
        parts.append(atom)
    return "".join(parts), i


def _group_body_start(p: str, i: int) -> int:
    """Where the body of the group opened at ``i`` starts (after its ``(?...`` prefix)."""
    if not p.startswith("(?", i):
        return i + 1
    if p.startswith(("(?:", "(?=", "(?!", "(?>"), i):
        return i + 3
    if p.startswith(("(?<=", "(?<!"), i):
        return i + 4
    if p.startswith("(?P<", i):
        return p.index(">", i) + 1
    end = i + 2  # flags: (?i) or (?-i:...)
    while end < len(p) and p[end] not in ":)":
        end += 1
    return end + 1


def check_engine() -> None:
    """Refuse to run on a ``re`` that gets the atomic spellings wrong.

    The cases are python/cpython#106052's own and the shapes the redaction patterns use
    (alternation inside a loop, a lookahead inside a loop, nested loops): each pair is a
    pattern and a text it must not (None) or must (the match) fully match.
    """
    cases: list[tuple[str, str, str | None]] = [
        ("(?:ab?c)*+", "a", None),
        ("(?:ab?c)*+", "acabc", "acabc"),
        (r"x(?:[^\s/@]++|@(?!h))*+y", "xab@cd@hy", None),
        (r"x(?:[^\s/@]++|@(?!h))*+@hy", "xab@cd@hy", "xab@cd@hy"),
        ("(?:a|ab)*+b", "ab", "ab"),
        ("(?:[a-z]++|[0-9])*+:", "ab1c:", "ab1c:"),
        # what is taken is never given back, unlike a greedy loop
        ("(?:a+)*+a", "aaa", None),
        ("(?:a|ab)?+c", "abc", None),
    ]
    for pattern, text, expected in cases:
        found = compile_linear(pattern).fullmatch(text)
        if (found.group() if found else None) != expected:
            raise ImportError(
                "mcp-otel: this Python's re module matches atomic groups wrongly "
                f"({pattern!r} on {text!r}); secrets could not be masked reliably. "
                f"Python {sys.version.split()[0]} is affected; use CPython 3.11.5 or later "
                "or a distribution build with python/cpython#106052 fixed."
            )
