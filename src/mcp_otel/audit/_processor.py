"""An audit-grade ``LogRecordProcessor``: group commit, waits for room, never evicts.

The SDK's ``BatchLogRecordProcessor`` is built for telemetry: when its queue is full it
drops the oldest record, it never retries a failed export, and a record is "done" when it
is queued. An audit trail needs the opposite trade-offs:

* **No eviction.** The queue is bounded (memory stays bounded by the queue, not by the
  burst); when it is full the *caller* waits for room, up to ``queue_timeout`` seconds.
  A record that still finds no room is counted and declared, never silently dropped.
  Enqueueing is a lock-free ``deque.append``; the lock is only taken to wake an idle
  writer or to park a caller on a full queue.
* **Group commit.** One writer thread takes everything queued (up to
  ``max_batch_size``) and hands it to the exporter in one call; callers that asked to wait
  for the write are woken together when the batch is in the file. Under load batches
  grow by themselves, so waiting callers share one write.
* **Linger for records nobody waits for.** When the queue runs empty the writer first
  dozes for ``linger`` seconds (50 ms by default): a record without a waiter
  (``wait="queued"``) does not wake it then, it is picked up when the doze ends. Waking
  the writer costs the caller a futex system call and the process hand-offs of the GIL
  between the writer and the event loop (every system call the writer makes releases
  the GIL), and with a 2 ms doze that happened for almost every record at moderate rates:
  about 20 futex calls per tool call at 130 calls/s, against 1.5 with 100 ms. A record
  with a waiter, a flush, a shutdown and a caller that finds the queue full always wake
  it at once, and it does not doze while callers wait for room.
* **The caller writes when the writer is idle.** A record whose caller waits for it
  (``written``), arriving at an empty queue and an idle writer, is sealed and exported
  by the caller itself (:meth:`AuditLogRecordProcessor.write_inline`), under the same
  lock the writer holds per batch: there is nothing to group it with, and handing it to
  the writer cost a wake-up and a wait for the GIL behind the caller's event loop, twice
  per tool call. One attempt only; the rest goes, sealed, to the writer's retries.
* **Retries.** A failed export (exception or ``FAILURE``) is retried with exponential
  backoff; what still fails is reported through ``on_lost`` (counted, stderr, metric,
  and declared in the next record of the chain by the audit logger), once per record.
* **Every record that fits.** On a full disk the exporter writes the leading records of
  a batch that fit (``export_prefix``); they are committed and their callers released,
  and only the rest is retried and, failing that, declared lost.
* **Sealing in write order.** An optional ``seal`` hook runs in the writer thread on each
  record right before export, so the hash chain follows the file order exactly.

Waiters are ``asyncio`` futures (resolved on their own loop, see ``_wakeup``; several
threads may each run their own loop) or plain threads (``force_flush`` puts a
marker through the queue and waits for it). A final record (``put_final``) closes the
processor; the writer keeps it last and hands anything that raced in behind it to
``on_late``.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from mcp_otel import _fork, _settings
from mcp_otel._otel_compat import (
    LogRecordExporter,
    LogRecordExportResult,
    LogRecordProcessor,
    ReadWriteLogRecord,
)
from mcp_otel.audit._wakeup import _resolve, _wake

Waiter = asyncio.Future | None
_Item = tuple[ReadWriteLogRecord, Waiter]


@dataclass(frozen=True)
class RetryPolicy:
    """How a failed export is retried before its records are declared lost."""

    attempts: int = 6
    initial_delay: float = 0.05
    max_delay: float = 2.0
    multiplier: float = 2.0

    def delays(self) -> list[float]:
        out, d = [], self.initial_delay
        for _ in range(max(0, self.attempts - 1)):
            out.append(min(d, self.max_delay))
            d *= self.multiplier
        return out


class QueueFullTimeout(Exception):
    """No room in the audit queue within ``queue_timeout`` (the writer is stuck)."""


class AuditRecord(ReadWriteLogRecord):
    """A log record that says how the audit processor should queue it.

    ``Logger.emit`` has no slot for per-call options, so the record carries them:

    * ``waiter``: a future resolved (on its own loop) once the record is in the file;
    * ``defer``: on a full queue, do not block: set ``parked`` and return, so an async
      caller can await room (:meth:`AuditLogRecordProcessor.put_async`) without blocking
      its event loop;
    * ``final``: the last record the processor accepts (a session-end record); later puts
      raise ``RuntimeError``.

    Any other ``ReadWriteLogRecord`` is queued with a blocking, bounded put.
    """

    waiter: Waiter = None
    defer: bool = False
    final: bool = False
    parked: bool = False


class AuditLogRecordProcessor(LogRecordProcessor):
    """See the module docstring. One writer thread per instance, started lazily."""

    def __init__(
        self,
        exporter: LogRecordExporter,
        *,
        max_queue_size: int = 8192,
        max_batch_size: int = 2048,
        queue_timeout: float = 30.0,
        linger: float = 0.05,
        retry: RetryPolicy | None = None,
        seal: Callable[[ReadWriteLogRecord], None] | None = None,
        on_committed: Callable[[Sequence[ReadWriteLogRecord]], None] | None = None,
        on_lost: Callable[[Sequence[ReadWriteLogRecord], BaseException | None], None]
        | None = None,
        on_late: Callable[[list[_Item]], None] | None = None,
        name: str = "mcp-otel-audit-writer",
    ) -> None:
        if max_queue_size < 1 or max_batch_size < 1:
            raise ValueError("max_queue_size and max_batch_size must be >= 1")
        self._exporter = exporter
        self._max_queue = max_queue_size
        self._max_batch = max_batch_size
        self._queue_timeout = queue_timeout
        self._linger = max(0.0, linger)
        self._retry = retry or RetryPolicy()
        self._seal = seal
        self._on_committed = on_committed
        self._on_lost = on_lost
        self._on_late = on_late
        self._name = name
        self._export_prefix = _prefix_writer(exporter)
        self._init_state()

    def _init_state(self) -> None:
        self._lock = threading.Lock()  # only for idle/full transitions, never per record
        # One thread seals and exports at a time: the writer, or a caller writing its own
        # record while the writer is idle (write_inline). Held per batch, not per record.
        self._drain = threading.Lock()
        # What an inline write could not write at its one attempt: sealed, so the writer
        # exports it (with retries) before anything else, under _drain.
        self._resume: list[_Item] | None = None
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)
        self._queue: collections.deque[_Item] = collections.deque()
        self._room_waiters: list[asyncio.Future[None]] = []
        self._sync_waiting = 0
        self._worker_idle = False
        self._worker_dozing = False  # idle, in the linger: only waiters and flushes wake it
        self._accepting = True
        self._ended = False  # the final record was dequeued (writer thread only)
        self._processed = 0  # records that reached the writer (writer thread only)
        self._shutdown = False
        self._worker: threading.Thread | None = None
        self._pid = _getpid()
        self.written = 0
        self.lost = 0

    # -- producer side ---------------------------------------------------------------

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        if not isinstance(log_record, AuditRecord):
            self.put(log_record)
        elif log_record.final:
            self.put_final(log_record)
        elif log_record.defer:
            waiter = log_record.waiter
            if waiter is not None and self.write_inline(log_record, waiter):
                return
            if not self._try_put(log_record, waiter):
                log_record.parked = True
        else:
            self.put(log_record, log_record.waiter)

    def put_final(self, record: ReadWriteLogRecord) -> None:
        """Queue the last record (even over capacity: it is one) and accept no more.

        The writer writes it only if the session wrote anything before it, and hands any
        record that raced past the closing door (queued behind it) to ``on_late``: the
        final record is always the last one of its chain.
        """
        if self._pid != _fork.pid():
            self._check_fork()
        with self._lock:
            if not self._accepting:
                raise RuntimeError("audit processor is shut down")
            self._accepting = False
            self._queue.append((record, _FINAL))
            if self._worker_idle:
                self._not_empty.notify()
        if self._worker is None:
            self._start_worker()

    def write_inline(self, record: ReadWriteLogRecord, waiter: Waiter) -> bool:
        """Write a waited-for record in the caller's thread when the writer is idle.

        Why: a caller that waits for its record (``written``) would otherwise wake the
        writer thread and wait for it, and the woken writer waits for the GIL behind the
        caller's busy event loop (up to the interpreter's 5 ms switch interval): on an MCP
        server at a few hundred calls per second that hand-off, twice per tool call, was
        most of what ``written`` cost over ``queued``. When the queue is empty and the
        writer idle there is nothing to group with, so the caller seals and exports its
        record itself (a locked append: tens of microseconds) under the same ``_drain``
        lock as the writer, which keeps the chain in file order. One attempt only: what
        it could not write is handed, sealed, to the writer, which retries it with
        backoff before anything else, so no retry ever sleeps on the caller's loop.
        ``False``: not written here (queue it as usual).
        """
        if (not self._worker_idle or self._queue or self._resume is not None
                or not self._accepting or self._pid != _fork.pid()):
            return False
        if not self._drain.acquire(blocking=False):
            return False
        try:
            if self._queue or self._ended or not self._accepting or self._resume is not None:
                return False
            try:
                rest = self._export([(record, waiter)], once=True)
            except Exception as exc:  # never into the host's request (as the writer)
                _stderr(f"mcp-otel audit: writer error: {exc!r}")
                _resolve([(record, waiter)], False)
                return True
            if rest:
                self._resume = rest
                marker = threading.Event()  # wakes the writer to resume the export
                self._queue.append((_FLUSH, marker))  # type: ignore[arg-type]
                with self._lock:
                    self._not_empty.notify()
            return True
        finally:
            self._drain.release()

    def _try_put(self, record: ReadWriteLogRecord, waiter: Waiter) -> bool:
        # Lock-free: deque.append is atomic, so producers never contend on a lock (under
        # 8 threads a per-record lock cost more than the rest of the record). The bound is
        # soft by at most the number of producer threads racing the length check.
        if self._pid != _fork.pid():
            self._check_fork()
        if not self._accepting:
            raise RuntimeError("audit processor is shut down")
        q = self._queue
        if len(q) >= self._max_queue:
            return False
        q.append((record, waiter))
        # The worker publishes both flags before its last look at the queue, and clears
        # _worker_dozing before it looks again and sleeps for long: a record that does
        # not wake a dozing worker is seen when the doze ends.
        if self._worker_idle and (waiter is not None or not self._worker_dozing):
            with self._lock:
                self._not_empty.notify()
        if self._worker is None:
            self._start_worker()
        return True

    def put(self, record: ReadWriteLogRecord, waiter: Waiter = None,
            timeout: float | None = None) -> None:
        """Queue ``record``, blocking while the queue is full (bounded wait)."""
        deadline = time.monotonic() + (self._queue_timeout if timeout is None else timeout)
        while not self._try_put(record, waiter):
            with self._lock:
                self._sync_waiting += 1
                try:
                    if self._worker_idle:  # a full queue never waits out the linger
                        self._not_empty.notify()
                    while len(self._queue) >= self._max_queue and self._accepting:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            raise QueueFullTimeout(
                                f"no room in the audit queue for {self._queue_timeout}s")
                        self._not_full.wait(remaining)
                finally:
                    self._sync_waiting -= 1

    async def put_async(self, record: ReadWriteLogRecord, waiter: Waiter = None) -> None:
        """Queue ``record``, awaiting (not blocking the loop) while the queue is full."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._queue_timeout
        while not self._try_put(record, waiter):
            fut: asyncio.Future[None] = loop.create_future()
            with self._lock:
                # Register first, then re-check: the writer pops a batch, then looks at
                # _room_waiters without the lock; either it sees this future (and wakes
                # it), or its pop came before this check, which then sees the room.
                self._room_waiters.append(fut)
                if len(self._queue) < self._max_queue:
                    self._room_waiters.remove(fut)  # still there: the writer swaps under the lock
                    continue
                if self._worker_idle:  # a full queue never waits out the linger
                    self._not_empty.notify()
            timer = loop.call_at(deadline, _expire, fut)
            try:
                await fut
            finally:
                timer.cancel()
            if fut.result() is _EXPIRED:
                raise QueueFullTimeout(f"no room in the audit queue for {self._queue_timeout}s")

    def queued(self) -> int:
        return len(self._queue)

    def waiting(self) -> int:
        """Callers waiting for room in a full queue (threads and event-loop tasks): a
        stuck or slow sink shows here before any record is declared lost."""
        return len(self._room_waiters) + self._sync_waiting

    @property
    def accepting(self) -> bool:
        """False once shutdown (or the session's final record) has closed the door."""
        return self._accepting

    # -- writer side -----------------------------------------------------------------

    def _start_worker(self) -> None:
        with self._lock:
            if self._worker is not None:
                return
            ref = weakref.ref(self)
            t = threading.Thread(target=_run_worker, args=(ref,), name=self._name, daemon=True)
            self._worker = t
        t.start()

    def _take_batch(self, block: bool) -> list[_Item] | None:
        q = self._queue
        if not q:
            with self._lock:
                self._worker_idle = True  # published before the last look (see _try_put)
                try:
                    # No doze while callers wait for room: they refill the queue at once.
                    if (block and self._linger and not self._shutdown
                            and not self._sync_waiting and not self._room_waiters):
                        self._worker_dozing = True
                        try:
                            if not q:
                                self._not_empty.wait(self._linger)
                        finally:
                            self._worker_dozing = False
                    while not q:
                        if self._shutdown or not block:
                            return None
                        self._not_empty.wait(0.5)
                        if not q:
                            return []  # let the loop re-check its weak reference
                finally:
                    self._worker_idle = False
        pop = q.popleft
        batch = [pop() for _ in range(min(len(q), self._max_batch))]
        if self._room_waiters or self._sync_waiting:
            with self._lock:
                self._not_full.notify_all()
                waiters, self._room_waiters = self._room_waiters, []
            _wake(waiters, None)
        return batch

    def _write(self, batch: list[_Item]) -> None:
        """Export ``batch`` (the caller holds ``_drain``)."""
        if self._resume is not None:  # left by an inline write: it goes first
            rest, self._resume = self._resume, None
            self._export(rest, sealed=True)
        if self._ended:
            self._late(batch)
            return
        items: list[_Item] = []
        markers: list[threading.Event] = []
        late: list[_Item] = []
        for i, (rec, w) in enumerate(batch):
            if rec is _FLUSH:
                markers.append(w)  # type: ignore[arg-type]
            elif w is _FINAL:
                self._ended = True
                if self._processed or items:  # an unused session needs no end record
                    items.append((rec, None))
                late = batch[i + 1:]
                break
            else:
                items.append((rec, w))
        if items:
            self._export(items)
        for m in markers:
            m.set()
        if late:
            self._late(late)

    def _export(self, items: list[_Item], *, sealed: bool = False,
                once: bool = False) -> list[_Item]:
        """Seal, then write the batch: every record that fits before any loss is declared.

        An exporter with ``export_prefix`` (the JSONL exporter) says how many leading
        records reached the file; those are committed and their callers released at
        once, and only the rest is retried (the chain stays valid: they were sealed in
        file order behind the committed ones). Any other exporter is all-or-nothing.
        What is still not written after the last attempt is declared lost once, however
        many attempts it took (``on_lost``, ``lost``), and only then counted as failed
        by the exporter.
        """
        records = [r for r, _ in items]
        if not sealed:  # a resumed inline write was counted and sealed by its caller
            self._processed += len(records)
            if self._seal is not None:
                for r in records:
                    try:
                        self._seal(r)
                    except Exception as exc:  # never lose the batch over one odd record
                        _stderr(f"mcp-otel audit: cannot seal a record: {exc!r}")
        prefix = self._export_prefix
        error: BaseException | None = None
        done = 0
        # ``once`` (an inline write): one attempt, and what is left is returned, sealed,
        # for the writer to retry.
        for delay in [0.0] if once else [*self._retry.delays(), None]:
            rest = records[done:]
            try:
                if prefix is not None:
                    n = prefix(rest, count_failed=delay is None)
                    n = n if type(n) is int and 0 <= n <= len(rest) else 0
                else:
                    ok = self._exporter.export(rest) is LogRecordExportResult.SUCCESS
                    n = len(rest) if ok else 0
                error = None
            except Exception as exc:
                n, error = 0, exc
            if n:
                self._commit(items[done:done + n])
                done += n
            if done == len(records) or delay is None:
                break
            if once:
                return items[done:]
            time.sleep(delay)  # backoff in the writer thread; callers keep waiting
        if done < len(records):
            self.lost += len(records) - done
            if self._on_lost is not None:
                try:
                    self._on_lost(records[done:], error)
                except Exception as exc:
                    _stderr(f"mcp-otel audit: on_lost hook failed: {exc!r}")
            _resolve(items[done:], False)
        return []

    def _commit(self, items: list[_Item]) -> None:
        """``items`` are in the file: count them, run the hook, release their callers."""
        records = [r for r, _ in items]
        self.written += len(records)
        if self._on_committed is not None:
            try:
                self._on_committed(records)
            except Exception as exc:
                _stderr(f"mcp-otel audit: on_committed hook failed: {exc!r}")
        _resolve(items, True)

    def _late(self, items: list[_Item]) -> None:
        """Items queued behind the final record: records go to ``on_late`` (the next
        session), flush markers are released."""
        records = []
        for rec, w in items:
            if rec is _FLUSH:
                w.set()  # type: ignore[union-attr]
            elif w is not _FINAL:
                records.append((rec, w))
        if not records:
            return
        if self._on_late is not None:
            try:
                self._on_late(records)
                return
            except Exception as exc:
                _stderr(f"mcp-otel audit: on_late hook failed: {exc!r}")
        self.lost += len(records)
        if self._on_lost is not None:
            self._on_lost([r for r, _ in records], None)
        _resolve(records, False)

    # -- flush / shutdown --------------------------------------------------------------

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Block until everything queued before the call is written (or declared lost).

        A marker goes through the queue behind those records (FIFO), so no counter is
        shared with the producers.
        """
        if self._pid != _getpid():
            return True
        worker = self._worker
        if self._shutdown and (worker is None or not worker.is_alive()):
            return not self._queue
        if worker is None and not self._queue:
            return True
        marker = threading.Event()
        self._queue.append((_FLUSH, marker))  # type: ignore[arg-type]
        if self._worker_idle:
            with self._lock:
                self._not_empty.notify()
        if self._worker is None:
            self._start_worker()
        return marker.wait(timeout_millis / 1000)

    async def flush_async(self, timeout: float = 30.0) -> bool:
        """Await :meth:`force_flush` without blocking the event loop."""
        return await asyncio.to_thread(self.force_flush, int(timeout * 1000))

    def shutdown(self, timeout_millis: int = 30000) -> None:
        if self._pid != _getpid():
            return
        with self._lock:
            self._accepting = False
        self.force_flush(timeout_millis)
        with self._lock:
            self._shutdown = True
            self._not_empty.notify_all()
            self._not_full.notify_all()
            worker = self._worker
            waiters, self._room_waiters = self._room_waiters, []
        _wake(waiters, None)
        if worker is not None and worker is not threading.current_thread():
            worker.join(timeout_millis / 1000)
            if not worker.is_alive() and self._queue:
                # A producer that passed the open door just before it closed and appended
                # after the writer left: handle it here rather than strand it.
                leftover = list(self._queue)
                self._queue.clear()
                with self._drain:
                    self._write(leftover)
        try:
            self._exporter.shutdown()
        except Exception as exc:
            _stderr(f"mcp-otel audit: exporter shutdown failed: {exc!r}")

    @property
    def is_shutdown(self) -> bool:
        return self._shutdown

    def _check_fork(self) -> None:
        if self._pid != _getpid():
            # In a forked child: the parent's queue belongs to the parent, which writes it.
            self._init_state()


def _prefix_writer(exporter: LogRecordExporter) -> Callable[..., int] | None:
    """The exporter's ``export_prefix``, unless a subclass overrides ``export`` alone.

    Why: a subclass that wraps ``export`` (to gate, filter or count it) would be gone
    around if its inherited ``export_prefix`` were called instead; it is called through
    its ``export``, all or nothing.
    """
    fn = getattr(exporter, "export_prefix", None)
    if not callable(fn):
        return None
    for cls in type(exporter).__mro__:
        if "export" in cls.__dict__:
            return fn if "export_prefix" in cls.__dict__ else None
    return fn


_FLUSH: Any = object()  # marker record: force_flush waits for it to come out
_FINAL: Any = object()  # waiter slot of the final (session-end) record
_EXPIRED: Any = object()


def _expire(fut: asyncio.Future[Any]) -> None:
    if not fut.done():
        fut.set_result(_EXPIRED)


_getpid = _fork.pid


def _run_worker(ref: weakref.ReferenceType[AuditLogRecordProcessor]) -> None:
    while True:
        proc = ref()
        if proc is None:
            return
        batch = proc._take_batch(block=True)
        if batch is None:
            return
        if batch:
            try:
                with proc._drain:
                    proc._write(batch)
            except BaseException as exc:  # the writer must survive anything
                _stderr(f"mcp-otel audit: writer error: {exc!r}")
        del proc


_stderr = _settings.stderr_line
