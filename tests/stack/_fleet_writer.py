"""One host of the fleet test: a plain ``AuditLogger`` exporting its records over OTLP.

Run as its own process by tests/stack/test_fleet.py, with the standard
``OTEL_EXPORTER_OTLP_*`` variables pointing at the collector and ``OTEL_RESOURCE_ATTRIBUTES``
giving it its ``service.instance.id``. Usage::

    _fleet_writer.py LOG_DIR N1 [N2 ...]

writes N1 tool-call records, pushes the OTLP copy out (the exporter has either delivered
it or given up when this returns), prints ``PHASE 1 <session_id> <last seq>`` and waits for
a line on stdin before the N2 records of phase 2, and so on; after the last phase it
shuts the logger down (the session-end record) and prints ``DONE <session_id> <end seq>``.
It also sends ``OTHER_LOGS`` ordinary application logs through the SDK's own OTLP log
exporter, which the archive holds next to the audit records.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor

from mcp_otel import _setup
from mcp_otel.audit import AuditLogger

OTHER_LOGS = 3


def _arguments(i: int) -> dict[str, Any]:
    """Values whose OTLP/JSON form differs from their flat JSON form: integers (strings
    in OTLP/JSON), integral floats (``1.0`` arrives as ``1``), empty containers and
    strings, null inside a list, booleans, non-ASCII text."""
    return {"n": i, "ratio": float(i % 3), "half": i / 2, "flags": [True, False, None],
            "empty": "", "none": {}, "list": [], "text": f"héllo\u2028{i}",
            "nested": {"depth": {"k": [i, -i, 2**62]}}}


def _other_logs() -> None:
    """Ordinary application logs, one with a ``seq`` attribute of its own."""
    provider = LoggerProvider(resource=_setup.build_resource())
    # The SDK's own OTLP log exporter for OTEL_EXPORTER_OTLP_PROTOCOL, like an application's.
    provider.add_log_record_processor(SimpleLogRecordProcessor(_setup.otlp_exporter("logs")))
    logger = provider.get_logger("app")
    from opentelemetry._logs import LogRecord

    for i in range(OTHER_LOGS):
        logger.emit(LogRecord(body=f"app log {i}", attributes={"seq": i, "app": True}))
    provider.shutdown()


async def main(log_dir: str, phases: list[int]) -> None:
    audit = AuditLogger(log_dir, otlp=True, wait="written")
    _other_logs()
    seq = 0
    for number, count in enumerate(phases, 1):
        for _ in range(count):
            seq += 1
            await audit.log_tool_call(f"tool_{seq % 4}", _arguments(seq),
                                      correlation_id=f"c{seq}")
        if number == len(phases):
            break
        # The OTLP copy of this phase is delivered, or dropped after the export timeout,
        # before the test is told: it can then stop or start the collector.
        otlp = audit._current().otlp
        assert otlp is not None, "OTLP export is not configured"
        otlp.force_flush(30_000)
        print(f"PHASE {number} {audit.session_id} {seq}", flush=True)
        if not sys.stdin.readline():
            raise SystemExit("stdin closed")
    session = audit.session_id
    audit.shutdown()
    print(f"DONE {session} {seq + 1}", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], [int(n) for n in sys.argv[2:]]))
