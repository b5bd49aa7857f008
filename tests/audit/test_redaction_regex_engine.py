"""The redaction patterns are compiled in a spelling every CPython 3.11 runs correctly.

CPython 3.11.0-3.11.4 (Debian 12's 3.11.2 among them) match possessive loops over groups
wrongly (python/cpython#106052): URL passwords, Basic credentials and ``password: x``
were left unmasked there. CI runs the whole core suite on Debian's interpreter too (the
lowest-OpenTelemetry environment of .ci/run); these tests pin the rewrite itself.
"""

from __future__ import annotations

import re
import sys

import pytest

from mcp_otel import _regex, redaction
from mcp_otel.redaction import MASK, Redactor


@pytest.mark.parametrize(
    ("possessive", "atomic"),
    [
        (r"[^\s:/@]*+:", r"(?>[^\s:/@]*):"),
        (r"(?:ab?c)*+", r"(?>(?:ab?c)*)"),
        (r"x(?:[^\s/@]++|@(?!h))*+y", r"x(?>(?:(?>[^\s/@]+)|@(?!h))*)y"),
        (r"(?:[A-Z]{4})*+=?+", r"(?>(?:[A-Z]{4})*)(?>=?)"),
        (r"[]\]x]++\S{2,}+", r"(?>[]\]x]+)(?>\S{2,})"),
        (r"(?P<v>[a-z]++)\s++(?-i:B)", r"(?P<v>(?>[a-z]+))(?>\s+)(?-i:B)"),
        (r"(?i)(?<![a-z])[0-9]*?a+b", r"(?i)(?<![a-z])[0-9]*?a+b"),  # nothing possessive
    ],
)
def test_each_possessive_quantifier_becomes_an_atomic_group(possessive: str, atomic: str) -> None:
    assert _regex.atomic_spelling(possessive) == atomic
    re.compile(atomic)


@pytest.mark.parametrize("bad", [r"(ab", r"ab)", r"[ab"])
def test_a_malformed_pattern_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match=r"unclosed|unbalanced"):
        _regex.atomic_spelling(bad)


def _compiled_patterns() -> list[re.Pattern[str]]:
    found = [v for v in vars(redaction).values() if isinstance(v, re.Pattern)]
    found += [pattern for _, pattern in redaction._BRACKETS.values()]
    found.append(Redactor()._colon_key_re)
    return found


def test_no_compiled_redaction_pattern_holds_a_possessive_quantifier() -> None:
    patterns = _compiled_patterns()
    assert len(patterns) > 15
    for pattern in patterns:
        assert _regex.atomic_spelling(pattern.pattern) == pattern.pattern, pattern.pattern


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # python/cpython#106052 left each of these unmasked on CPython 3.11.0-3.11.4
        ("postgres://user:s3cret@db:5432/app", f"postgres://user:{MASK}@db:5432/app"),
        ("https://u:pw@h/x?mail=a@b.c", f"https://u:{MASK}@h/x?mail=a@b.c"),
        ("Authorization: Basic dXNlcjpwYXNz", f"Authorization: Basic {MASK}"),
        ("error: password: hunter2", f"error: password: {MASK}"),
        ("bad args {'api_key': 'S1', 'n': 2}", f"bad args {{'api_key': '{MASK}', 'n': 2}}"),
    ],
)
def test_the_credentials_the_old_engine_missed_are_masked(text: str, expected: str) -> None:
    assert Redactor().clean(text) == expected


def test_the_engine_check_passes_here() -> None:
    _regex.check_engine()


def test_an_engine_that_gets_the_atomic_spelling_wrong_refuses_to_import(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A backtracking spelling stands in for a broken engine: it matches where an atomic
    # group must not, which is what 3.11.0-3.11.4 did with the possessive one.
    def backtracking(pattern: str) -> str:
        return pattern.replace("*+", "*").replace("++", "+").replace("?+", "?")

    monkeypatch.setattr(_regex, "atomic_spelling", backtracking)
    with pytest.raises(ImportError, match=r"CPython 3\.11\.5 or later") as caught:
        _regex.check_engine()
    assert sys.version.split()[0] in str(caught.value)
