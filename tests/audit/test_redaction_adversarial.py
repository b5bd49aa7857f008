"""Hostile text and huge payloads: masking is linear and only what is written is masked.

No timing here (speed is shown by ``benchmarks/bench_redaction.py``). Linearity is shown
by size: every family runs at 512 KiB. The old backtracking patterns were quadratic on 24
of the 51 families (``token=abc`` + 16 KB of hex took 1.2 s); extrapolated from their
16 KB cost, 21 of those exceed pytest's 300 s timeout at this size (``kv-words`` about an
hour) and the other three need 1-3 minutes, so on that code these tests fail by timeout;
now all of them take a few seconds together. Correctness is checked against hand-built
expected texts, and against a frozen copy of the old patterns on small inputs (the rules
themselves did not change).
"""

from __future__ import annotations

import base64
import random
import re
from pathlib import Path
from typing import Any

import orjson
import pytest

from mcp_otel import _json
from mcp_otel.audit import AuditLogger
from mcp_otel.redaction import (
    DEFAULT_PREVIEW_HEAD,
    DEFAULT_PREVIEW_LIMIT,
    MASK,
    PREVIEW_MARGIN,
    Redactor,
    key_parts,
    snapshot,
)

from . import _adversarial as corpus
from ._reference_redaction import reference_mask_text
from .conftest import read_records

SIZE = 512 * 1024


@pytest.fixture(scope="module")
def r() -> Redactor:
    return Redactor()


def _check(case: corpus.Case, out: str) -> None:
    if case.expected is not None:
        assert out == case.expected
    for secret in case.secrets:
        assert secret not in out
    for kept in case.kept:
        assert kept in out


@pytest.mark.parametrize("family", sorted(corpus.FAMILIES))
def test_each_family_is_masked_correctly_at_half_a_megabyte(r: Redactor, family: str) -> None:
    case = corpus.case(family, SIZE)
    assert len(case.text) >= SIZE // 2
    _check(case, r.mask_text(case.text))


@pytest.mark.parametrize("family", sorted(corpus.FAMILIES))
def test_each_family_inside_a_payload(r: Redactor, family: str) -> None:
    """The dict path (its own pre-checks) gives the same text; a preview of the same
    payload shows none of the family's secrets."""
    case = corpus.case(family, 64 * 1024)
    _check(case, r.clean({"v": case.text})["v"])
    preview = r.redact_snapshot(snapshot({"v": case.text}))
    assert preview.truncated
    for secret in case.secrets:
        assert secret not in preview.value


@pytest.mark.parametrize("family", sorted(corpus.FAMILIES))
def test_each_family_matches_the_old_rules_at_small_sizes(r: Redactor, family: str) -> None:
    for size in (1, 2, 7, 40, 200, 700):
        text = corpus.case(family, size).text
        assert r.mask_text(text) == reference_mask_text(r, text), (family, size)


_PIECES = [
    "token", "password", "api_key", "Key", "auth", "Authorization", "Bearer ", "basic ",
    "Basic dXNlcjpwYXNz", "negotiate ", "Token ", "a", "b.", "x-", "_", "1", ".", "-", "=",
    ":", " ", "  ", "\t", "\n", "'", '"', "\\", "{", "}", "[", "]", "(", ")", "://", "http",
    "postgres://", "u:", "p@ss", ":8080", "@", "/", "?", "#", "&", ";", ",", MASK, "${A}",
    "$B", "${C:-d}", "é", "\u212a", "\u017f", "\u0130", "\u0131", "KeyError: ", "Error",
    "//", "abcdefgh", "dXNl", "O", "==", "...", "x.token", "'password': ", '"api_key": ',
]


def test_random_texts_match_the_old_rules(r: Redactor) -> None:
    """Seeded random texts from the characters every rule cares about: the linear rules
    give exactly what the backtracking ones gave."""
    rng = random.Random(20261202)
    for _ in range(10_000):
        text = "".join(rng.choice(_PIECES) for _ in range(rng.randrange(1, 20)))
        assert r.mask_text(text) == reference_mask_text(r, text), text


def test_key_parts_in_one_pass_equal_the_split_per_chunk() -> None:
    def per_chunk(key: str) -> list[str]:
        camel = re.compile(r"[A-Z]+(?=[A-Z][a-z0-9])|[A-Z]?[a-z0-9]+|[A-Z]+")
        return [p.lower() for chunk in re.split(r"[\s_\-.:/]+", key) if chunk
                for p in camel.findall(chunk)]

    rng = random.Random(7)
    alphabet = "aAbBzZ09_-.:/ \t+#é\u0130\u0131\u017f\u212a"
    for _ in range(20_000):
        key = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 14)))
        assert key_parts(key) == per_chunk(key), key
    assert key_parts("Ab" * 50_000 + "Token") == ["ab"] * 50_000 + ["token"]


def test_long_keys_are_not_cached(r: Redactor) -> None:
    """The key cache holds at most 4096 keys of at most 256 characters: hostile keys
    cannot pin megabytes."""
    fresh = Redactor()
    fresh.is_secret_key("k" * 100_000 + "_token")
    fresh.is_secret_key("db_password")
    assert list(fresh._cache) == ["db_password"]


# -- mask_preview -----------------------------------------------------------------------

LIMIT = 1000


def _mark(text: str) -> str:
    return f"... [TRUNCATED: {len(text)} characters total]"


def _head(masked: str, text: str, limit: int = LIMIT) -> str:
    """The documented cut: the first ``limit - len(mark)`` characters of ``masked``,
    minus a mask the cut would split."""
    keep = limit - len(_mark(text))
    k = masked.find(MASK, max(0, keep - len(MASK) + 1), keep + len(MASK) - 1)
    return masked[:k] if 0 <= k < keep else masked[:keep]


def test_mask_preview_of_a_short_text_is_mask_text(r: Redactor) -> None:
    assert r.mask_preview("password=hunter2", 100) == f"password={MASK}"
    assert r.mask_preview("plain", 5) == "plain"
    # masking made it longer than the limit: cut, never inside the mask, the mark included
    text = "token=y " * 10  # 80 characters, 190 once masked; the 4th mask spans the cut
    out = r.mask_preview(text, 100)
    assert out == f"token={MASK} " * 3 + "token=... [TRUNCATED: 80 characters total]"
    assert len(out) <= 100
    assert r.mask_preview("x" * 100, 5) == "... [TRUNCATED: 100 characters total]"  # mark only


def test_mask_preview_is_the_whole_text_masked_then_cut_or_masks_more(r: Redactor) -> None:
    """The preview is the whole text masked, less what lies past the window, and cut;
    or, when something is still open at the window's end (a quote that may close past
    it), the same with its tail masked: it never shows what the whole text hides.

    Random prefixes shorter than the limit, then closers for what they may have opened
    and a plain run that holds the window's end.
    """
    rng = random.Random(11)
    exact = masked_more = shrunk = 0
    for _ in range(1000):
        prefix = "".join(rng.choice(_PIECES) for _ in range(rng.randrange(1, 150)))[:LIMIT]
        text = prefix + " \"'})] " + "x" * (LIMIT + PREVIEW_MARGIN)
        window = LIMIT - len(_mark(text)) + PREVIEW_MARGIN
        past_window = len(text) - window  # plain 'x', never masked
        whole = r.mask_text(text)
        expected = _head(whole[: len(whole) - past_window], text)
        out = r.mask_preview(text, LIMIT)
        assert out.endswith(_mark(text)) and len(out) <= LIMIT
        body = out[: -len(_mark(text))]
        if body == expected:
            exact += 1
            shrunk += len(expected) < LIMIT - len(_mark(text))
            continue
        stem = re.sub(r"['\"]?\*\*\*MASKED\*\*\*['\"]?\Z", "", body)
        assert stem != body and expected.startswith(stem), (text, body)
        masked_more += 1
    assert exact > 900 and masked_more > 0 and shrunk > 0


@pytest.mark.parametrize(
    ("secret_start", "tail"),
    [
        # (text from the start of the credential, the secret part that must not show)
        ("postgres://app:", "p" * 2000 + "@db/x"),
        ("password: \"", "correct horse battery " * 100 + "\""),
        ("{'token': '", "correct horse battery " * 100 + "'}"),
        ("password=\"", "a b c d " * 300 + "\""),
        ("token: {", "'a': 'correct horse', " * 100 + "}"),
        ("Authorization: Bearer ", "A" * 2000),
        ("x Bearer ", "eyJhbGciOi" * 200),
        ("x Basic ", base64.b64encode(b"user:" + b"horse" * 500).decode()),
        ("https://u:", "a@" * 1000 + "host"),
    ],
)
def test_a_credential_running_past_the_margin_is_masked_to_the_cut(
        r: Redactor, secret_start: str, tail: str) -> None:
    """A credential that starts before the cut and ends beyond the masked window: what
    is kept of it is masked (the whole text masks it too); nothing of it shows."""
    for offset in (LIMIT - 200, LIMIT - 40, LIMIT - 1, LIMIT + 10, LIMIT + PREVIEW_MARGIN - 5):
        text = "y" * (offset - len(secret_start)) + " " + secret_start + tail + " after"
        out = r.mask_preview(text, LIMIT)
        assert out.endswith(_mark(text)) and len(out) <= LIMIT
        body = out[: -len(_mark(text))]
        assert re.search(r"(horse|ppp|AAA|eyJ|a@a|a b|dXNl)", body) is None, (offset, body[-80:])
        whole = r.mask_text(text)
        assert re.search(r"(horse|ppp|AAA|eyJ|a@a|a b)", whole) is None  # the same rule


def test_a_credential_ending_within_the_margin_is_masked_as_in_the_whole_text(
        r: Redactor) -> None:
    for offset in range(LIMIT - 30, LIMIT + 30, 7):
        text = "y" * offset + " password=hunter2hunter2 next=1 " + "z" * 5000
        out = r.mask_preview(text, LIMIT)
        assert out == _head(r.mask_text(text), text) + _mark(text)
        assert "hunt" not in out and "r2" not in out.split("password=")[-1][:2]


def test_mask_preview_masks_only_the_window() -> None:
    """Cost bounded by the limit: whatever the text's size, the rules see at most
    ``limit + PREVIEW_MARGIN`` characters of it."""
    seen: list[int] = []

    class Recording(Redactor):
        def _mask(self, text: str, cut: bool) -> str:
            seen.append(len(text))
            return super()._mask(text, cut)

    rec = Recording()
    for size in (10_000, 1_000_000, 10_000_000):
        seen.clear()
        text = "token=s3cr3t " + corpus.HEX * (size // 16)
        out = rec.mask_preview(text, LIMIT)
        assert seen == [LIMIT - len(_mark(text)) + PREVIEW_MARGIN] and len(out) <= LIMIT
        assert out.startswith(f"token={MASK} 0123") and "s3cr3t" not in out


# -- payload previews ---------------------------------------------------------------------


def _old_preview(r: Redactor, value: Any) -> Any:
    """The old algorithm: clean everything, encode, cut the JSON."""
    encoded = orjson.dumps(value)
    cleaned = r.clean(orjson.loads(encoded))
    out = _json.dumps(cleaned)
    if len(encoded) <= r.preview_limit or len(out) <= r.preview_limit:
        return cleaned
    head = out[: r.preview_head].decode("utf-8", "ignore")
    return f"{head}... [TRUNCATED: {len(encoded)} bytes total]"


def _random_payload(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(6 if depth < 4 else 3)
    if kind == 0:
        return rng.randrange(-10**6, 10**6)
    if kind == 1:  # text that needs no masking, or whose secret is shorter than the mask
        return rng.choice(["plain words", "é" * rng.randrange(40), "id=7", "token=k",
                           "Bearer abcdefg", "postgres://u:pw@h/db", "a" * rng.randrange(300)])
    if kind == 2:
        return rng.choice([None, True, 1.5])
    if kind == 3:
        return [_random_payload(rng, depth + 1) for _ in range(rng.randrange(12))]
    if kind == 4:
        return ["X-Api-Key", "k"]
    keys = ["name", "password", "apiKey", "items", "n", "max_tokens", "é"]
    return {rng.choice(keys) + str(i): _random_payload(rng, depth + 1)
            for i in range(rng.randrange(10))}


def test_previews_equal_the_old_clean_then_cut_where_nothing_shrinks() -> None:
    """Payloads whose masks are no shorter than what they replace (so the first
    ``preview_head`` bytes come from the same items): the bounded walk writes exactly
    what cleaning everything and then cutting wrote."""
    rng = random.Random(4096)
    r = Redactor(preview_limit=600, preview_head=300)
    truncated = 0
    for _ in range(700):
        value = {"args": [_random_payload(rng) for _ in range(rng.randrange(1, 8))]}
        expected = _old_preview(r, value)
        assert r.redact(value).value == expected
        assert r.redact_snapshot(snapshot(value)).value == expected
        truncated += isinstance(expected, str) and expected.endswith("bytes total]")
    assert truncated > 150  # the comparison covered many previews


def test_a_payload_that_masking_shrinks_under_the_limit_is_written_whole(r: Redactor) -> None:
    value = {"password": "x" * 100_000, "n": 1}
    red = r.redact(value)
    assert red.value == {"password": MASK, "n": 1} and not red.truncated
    assert red.original_bytes == len(orjson.dumps(value))


def test_a_string_cut_for_the_preview_makes_a_preview(r: Redactor) -> None:
    """A string longer than the rest of the preview is cut before masking, so the
    payload becomes a preview even when masking the whole string would have shortened
    it under the limit (the safe side: docs/audit.md)."""
    value = {"dsn": "password=" + "x" * 10_000}
    red = r.redact(value)
    assert red.truncated
    size = len(orjson.dumps(value))
    assert red.value == f'{{"dsn":"password={MASK}"}}... [TRUNCATED: {size} bytes total]'


def test_only_what_the_preview_can_show_is_masked() -> None:
    """However large the payload (here up to 10 MB in strings, keys and list items),
    the text rules see at most ``preview_limit + PREVIEW_MARGIN`` characters of it and
    the walk stops after a bounded number of items."""
    seen: list[int] = []

    class Recording(Redactor):
        def _mask(self, text: str, cut: bool) -> str:
            seen.append(len(text))
            return super()._mask(text, cut)

    rec = Recording()
    hex_run = "token=s3cr3t " + corpus.HEX * 62_500  # 1 MB
    payloads = [
        {"q": hex_run},
        {"items": [hex_run] * 10},
        {"items": ["a=b c:d"] * 1_000_000},
        {f"k{i}=v": "token: x" for i in range(200_000)},
        [{"password": hex_run, "note": hex_run}] * 5,
        {"deep": [[["x=1"] * 3] * 3] * 30_000},
    ]
    for value in payloads:
        seen.clear()
        red = rec.redact_snapshot(snapshot(value))
        assert red.truncated
        assert sum(seen) <= DEFAULT_PREVIEW_LIMIT + 1 + PREVIEW_MARGIN, sum(seen)
        assert "s3cr3t" not in red.value
        assert len(red.value) <= DEFAULT_PREVIEW_HEAD + 64


def test_a_secret_straddling_the_preview_head_does_not_show(r: Redactor) -> None:
    for pad in range(DEFAULT_PREVIEW_HEAD - 40, DEFAULT_PREVIEW_HEAD + 10, 3):
        value = {"a": "y" * pad + " password=hunter2hunter2 x", "b": "z" * 8000}
        red = r.redact(value)
        assert red.truncated and "hunt" not in red.value and "er2" not in red.value


def test_key_rules_hold_in_previews(r: Redactor) -> None:
    big = "z" * 3000
    value = {"headers": [["X-Api-Key", "sk-live-1"], ["Accept", "json"]],
             "nested": {"token": {"a": "t0k3n"}, "env": {"password": "${DB_PW}"}},
             "filler": [big, big]}
    red = r.redact(value)
    assert red.truncated
    assert red.value.startswith(
        '{"headers":[["X-Api-Key","***MASKED***"],["Accept","json"]],'
        '"nested":{"token":"***MASKED***","env":{"password":"${DB_PW}"}},"filler":["zzz')
    deep: Any = "password=hunter2"
    for _ in range(80):
        deep = [deep]
    red = r.redact({"d": deep, "pad": big * 2})
    assert "[DEPTH LIMIT]" in red.value and "hunter2" not in red.value


# -- through the audit trail ------------------------------------------------------------


@pytest.mark.parametrize("wait", ["written", "queued"])
async def test_log_tool_call_with_an_adversarial_argument(tmp_path: Path, wait: str) -> None:
    """One call per family carries 60 KB of hostile text: each record is a masked
    preview with the original size (the caller cost is in the benchmark)."""
    a = AuditLogger(tmp_path, wait=wait, otlp=False)  # type: ignore[arg-type]
    names = sorted(corpus.FAMILIES)
    for name in names:
        await a.log_tool_call("t", arguments={"q": corpus.case(name, 60_000).text})
    await a.log_tool_error("t", error=corpus.case("kv-hex", 60_000).text)
    a.shutdown()
    recs = [rec for rec in read_records(tmp_path) if rec["event"] != "session_end"]
    assert len(recs) == len(names) + 1
    for name, rec in zip(names, recs, strict=False):
        case = corpus.case(name, 60_000)
        assert rec["arguments_truncated"] is True
        assert rec["bytes_in"] == len(orjson.dumps({"q": case.text}))
        assert rec["arguments"].endswith(f"... [TRUNCATED: {rec['bytes_in']} bytes total]")
        for secret in case.secrets:
            assert secret not in rec["arguments"], name
    assert recs[-1]["error_truncated"] is True
    assert recs[-1]["error"].startswith(f'"token={MASK} 0123')
