"""The one settings rule (mcp_otel._settings) and the components that follow it."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcp_otel import AuditLogger, _settings

VAR = "MCP_OTEL_TEST_SETTING"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1", True), ("TRUE", True), (" yes ", True), ("On", True),
     ("0", False), ("false", False), ("NO", False), ("off", False)],
)
def test_every_boolean_spelling_is_read_the_same_way(
    monkeypatch: pytest.MonkeyPatch, raw: str, expected: bool
) -> None:
    monkeypatch.setenv(VAR, raw)
    assert _settings.env_bool(VAR, not expected) is expected


@pytest.mark.parametrize("raw", ["", "   "])
def test_unset_or_blank_means_the_default(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv(VAR, raw)
    assert _settings.env_bool(VAR, True) is True
    assert _settings.env_number(VAR, 7, int) == 7
    assert _settings.env_choice(VAR, {"a", "b"}, "a") == "a"


@pytest.mark.parametrize(
    ("call", "raw"),
    [
        (lambda: _settings.env_bool(VAR, True), "maybe"),
        (lambda: _settings.env_number(VAR, 5, int, minimum=1), "0"),
        (lambda: _settings.env_number(VAR, 5, int), "1.5"),
        (lambda: _settings.env_number(VAR, 2.0, float), "nan"),
        (lambda: _settings.env_number(VAR, 2.0, float), "inf"),
        (lambda: _settings.env_number(VAR, 2.0, float, minimum=0, inclusive=False), "0.0"),
        (lambda: _settings.env_choice(VAR, {"a", "b"}, "a"), "c"),
    ],
)
def test_an_invalid_variable_keeps_the_default_and_says_so_on_stderr(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str], call: object, raw: str
) -> None:
    default = call()  # type: ignore[operator]
    monkeypatch.setenv(VAR, raw)
    assert call() == default  # type: ignore[operator]
    out, err = capfd.readouterr()
    assert out == ""
    assert f"{VAR}={raw!r}" in err and "ignoring" in err


def test_zero_is_a_value_not_a_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(VAR, "0")
    assert _settings.env_number(VAR, 30.0, float) == 0.0
    assert _settings.number_setting(0, VAR, 30.0, float, arg="timeout") == 0
    assert _settings.bool_setting(False, VAR, True, arg="flag") is False


def test_an_explicit_argument_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(VAR, "9")
    assert _settings.number_setting(3, VAR, 1, int, arg="n") == 3
    assert _settings.number_setting(None, VAR, 1, int, arg="n") == 9


@pytest.mark.parametrize(
    "call",
    [
        lambda: _settings.number_setting(0, VAR, 1, int, minimum=1, arg="size"),
        lambda: _settings.number_setting(True, VAR, 1, int, arg="size"),
        lambda: _settings.number_setting(1.5, VAR, 1, int, arg="size"),
        lambda: _settings.number_setting(float("nan"), VAR, 1.0, float, arg="size"),
        lambda: _settings.bool_setting(1, VAR, True, arg="size"),  # type: ignore[arg-type]
        lambda: _settings.choice_setting("c", VAR, {"a"}, "a", arg="size"),
    ],
)
def test_an_invalid_argument_is_a_clear_error(call: object) -> None:
    with pytest.raises(ValueError, match=r"^size must be"):
        call()  # type: ignore[operator]


# The components follow the rule (these were the bugs the rule fixed).


def test_audit_wait_from_the_environment_in_any_case(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MCP_OTEL_AUDIT_WAIT", "QUEUED")
    logger = AuditLogger(tmp_path / "audit", handle_sigterm=False)
    try:
        assert logger.wait == "queued"
    finally:
        logger.shutdown()


def test_a_bad_audit_wait_variable_keeps_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MCP_OTEL_AUDIT_WAIT", "sometimes")
    logger = AuditLogger(tmp_path / "audit", handle_sigterm=False)
    try:
        assert logger.wait == "written"
    finally:
        logger.shutdown()
    assert "MCP_OTEL_AUDIT_WAIT='sometimes'" in capfd.readouterr().err


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"max_queue_size": 0}, "max_queue_size"), ({"queue_timeout": -1}, "queue_timeout"),
     ({"linger": -0.5}, "linger"),
     ({"wait": "later"}, "wait"), ({"otlp": "no"}, "otlp")],
)
def test_bad_audit_arguments_are_clear_errors(
    tmp_path: Path, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=f"^{message} must be"):
        AuditLogger(tmp_path / "audit", handle_sigterm=False, **kwargs)  # type: ignore[arg-type]
