"""A writer that fills its disk: ``python _full_disk_child.py DIR [--fsize N] [--ballast F]``.

A ``queued`` burst of ``--calls`` records (one event loop, as fast as it can) onto a disk
that cannot hold them all: a real file-size limit (``RLIMIT_FSIZE`` with SIGXFSZ ignored:
``write`` stops at the limit, then fails with ``EFBIG``) or a small tmpfs the test
mounted. Then room comes back (the limit is lifted, or the ``--ballast`` file is
removed, as an operator freeing space would) and the logger shuts down, which writes the
session-end record with the loss declaration. Prints one JSON status line on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal

from mcp_otel.audit import AuditLogger, RetryPolicy


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--calls", type=int, default=3000)
    ap.add_argument("--fsize", type=int, default=0)
    ap.add_argument("--ballast", default="")
    args = ap.parse_args()
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    if args.fsize:
        resource.setrlimit(resource.RLIMIT_FSIZE, (args.fsize, hard))
    audit = AuditLogger(args.dir, wait="queued", otlp=False, fsync="none",
                        retry=RetryPolicy(attempts=2, initial_delay=0.001))

    async def burst() -> None:
        for i in range(args.calls):
            # Fixed-width values: every record has the same length but for its seq.
            await audit.log_tool_call("fill", {"i": f"{i:06d}"}, correlation_id=f"c{i:06d}")

    asyncio.run(burst())
    assert audit.force_flush(60)
    full = audit.get_session_summary()
    size_full = os.path.getsize(audit.log_file)
    st = os.statvfs(args.dir)
    free_full = st.f_bavail * st.f_frsize
    if args.fsize:
        resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
    if args.ballast:
        os.unlink(args.ballast)
    audit.shutdown()
    print(json.dumps({
        "full": full, "size_full": size_full, "free_full": free_full,
        "ended": audit.get_session_summary(), "file": str(audit.log_file),
    }))


if __name__ == "__main__":
    main()
