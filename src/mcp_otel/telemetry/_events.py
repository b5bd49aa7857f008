"""The event file: each ``emit_*`` appends its line before it returns.

Why synchronous: Osiris' contract (and its tests) is that the event is in
``mcp_telemetry_{date}.jsonl`` when ``emit_*`` returns. A queue and a writer thread
(what the emitter had before) batched well but broke that, and building an OTel log
record per event cost more than the write itself.

How: the line is built here, in the ``flat`` format of the JSONL log exporter (Osiris'
fields at the top level, then the record envelope: ``otel.timestamp``, ``severity``,
``severity_number``, ``event_name``, ``trace_id``/``span_id`` of the current span (when
there is one), ``schema_version``, and ``resource`` when
``MCP_OTEL_JSONL_RESOURCE`` asks for it) and appended with one locked ``write`` through
the exporter's own :class:`~mcp_otel.exporters.LockedJsonlFile`: the same thread lock,
``flock`` across processes, rotation, fsync policy, modes and symlink checks as every
mcp-otel file, with no second locking scheme. With ``MCP_OTEL_JSONL_FORMAT=otlp`` the
line is an OTLP ``LogsData`` and the record goes through the SDK's synchronous
``SimpleLogRecordProcessor`` into the same exporter (slower, same guarantee).

The ``tool_call`` line, the one written per tool call, is assembled from pieces
(:meth:`EventFile.write_tool_call`) when its fields are the plain ones (no error text,
no metadata, no transformed value, no resource): the same bytes as the dict through
orjson (a test compares the two over odd names), at a third of the cost. Names and
statuses are encoded once by orjson and kept (up to :data:`MAX_ENCODED` of them).

A line that cannot be written (disk full, a directory that cannot be created) is lost,
never retried in the host's call: it is counted (``events_lost``), the file reports the
cause once on stderr, and a warning goes to the ``mcp_otel.telemetry`` logger at the
first loss and whenever the count doubles.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

import orjson

from mcp_otel import _json
from mcp_otel._context import SpanIds
from mcp_otel._otel_compat import SeverityNumber
from mcp_otel.exporters import SCHEMA_VERSION, JsonlLogExporter
from mcp_otel.telemetry._values import _stamps

_log = logging.getLogger("mcp_otel.telemetry")

EVENT_PREFIX = "mcp.telemetry."
SEVERITY_INFO = SeverityNumber.INFO
SEVERITY_WARN = SeverityNumber.WARN
_INFO = ("INFO", SEVERITY_INFO.value)
_WARN = ("WARN", SEVERITY_WARN.value)
#: Encoded names and statuses kept by one event file (then each line encodes its own).
MAX_ENCODED = 1024
_TOOL_CALL_ENVELOPE = {
    error: f',"severity":"{severity}","severity_number":{number},'
    f'"event_name":"{EVENT_PREFIX}tool_call"'
    for error, (severity, number) in ((False, _INFO), (True, _WARN))
}


def _encode_str(text: str) -> str:
    """``text`` as a JSON string, exactly as it appears in a line :meth:`EventFile.write`
    encodes (orjson, or the careful encoder for what orjson refuses: lone surrogates)."""
    return _json.dumps(text).decode()


class EventFile:
    """Writes one event line per call into the exporter's locked file."""

    def __init__(self, exporter: JsonlLogExporter, resource: Mapping[str, Any] | None) -> None:
        self.exporter = exporter
        self._file = exporter.file
        self._resource = (
            dict(resource) if resource is not None and exporter.config.include_resource
            else None
        )
        self._lost_lock = threading.Lock()
        self.lost = 0
        self._encoded: dict[str, str] = {}
        self._session: tuple[str | None, str] = (None, "")

    def write(
        self,
        attributes: dict[str, Any],
        event_name: str,
        error: bool,
        otel_timestamp: str,
        ids: SpanIds | None,
    ) -> None:
        """Append the event's line now; count it as lost if the file refuses it.

        Takes ``attributes`` over: the envelope fields are added to it in place.
        """
        severity, number = _WARN if error else _INFO
        # Osiris' own ``timestamp`` attribute wins; the record's goes to otel.timestamp
        # (the flat format's clash rule). No other envelope name is an event field.
        attributes["otel.timestamp"] = otel_timestamp
        attributes["severity"] = severity
        attributes["severity_number"] = number
        attributes["event_name"] = event_name
        # The span the event was emitted in, as the SDK's Logger.emit would record it.
        if ids is not None:
            attributes["trace_id"] = f"{ids[0]:032x}"
            attributes["span_id"] = f"{ids[1]:016x}"
        attributes["schema_version"] = SCHEMA_VERSION
        if self._resource is not None:
            attributes["resource"] = self._resource
        try:
            line = orjson.dumps(attributes, option=orjson.OPT_APPEND_NEWLINE)
        except Exception:  # a lone surrogate in a name, an odd value: the careful encoder
            line = _json.dumps_line(attributes)
        else:
            if b"null" in line:  # maybe a NaN orjson wrote as null: the careful encoder
                line = _json.dumps_line(attributes)
        if not self._file.append_line(line):
            self.count_lost(1)

    def write_tool_call(
        self,
        session_id: str,
        now: int,
        tool: str,
        status: str,
        duration_ms: int,
        bytes_in: int,
        bytes_out: int,
        error: bool,
        ids: SpanIds | None,
    ) -> None:
        """:meth:`write` of a plain ``tool_call`` event: ``tool`` and ``status`` are
        strings, the three values ints, and there is nothing else to add."""
        iso, otel_timestamp = _stamps(now)
        if self._resource is not None:
            self.write(
                {"event": "tool_call", "session_id": session_id, "timestamp": iso,
                 "timestamp_ms": now // 1_000_000, "tool": tool, "status": status,
                 "duration_ms": duration_ms, "bytes_in": bytes_in, "bytes_out": bytes_out},
                EVENT_PREFIX + "tool_call", error, otel_timestamp, ids,
            )  # fmt: skip
            return
        cached_for, head = self._session
        if cached_for is not session_id:
            head = '{"event":"tool_call","session_id":' + _encode_str(session_id)
            self._session = (session_id, head)
        encoded = self._encoded
        tool_json = encoded.get(tool)
        if tool_json is None:
            tool_json = self._encode(tool)
        status_json = encoded.get(status)
        if status_json is None:
            status_json = self._encode(status)
        trace = (
            "" if ids is None else f',"trace_id":"{ids[0]:032x}","span_id":"{ids[1]:016x}"'
        )
        line = (
            f'{head},"timestamp":"{iso}","timestamp_ms":{now // 1_000_000},'
            f'"tool":{tool_json},"status":{status_json},"duration_ms":{duration_ms},'
            f'"bytes_in":{bytes_in},"bytes_out":{bytes_out},'
            f'"otel.timestamp":"{otel_timestamp}"{_TOOL_CALL_ENVELOPE[error]}{trace},'
            f'"schema_version":{SCHEMA_VERSION}}}\n'
        ).encode()
        if not self._file.append_line(line):
            self.count_lost(1)

    def _encode(self, text: str) -> str:
        encoded = _encode_str(text)
        if len(self._encoded) < MAX_ENCODED:
            self._encoded[text] = encoded
        return encoded

    def count_lost(self, n: int) -> None:
        with self._lost_lock:
            before = self.lost
            self.lost = before + n
        if before == 0 or self.lost.bit_length() > before.bit_length():
            _log.warning(
                "mcp-otel telemetry: %d event(s) could not be written to %s (%s)",
                self.lost, self._file.current_path, self._file.last_error,
            )

    def flush(self) -> bool:
        return bool(self.exporter.force_flush())

    def shutdown(self) -> None:
        self.exporter.shutdown()
