"""Any value, in any field of any log method: never an exception into the host, always a
record in the file (with the documented safe form, cut to the documented cap) that
``verify --strict`` accepts. Issue 12, items 2 and 3."""

from __future__ import annotations

import math
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from mcp_otel import integrity
from mcp_otel.audit import AuditLogger
from mcp_otel.limits import (
    CUT_MARKER,
    MAX_ID_CHARS,
    MAX_NAME_CHARS,
    MAX_URI_CHARS,
    MAX_VALUE_CHARS,
    cut,
)
from mcp_otel.redaction import MASK, Redactor
from tests._odd_values import (
    HUGE,
    HUGE_TEXT,
    ODD_VALUES,
    BadInt,
    BadStr,
    NoEquality,
    NoItems,
    NoMapping,
    NoTruth,
    Unprintable,
    deep_list,
)
from tests.audit.conftest import read_records

Call = Callable[[AuditLogger], Awaitable[Any]]


def _records(logger: AuditLogger, directory: Path) -> list[dict[str, Any]]:
    """Shut down, check the whole trail strictly, return its records without the end."""
    logger.shutdown(10.0)
    report = integrity.verify_paths([directory], strict=True)
    assert report.ok, [f.message for f in report.errors]
    records = read_records(directory)
    assert records[-1]["event"] == "session_end"
    return records[:-1]


# ------------------------------------------------------------------ huge integers

HUGE_CALLS: dict[str, tuple[Call, str]] = {
    "tool": (lambda a: a.log_tool_call(HUGE), "tool"),
    "tool_name": (lambda a: a.log_tool_call(tool_name=HUGE), "tool_name"),
    "params_bytes": (lambda a: a.log_tool_call("t", params_bytes=HUGE), "bytes_in"),
    "correlation_id": (lambda a: a.log_tool_call("t", correlation_id=HUGE), "correlation_id"),
    "result.duration_ms": (lambda a: a.log_tool_result("t", duration_ms=HUGE), "duration_ms"),
    "result_bytes": (lambda a: a.log_tool_result("t", result_bytes=HUGE), "bytes_out"),
    "event_id": (lambda a: a.log_tool_result("t", event_id=HUGE), "correlation_id"),
    "error.duration_ms": (lambda a: a.log_tool_error("t", duration_ms=HUGE), "duration_ms"),
    "error_code": (lambda a: a.log_tool_error("t", error_code=HUGE), "error_code"),
    "error": (lambda a: a.log_tool_error("t", error=HUGE), "error"),
    "resource_uri": (lambda a: a.log_resource_access(HUGE, "read", True), "resource_uri"),
    "operation": (lambda a: a.log_resource_access("u", HUGE, True), "operation"),
}


@pytest.mark.parametrize("case", HUGE_CALLS, ids=list(HUGE_CALLS))
async def test_a_huge_int_in_any_field_is_written_as_its_summary(
        case: str, make_audit: Callable[..., AuditLogger], tmp_path: Path) -> None:
    """``str()`` of an int over 4,300 digits raises ValueError: the call used to raise it
    and lose the record."""
    call, field = HUGE_CALLS[case]
    logger = make_audit()
    await call(logger)
    (record,) = _records(logger, tmp_path / "audit")
    assert record[field] == HUGE_TEXT


@pytest.mark.parametrize("wait", ["written", "queued"])
async def test_a_huge_int_inside_arguments_changes_only_that_value(
        wait: str, make_audit: Callable[..., AuditLogger], tmp_path: Path) -> None:
    """It used to turn the whole payload into ``"<dict object at 0x...>"``."""
    logger = make_audit(wait=wait)
    await logger.log_tool_call("t", arguments={"n": HUGE, "m": -HUGE, "ok": [1, "x"],
                                               "password": "hunter2"})
    await logger.log_tool_result("t", result=[HUGE, 2])
    call, result = _records(logger, tmp_path / "audit")
    assert call["arguments"] == {"n": HUGE_TEXT, "m": "<negative " + HUGE_TEXT[1:],
                                 "ok": [1, "x"], "password": MASK}
    assert result["result"] == [HUGE_TEXT, 2]


def test_the_int_summary_follows_a_lower_interpreter_limit(
        make_audit: Callable[..., AuditLogger], tmp_path: Path) -> None:
    """A host may lower ``sys.set_int_max_str_digits``: a 1,000-digit int is then refused
    by ``str()`` although it is under our own bit limit."""
    import asyncio

    previous = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(640)
    try:
        logger = make_audit()
        asyncio.run(logger.log_tool_call(10**999, arguments={"n": 10**999}))
    finally:
        sys.set_int_max_str_digits(previous)
    (record,) = _records(logger, tmp_path / "audit")
    assert record["tool"] == "<int of 3319 bits, ~1000 digits>"
    assert record["arguments"] == {"n": "<int of 3319 bits, ~1000 digits>"}


# ------------------------------------------------------------------ misbehaving objects

ODD_CALLS: dict[str, tuple[Call, str, Any]] = {
    # a truth value that raises where the logger tests for a missing value
    "tool_name no bool": (lambda a: a.log_tool_call("t", tool_name=NoTruth()),
                          "tool", "<unrepresentable NoTruth>"),
    "correlation_id no bool": (lambda a: a.log_tool_call("t", correlation_id=NoTruth()),
                               "correlation_id", "<unrepresentable NoTruth>"),
    "result correlation_id no bool": (
        lambda a: a.log_tool_result("t", correlation_id=NoTruth()),
        "correlation_id", "<unrepresentable NoTruth>"),
    "success no bool": (lambda a: a.log_tool_result("t", success=NoTruth()),
                        "success", "<unrepresentable NoTruth>"),
    "error no bool": (lambda a: a.log_tool_error("t", error=NoTruth()),
                      "error_code", "ERROR"),
    "resource success no bool": (lambda a: a.log_resource_access("u", "read", NoTruth()),
                                 "status", "unknown"),
    # containers and subclasses whose own methods raise
    "tool dict without items": (lambda a: a.log_tool_call(NoItems(a=1)), "tool", {"a": 1}),
    "tool mapping without items": (lambda a: a.log_tool_call(NoMapping()),
                                   "tool", "<unrepresentable NoMapping>"),
    "tool int subclass": (lambda a: a.log_tool_call(BadInt(7)), "tool", 7),
    "tool str subclass": (lambda a: a.log_tool_call(BadStr("name")), "tool", "name"),
    "duration int subclass": (lambda a: a.log_tool_result("t", duration_ms=BadInt(5)),
                              "duration_ms", 5),
    "uri str subclass": (lambda a: a.log_resource_access(BadStr("file:///x"), "read", True),
                         "resource_uri", "file:///x"),
    "error dict without items": (lambda a: a.log_tool_error("t", error=[NoItems(a=1)]),
                                 "error", "[{'a': 1}]"),
    "error mapping without items": (lambda a: a.log_tool_error("t", error=[NoMapping()]),
                                    "error", "['<unrepresentable NoMapping>']"),
    "error unprintable int-like": (lambda a: a.log_tool_error("t", error=BadInt(3)),
                                   "error", "3"),
}


@pytest.mark.parametrize("case", ODD_CALLS, ids=list(ODD_CALLS))
async def test_misbehaving_objects_get_their_safe_form(
        case: str, make_audit: Callable[..., AuditLogger], tmp_path: Path) -> None:
    call, field, expected = ODD_CALLS[case]
    logger = make_audit()
    await call(logger)
    (record,) = _records(logger, tmp_path / "audit")
    assert record[field] == expected


async def test_a_given_correlation_id_is_returned_unchanged_whatever_is_written(
        make_audit: Callable[..., AuditLogger], tmp_path: Path) -> None:
    logger = make_audit()
    odd = NoEquality()
    assert await logger.log_tool_call("t", correlation_id=odd) is odd
    assert await logger.log_tool_call("t", correlation_id=HUGE) == HUGE
    first, second = _records(logger, tmp_path / "audit")
    assert first["correlation_id"] == "<unrepresentable NoEquality>"
    assert second["correlation_id"] == HUGE_TEXT


@pytest.mark.parametrize("name", ODD_VALUES, ids=list(ODD_VALUES))
async def test_every_odd_value_in_every_parameter_is_written(
        name: str, make_audit: Callable[..., AuditLogger], tmp_path: Path) -> None:
    """Each odd value in each parameter of each method: one record per call, verified."""
    value = ODD_VALUES[name]
    logger = make_audit()
    calls: list[Call] = [
        lambda a: a.log_tool_call(value, value, value, value, value),
        lambda a: a.log_tool_call(tool=value, arguments={"k": value, "l": [value]}),
        lambda a: a.log_tool_result(value, value, value, value, value, value, value, value),
        lambda a: a.log_tool_error(value, value, value, value, value, value),
        lambda a: a.log_tool_error("t", error={"e": value}),
        lambda a: a.log_resource_access(value, value, value),
    ]
    for call in calls:
        await call(logger)
    records = _records(logger, tmp_path / "audit")
    assert [r["event"] for r in records] == [
        "tool_call", "tool_call", "tool_result", "tool_error", "tool_error", "resource_access"]


@pytest.mark.parametrize("timeout", [math.nan, -1.0, HUGE, math.inf, Unprintable(), "x"],
                         ids=["nan", "negative", "huge", "inf", "unprintable", "text"])
def test_flush_and_shutdown_accept_any_timeout(
        timeout: Any, make_audit: Callable[..., AuditLogger], tmp_path: Path) -> None:
    """NaN gave ``ValueError``, a huge int or inf ``OverflowError``, an object ``TypeError``:
    a timeout that is no usable number is the default, a huge one is clamped."""
    import asyncio

    logger = make_audit(wait="queued")
    asyncio.run(logger.log_tool_call("t"))
    assert logger.force_flush(timeout) is True
    assert asyncio.run(logger.flush(timeout)) is True
    logger.shutdown(timeout)
    (record,) = _records(logger, tmp_path / "audit")
    assert record["tool"] == "t"


# ------------------------------------------------------------------ caps

def _cut_of(text: str, cap: int) -> str:
    return text[:cap] + CUT_MARKER.format(n=len(text) - cap)


async def test_a_50_mb_tool_name_gives_a_small_line(
        make_audit: Callable[..., AuditLogger], tmp_path: Path) -> None:
    """It gave a 100 MB line (``tool`` and ``tool_name`` both carry it)."""
    name = "x" * 50_000_000
    logger = make_audit()
    await logger.log_tool_call(name)
    (record,) = _records(logger, tmp_path / "audit")
    assert record["tool"] == record["tool_name"] == _cut_of(name, MAX_NAME_CHARS)
    assert record["tool"].endswith("…[cut: 49999744 chars]")
    (path,) = (tmp_path / "audit").glob("*.jsonl")
    assert path.stat().st_size < 8192  # the record and the session-end record


CAPPED: dict[str, tuple[Callable[[AuditLogger, str], Awaitable[Any]], str, int]] = {
    "tool": (lambda a, s: a.log_tool_result(s), "tool", MAX_NAME_CHARS),
    "correlation_id": (lambda a, s: a.log_tool_call("t", correlation_id=s),
                       "correlation_id", MAX_ID_CHARS),
    "event_id": (lambda a, s: a.log_tool_error("t", event_id=s), "correlation_id",
                 MAX_ID_CHARS),
    "error_code": (lambda a, s: a.log_tool_error("t", error_code=s), "error_code",
                   MAX_NAME_CHARS),
    "duration_ms": (lambda a, s: a.log_tool_result("t", duration_ms=s), "duration_ms",
                    MAX_VALUE_CHARS),
    "result_bytes": (lambda a, s: a.log_tool_result("t", result_bytes=s), "bytes_out",
                     MAX_VALUE_CHARS),
    "resource_uri": (lambda a, s: a.log_resource_access(s, "read", True), "resource_uri",
                     MAX_URI_CHARS),
    "operation": (lambda a, s: a.log_resource_access("u", s, False), "operation",
                  MAX_NAME_CHARS),
}


@pytest.mark.parametrize("case", CAPPED, ids=list(CAPPED))
async def test_every_free_text_field_is_cut_at_its_cap_with_a_marker(
        case: str, make_audit: Callable[..., AuditLogger], tmp_path: Path) -> None:
    call, field, cap = CAPPED[case]
    logger = make_audit()
    await call(logger, "y" * cap)  # at the cap: kept whole
    await call(logger, "z" * (cap + 1))
    await call(logger, "w" * 1_000_000)
    at_cap, over, far_over = _records(logger, tmp_path / "audit")
    assert at_cap[field] == "y" * cap
    assert over[field] == "z" * cap + "…[cut: 1 chars]"
    assert far_over[field] == cut("w" * 1_000_000, cap)


async def test_a_secret_in_a_long_field_is_masked_before_the_cut(
        make_audit: Callable[..., AuditLogger], tmp_path: Path) -> None:
    logger = make_audit()
    uri = "postgres://app:s3cret@db/x?" + "q" * 1_000_000
    await logger.log_resource_access(uri, "read", True)
    (record,) = _records(logger, tmp_path / "audit")
    assert record["resource_uri"].startswith(f"postgres://app:{MASK}@db/x?qqq")
    assert "s3cret" not in record["resource_uri"]
    assert len(record["resource_uri"]) <= MAX_URI_CHARS + len("…[cut: 1000000 chars]")


async def test_a_structure_in_a_scalar_field_is_kept_when_small_and_cut_as_json_when_not(
        make_audit: Callable[..., AuditLogger], tmp_path: Path) -> None:
    logger = make_audit()
    await logger.log_tool_call({"name": "t", "password": "p"})
    await logger.log_tool_call(["v"] * 1000)
    small, big = _records(logger, tmp_path / "audit")
    assert small["tool"] == {"name": "t", "password": MASK}
    text = '["' + '","'.join(["v"] * 1000) + '"]'
    assert big["tool"] == cut(text, MAX_NAME_CHARS)


@pytest.mark.parametrize("wait", ["written", "queued"])
async def test_a_deep_value_with_a_null_beside_it_is_written_as_hashed(
        wait: str, make_audit: Callable[..., AuditLogger], tmp_path: Path) -> None:
    """The file encoder sent any record deeper than 64 levels that held a ``null``
    (``arguments: null`` here) through its slow path, which cut the deep value: the line
    no longer matched its hash (found by tests/properties)."""
    logger = make_audit(wait=wait)
    await logger.log_tool_call(deep_list(64))
    (record,) = _records(logger, tmp_path / "audit")  # verified strictly, hashes included
    assert record["tool"] == Redactor().clean(deep_list(64))  # 65 levels, whole


async def test_a_record_that_cannot_be_built_is_counted_and_declared_lost(
        make_audit: Callable[..., AuditLogger], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The last resort, for a bug rather than a value (every value has a safe form): the
    call returns normally, and the loss is counted and declared in the next record."""
    logger = make_audit()

    def broken(value: Any) -> Any:
        raise RuntimeError("bug")

    monkeypatch.setattr(logger, "_freeze", broken)
    assert await logger.log_tool_call("t", correlation_id="c1") == "c1"
    await logger.log_tool_result("t")
    monkeypatch.undo()
    assert logger.get_session_summary()["records_lost"] == 2
    await logger.log_tool_call("after")
    logger.shutdown(10.0)
    records = read_records(tmp_path / "audit")
    assert records[0]["tool"] == "after"
    assert records[0]["audit_lost"] == {"count": 2, "unqueued": 2}
    report = integrity.verify_paths([tmp_path / "audit"])
    assert report.ok and report.sessions[records[0]["session_id"]].declared_lost == 2
