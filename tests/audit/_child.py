"""A real writer process for the audit tests: ``python _child.py DIR MODE [options]``.

MODE ``burst``: T threads x N calls (each thread its own loop, K in flight), then exit
normally (atexit flushes). ``forever``: write as fast as possible until killed.
``sigterm``: log N records (queued), print "ready", wait for SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import threading

from mcp_otel.audit import AuditLogger


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _rss_kb() -> int:
    return _status_kb("VmRSS")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("mode", choices=["burst", "forever", "sigterm"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--calls", type=int, default=100)
    ap.add_argument("--inflight", type=int, default=1)
    ap.add_argument("--wait", default="written")
    ap.add_argument("--tag", default="p")
    ap.add_argument("--previous", choices=["none", "python", "ignore"], default="none")
    ap.add_argument("--memory", action="store_true")
    args = ap.parse_args()

    if args.mode == "sigterm" and args.previous == "python":
        def previous(signum: int, frame: object) -> None:
            with open(os.path.join(args.dir, "previous-handler-ran"), "w") as fh:
                fh.write("yes")
            os._exit(7)
        signal.signal(signal.SIGTERM, previous)
    elif args.mode == "sigterm" and args.previous == "ignore":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)

    audit = AuditLogger(args.dir, wait=args.wait, otlp=False,
                        handle_sigterm=args.mode == "sigterm")

    if args.mode == "forever":
        def spin(k: int) -> None:
            async def run() -> None:
                i = 0
                while True:
                    await asyncio.gather(*(audit.log_tool_call(f"{args.tag}{k}", {"i": i + j})
                                           for j in range(16)))
                    i += 16
            asyncio.run(run())
        for k in range(args.threads):
            threading.Thread(target=spin, args=(k,), daemon=True).start()
        threading.Event().wait()
        return 0

    if args.mode == "sigterm":
        async def some() -> None:
            for i in range(args.calls):
                await audit.log_tool_call(args.tag, {"i": i})
        asyncio.run(some())
        print("ready", flush=True)
        while True:
            signal.pause()

    base_rss = _rss_kb()

    def worker(k: int) -> None:
        async def run() -> None:
            per = args.calls // args.inflight
            async def one(w: int) -> None:
                for i in range(per):
                    await audit.log_tool_call(f"{args.tag}{k}", {"w": w, "i": i})
            await asyncio.gather(*(one(w) for w in range(args.inflight)))
        asyncio.run(run())

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(args.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if args.memory:
        # VmHWM is this process image's peak; ru_maxrss would include the parent's RSS
        # copied at fork() before exec.
        peak_kb = _status_kb("VmHWM")
        print(f"rss_base_kb={base_rss} rss_peak_kb={peak_kb} rss_end_kb={_rss_kb()}",
              flush=True)
    sys.stdout.flush()
    return 0  # normal exit: atexit writes what is still queued and the end record


if __name__ == "__main__":
    sys.exit(main())
