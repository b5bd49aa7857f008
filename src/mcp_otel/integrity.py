"""The audit hash chain: canonical encoding, sealing records, and verifying files.

Each writer (one ``session_id``) numbers its records ``seq`` = 1, 2, 3... without gaps and
links them: ``prev_hash`` is the previous record's ``hash``; the first record's
``prev_hash`` is derived from the session id, so no extra start line is needed.
``hash`` is SHA-256, or HMAC-SHA-256 when a key is configured, of the canonical encoding
of every field the writer emitted except ``hash`` itself. The full specification, enough
for a third party to write a verifier, is in docs/audit.md ("Hash chain").

Sealing happens in the audit processor's single writer thread, right before a batch is
handed to the exporter, so the chain order *is* the file order of one session.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from mcp_otel import reader

CHAIN_VERSION = "mcp-otel-audit/1"
ALG_SHA256 = "sha256"
ALG_HMAC = "hmac-sha256"
KEY_ENV = "MCP_OTEL_AUDIT_KEY"

# Fields the chain adds to every record.
F_SEQ = "seq"
F_PREV = "prev_hash"
F_HASH = "hash"
F_ALG = "hash_alg"
F_SESSION = "session_id"
F_EVENT = "event"
# Loss declaration carried by the first record written after a loss.
F_LOST = "audit_lost"
END_EVENT = "session_end"
#: Instrumentation scope of the audit logger's records: how an archive's reader tells them
#: from the other logs there (together with the chain fields, see ``_Verifier._otlp``).
AUDIT_SCOPE = "mcp_otel.audit"

#: Envelope fields of the flat log line (``mcp_otel.exporters.FLAT_LOG_ENVELOPE``) that the
#: writer did not emit as attributes. ``timestamp`` is not here: the audit record sets its
#: own ``timestamp`` attribute, which wins over the envelope's and is covered by the hash.
#: Frozen for chain version 1 so a verifier does not depend on the exporter's code.
ENVELOPE_V1: frozenset[str] = frozenset(
    {
        "severity",
        "severity_number",
        "severity_text",
        "event_name",
        "body",
        "trace_id",
        "span_id",
        "trace_flags",
        "schema_version",
        "observed_timestamp",
        "resource",
    }
)


def canonical(record: Mapping[str, Any]) -> bytes:
    """Canonical bytes of a record: compact JSON, keys sorted at every depth, UTF-8."""
    return orjson.dumps(record, option=orjson.OPT_SORT_KEYS)


def genesis_hash(session_id: str) -> str:
    """``prev_hash`` of a session's first record: SHA-256 of a fixed prefix + session id."""
    return hashlib.sha256(f"{CHAIN_VERSION}:{session_id}".encode()).hexdigest()


def load_key(key: str | bytes | None = None) -> bytes | None:
    """The HMAC key: the argument, else ``MCP_OTEL_AUDIT_KEY``, else None (plain SHA-256)."""
    if key is None:
        key = os.environ.get(KEY_ENV) or None
    if key is None:
        return None
    if isinstance(key, str):
        key = key.encode("utf-8")
    if not key:
        return None
    return bytes(key)


def compute_hash(covered: Mapping[str, Any], key: bytes | None) -> str:
    """Hex digest over the canonical encoding of ``covered`` (which excludes ``hash``)."""
    data = canonical(covered)
    if key is None:
        return hashlib.sha256(data).hexdigest()
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def covered_fields(line: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a parsed flat line the hash covers.

    Everything except ``hash``, ``otel.*`` keys (envelope values displaced by a clashing
    attribute) and the v1 envelope fields.
    """
    return {
        k: v
        for k, v in line.items()
        if k != F_HASH and k not in ENVELOPE_V1 and not k.startswith("otel.")
    }


@dataclass
class _ChainState:
    seq: int
    head: str
    pending_loss: int = 0
    loss_first: int | None = None
    loss_last: int | None = None
    unqueued_loss: int = 0


class Chain:
    """The sealing side of one session's chain. Not thread-safe: one writer thread."""

    def __init__(self, session_id: str, key: bytes | None = None) -> None:
        self.session_id = session_id
        self.key = key
        self.alg = ALG_HMAC if key is not None else ALG_SHA256
        self._s = _ChainState(seq=0, head=genesis_hash(session_id))
        self.written_head = self._s.head
        self._unqueued_lock = threading.Lock()
        self._unqueued = 0  # reported from caller threads, consumed by the writer
        self._declared = False  # a loss declaration is in the batch being written

    @property
    def seq(self) -> int:
        return self._s.seq

    def seal(self, attrs: MutableMapping[str, Any]) -> None:
        """Number, link and hash one record in place."""
        s = self._s
        s.seq += 1
        attrs[F_SESSION] = self.session_id
        attrs[F_SEQ] = s.seq
        attrs[F_PREV] = s.head
        attrs[F_ALG] = self.alg
        if self._unqueued and not self._declared:
            with self._unqueued_lock:
                s.unqueued_loss += self._unqueued
                self._unqueued = 0
        if (s.pending_loss or s.unqueued_loss) and not self._declared:
            loss: dict[str, Any] = {"count": s.pending_loss + s.unqueued_loss}
            if s.pending_loss:
                loss["seq_first"] = s.loss_first
                loss["seq_last"] = s.loss_last
            if s.unqueued_loss:
                loss["unqueued"] = s.unqueued_loss
            attrs[F_LOST] = loss
            self._declared = True  # cleared once that record is known to be written
        if attrs.get(F_EVENT) == END_EVENT:
            attrs["records"] = s.seq
        covered = attrs if F_HASH not in attrs else {k: v for k, v in attrs.items() if k != F_HASH}
        try:
            digest = compute_hash(covered, self.key)
        except (TypeError, orjson.JSONEncodeError):
            # A value the audit logger did not encode (a caller-built record): make the
            # record plain JSON in place, so the hash covers exactly what is written.
            from mcp_otel._json import to_jsonable

            for k in list(attrs):
                attrs[k] = to_jsonable(attrs[k])
            covered = {k: v for k, v in attrs.items() if k != F_HASH}
            digest = compute_hash(covered, self.key)
        attrs[F_HASH] = digest
        s.head = digest

    def committed(self) -> None:
        """The records sealed since the last call are in the file."""
        self.written_head = self._s.head
        if self._declared:
            s = self._s
            s.pending_loss = s.unqueued_loss = 0
            s.loss_first = s.loss_last = None
            self._declared = False

    def lost(self, first_seq: int, last_seq: int) -> None:
        """Records ``first_seq..last_seq`` could not be written: re-link to the last one
        that was, and declare the gap (with any earlier undeclared one) in the next record."""
        s = self._s
        s.head = self.written_head
        s.pending_loss += last_seq - first_seq + 1
        if s.loss_first is None:
            s.loss_first = first_seq
        s.loss_last = last_seq
        self._declared = False

    def lost_unqueued(self, count: int = 1) -> None:
        """Records that never got a ``seq`` (no room in time): declared by count only.

        Thread-safe: called from the caller's thread."""
        with self._unqueued_lock:
            self._unqueued += count


# ------------------------------------------------------------------------------------
# Verification
# ------------------------------------------------------------------------------------

#: Finding codes. Warnings by default, errors with ``strict``.
SOFT_CODES = frozenset({"torn_line", "no_end_record", "declared_loss", "duplicate"})
#: Audit files are named ``mcp_audit_{YYYYMMDD}.jsonl`` (``audit.AUDIT_FILE_TEMPLATE``),
#: rotated ones ``mcp_audit_{YYYYMMDD}.{stamp}.jsonl[.gz]``: what ``verify DIR`` looks for
#: below ``DIR``.
AUDIT_FILE_PREFIX = "mcp_audit_"
#: Findings about a whole file or run: always kept with their details, past the cap.
_ALWAYS_KEPT = frozenset({"unreadable", "too_large", "too_many_findings", "no_records",
                          "too_many_sessions"})
#: Findings that mean a record was changed, added, moved or forged (not merely missing).
TAMPER_CODES = frozenset({"hash_mismatch", "broken_link", "out_of_order", "after_end",
                          "bad_end_record", "bad_alg", "unkeyed"})
#: Findings that mean records of a session are missing (lost in transit, or deleted).
MISSING_CODES = frozenset({"gap", "chain_start"})
#: Session verdicts (``SessionReport.status``), worst first.
STATUSES = ("tampered", "missing", "open", "unverified", "complete")
#: Seq ranges kept per session (``gaps``, ``declared``); every one is counted.
MAX_RANGES = 100
#: Longest resource value (host, service) or timestamp kept in a report.
_MAX_LABEL = 256


@dataclass(frozen=True)
class VerifyLimits:
    """Caps that keep verification in bounded memory and time whatever the files hold.

    ``max_line_bytes``: longer lines are skipped unread (``line_too_long``).
    ``max_kept_findings``: findings kept with their details per file (and for the findings
    about sessions, per run); every finding is counted in ``VerifyReport.counts``.
    ``max_file_findings``: after this many findings in one file (declared losses not
    counted) the rest of the file is not read (``too_many_findings``): a file that broken
    has failed anyway, and garbage then costs milliseconds, not one step per line.
    ``max_sessions``: chains followed per run; records of further sessions still have their
    hash checked (``too_many_sessions``).
    ``max_recent``: the last records remembered (session, seq, hash; ~250 bytes each) to
    recognise an OTLP record that arrives again identical (``duplicate``: an exporter retried a
    request that had in fact arrived, so an archive holds a batch twice); a copy of an
    older record is ``out_of_order``.
    """

    max_line_bytes: int = reader.MAX_LINE_BYTES
    max_kept_findings: int = 100
    max_file_findings: int = 1000
    max_sessions: int = 50_000
    max_recent: int = 65_536


@dataclass
class Finding:
    """One problem found by :func:`verify_paths`."""

    code: str
    message: str
    path: str | None = None
    line: int | None = None
    session_id: str | None = None
    severity: str = "error"
    #: Position (1-based) of the record in its line, for OTLP lines (one batch each).
    record: int | None = None


@dataclass(slots=True)
class SessionReport:
    """What was seen of one chain.

    ``host``/``service``: the ``service.instance.id`` (else ``host.name``) and
    ``service.name`` of the resource its records came with (OTLP lines only; a local
    audit file carries no resource). ``gaps``: the seq ranges ``[first, last]`` missing
    without a declaration (``missing`` counts their records); ``declared``: the ranges the
    writer itself declared lost (``declared_lost`` also counts records lost before they got
    a seq). The first :data:`MAX_RANGES` ranges of each kind are kept. ``problems``: the
    findings about this session, by code. ``status``: ``tampered`` (a record was changed,
    added, moved or forged), ``missing`` (records absent: lost in transit or deleted),
    ``open`` (no end record: writer still running, or it crashed, or its last records have
    not arrived), ``unverified`` (HMAC chain, no key), else ``complete``. ``duplicates``:
    records that arrived again identical (not counted in ``records``; one ``duplicate``
    finding per run of them).
    """

    session_id: str
    records: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    ended: bool = False
    alg: str | None = None
    declared_lost: int = 0
    files: list[str] = field(default_factory=list)
    host: str | None = None
    service: str | None = None
    missing: int = 0
    gaps: list[list[int]] = field(default_factory=list)
    declared: list[list[int]] = field(default_factory=list)
    last_timestamp: str | None = None
    problems: dict[str, int] = field(default_factory=dict)
    status: str = "open"
    duplicates: int = 0

    def _range(self, ranges: list[list[int]], first: int, last: int) -> None:
        if len(ranges) < MAX_RANGES:
            ranges.append([first, last])

    def _verdict(self) -> str:
        codes = self.problems
        if any(c in TAMPER_CODES for c in codes):
            return "tampered"
        if self.missing or any(c in MISSING_CODES for c in codes):
            return "missing"
        if not self.ended:
            return "open"
        if "key_required" in codes:
            return "unverified"
        return "complete"


@dataclass
class VerifyReport:
    """The outcome of verifying a set of files.

    ``errors`` and ``warnings`` hold the findings kept with their details (see
    :class:`VerifyLimits`); ``error_count``, ``warning_count`` and ``counts`` (per code)
    count every finding, kept or not, and decide ``ok``.
    """

    files: list[str] = field(default_factory=list)
    lines: int = 0
    sessions: dict[str, SessionReport] = field(default_factory=dict)
    errors: list[Finding] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)
    strict: bool = False
    error_count: int = 0
    warning_count: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    #: OTLP lines read, and the log records in them that are not audit records (an
    #: archive holds every log the Collector received).
    otlp_lines: int = 0
    other_records: int = 0

    @property
    def ok(self) -> bool:
        return not self.error_count

    @property
    def omitted(self) -> int:
        """Findings counted but not kept with their details."""
        return self.error_count + self.warning_count - len(self.errors) - len(self.warnings)

    def hosts(self) -> list[dict[str, Any]]:
        """Per host (``SessionReport.host``; None for local files): its sessions, records,
        missing and declared-lost records, and how many sessions have each status."""
        out: dict[str | None, dict[str, Any]] = {}
        for s in self.sessions.values():
            h = out.get(s.host)
            if h is None:
                h = out[s.host] = {"host": s.host, "service": s.service, "sessions": 0,
                                   "records": 0, "missing": 0, "declared_lost": 0,
                                   "status": {}}
            h["sessions"] += 1
            h["records"] += s.records
            h["missing"] += s.missing
            h["declared_lost"] += s.declared_lost
            h["status"][s.status] = h["status"].get(s.status, 0) + 1
        return sorted(out.values(), key=lambda h: (h["host"] is not None, h["host"] or ""))

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "strict": self.strict,
            "files": self.files,
            "lines": self.lines,
            "otlp_lines": self.otlp_lines,
            "other_records": self.other_records,
            "hosts": self.hosts(),
            "sessions": [asdict(s) for s in self.sessions.values()],
            "error_count": self.error_count,
            "warning_count": self.warning_count,
            "counts": dict(sorted(self.counts.items())),
            "omitted": self.omitted,
            "errors": [asdict(f) for f in self.errors],
            "warnings": [asdict(f) for f in self.warnings],
        }


@dataclass(slots=True)
class _Tail:
    seq: int
    hash: str
    ended: bool = False
    in_duplicates: bool = False  # the session's last record read was a duplicate


def is_audit_file_name(name: str) -> bool:
    """A name the audit logger gives its files (``mcp_audit_*.jsonl``, ``.jsonl.gz``)."""
    return name.startswith(AUDIT_FILE_PREFIX) and reader.is_jsonl_name(name)


def expand_paths(paths: Iterable[str | os.PathLike[str]],
                 on_error: Callable[[OSError], None] | None = None) -> list[Path]:
    """Files to verify, in chain order: each file named; for each directory named, its own
    ``*.jsonl``/``*.jsonl.gz`` files and the audit files (``mcp_audit_*``) at any depth
    below it, so that a data directory (``<dir>/audit/...``) can be named whole while the
    other JSONL files there (telemetry, spans, metrics) are left alone. A compressed
    rotated file is part of the chain: skipping it would leave its records unchecked.

    Files are sorted by name, which is date order for ``mcp_audit_{YYYYMMDD}...``. Raises
    ``FileNotFoundError`` for a missing path; a directory that cannot be listed goes to
    ``on_error`` (default: raised).
    """
    return reader.find_files(paths, below=is_audit_file_name, on_error=on_error)


_CHAIN_KEYS = frozenset({F_SESSION, F_SEQ, F_HASH})
#: Findings that do not count towards giving up on a file: a healthy file can hold many.
_NOT_GIVING_UP = frozenset({"declared_loss", "duplicate"})
_STRUCTURAL = re.compile(r'["{}\[\]]')
_STRING_STOP = re.compile(r'["\\]')
#: Deeper nesting than this is no record mcp-otel wrote (orjson reads at most 1024 levels).
_MAX_DEPTH = 1024
_PARTIAL_LITERAL = re.compile(r"(?<![\w.])(t|tr|tru|f|fa|fal|fals|n|nu|nul)$")
_PARTIAL_NUMBER = re.compile(r"(-|\d\.|\d[eE][-+]?)$")
_LITERAL_REST = {"t": "rue", "tr": "ue", "tru": "e", "f": "alse", "fa": "lse", "fal": "se",
                 "fals": "e", "n": "ull", "nu": "ll", "nul": "l"}


def _looks_truncated(raw: bytes) -> bool:
    """True when ``raw`` is a JSON object cut short: some ending makes it valid.

    Why not the parser's error position: a cut inside ``true``, a ``\\u`` escape or a
    number's exponent fails earlier than the end, and a crash can cut anywhere. So the
    prefix is completed (close the string, finish a literal or number, close every open
    container) and parsed; a line that no ending can repair is corrupt, not torn.
    The scan jumps between quotes, escapes and brackets with regular expressions (linear,
    no backtracking), so a long line costs little Python work.
    """
    text = raw.decode("utf-8", "replace").rstrip()
    if not text.startswith("{"):
        return False
    closers: list[str] = []
    in_string = False
    cut = len(text)  # where a partial escape starts (dropped before closing the string)
    n = len(text)
    i = 0
    while True:
        if in_string:
            m = _STRING_STOP.search(text, i)
            if m is None:
                break
            i = m.start()
            if text[i] == "\\":
                width = 6 if text[i + 1 : i + 2] == "u" else 2
                if i + width > n:
                    cut = i
                    break
                i += width
                continue
            in_string = False
            i += 1
            continue
        m = _STRUCTURAL.search(text, i)
        if m is None:
            break
        i = m.start()
        c = text[i]
        if c == '"':
            in_string = True
        elif c in "{[":
            closers.append("}" if c == "{" else "]")
            if len(closers) > _MAX_DEPTH:
                return False
        else:
            if not closers or closers.pop() != c:
                return False
            if not closers and text[i + 1 :].strip():
                return False  # something after the complete object: corrupt
        i += 1
    if not closers:
        return False  # complete (or nothing open): not a torn object
    body = text[:cut]
    if in_string:
        body += '"'
    else:
        body = body.rstrip()
        if body.endswith(","):
            body = body[:-1]
        elif body.endswith(":"):
            body += "null"
        elif m := _PARTIAL_LITERAL.search(body):
            body += _LITERAL_REST[m.group(1)]
        elif _PARTIAL_NUMBER.search(body):
            body += "0"
    tail = "".join(reversed(closers))
    for candidate in (body + tail, body + ":null" + tail):
        try:
            orjson.loads(candidate)
            return True
        except orjson.JSONDecodeError:
            continue
    return False


def verify_paths(
    paths: Iterable[str | os.PathLike[str]],
    *,
    key: str | bytes | None = None,
    strict: bool = False,
    limits: VerifyLimits | None = None,
) -> VerifyReport:
    """Verify every audit chain found in ``paths`` (files or directories, see
    :func:`expand_paths`), in memory bounded by ``limits`` whatever the files hold."""
    verifier = _Verifier(load_key(key), strict, limits or VerifyLimits())
    files = expand_paths(paths, on_error=verifier.unlistable)
    report = verifier.report
    report.files = [str(f) for f in files]
    for path, name in zip(files, report.files, strict=True):
        verifier.verify_file(path, name)
    verifier.finish()
    return report


class _Verifier:
    """The state of one verification run: the report and each chain's tail."""

    def __init__(self, hkey: bytes | None, strict: bool, limits: VerifyLimits) -> None:
        self.hkey = hkey
        self.strict = strict
        self.limits = limits
        self.report = VerifyReport(strict=strict)
        self.tails: dict[str, _Tail] = {}
        self.key_reported: set[str] = set()
        self.sessions_capped = False
        self.path: str | None = None  # the file being read
        self.kept = 0  # findings kept for it (or, after the files, for the run)
        self.found = 0  # findings in it that count towards giving up on it
        self.records = 0  # audit records in it
        self.file_otlp = False  # it holds OTLP lines (an archive: other logs are expected)
        self.total_records = 0
        self.index: int | None = None  # the record's position in an OTLP line
        self._resource: dict[str, Any] | None = None
        self.host: str | None = None  # of the record being checked
        self.service: str | None = None
        # Oldest first (see max_recent). An OrderedDict: popping a plain dict's first key
        # again and again scans the deleted slots before it, a cost that grows with the run.
        self.recent: OrderedDict[tuple[str, int], str] = OrderedDict()

    def add(self, code: str, message: str, line: int | None = None,
            session: str | None = None, *, path: str | None = None) -> None:
        soft = code in SOFT_CODES and not self.strict
        report = self.report
        report.counts[code] = report.counts.get(code, 0) + 1
        if soft:
            report.warning_count += 1
        else:
            report.error_count += 1
        if code not in _NOT_GIVING_UP:
            self.found += 1
        if session is not None:
            sess = report.sessions.get(session)
            if sess is not None:
                sess.problems[code] = sess.problems.get(code, 0) + 1
        if code not in _ALWAYS_KEPT:  # those are few, and say why the rest is missing
            if self.kept >= self.limits.max_kept_findings:
                return
            self.kept += 1
        f = Finding(code, message, path or self.path, line, session,
                    "warning" if soft else "error", self.index)
        (report.warnings if soft else report.errors).append(f)

    def unlistable(self, exc: OSError) -> None:
        self.add("unreadable", f"cannot list directory: {exc.strerror or exc}",
                 path=exc.filename)

    def verify_file(self, path: Path, name: str) -> None:
        """Stream one file line by line (memory stays flat however large it is)."""
        self.path, self.kept, self.found, self.records = name, 0, 0, 0
        self.file_otlp = False
        lines = reader.read_lines(path, max_line_bytes=self.limits.max_line_bytes)
        lineno = 0
        failed = False
        try:
            for lineno, raw, terminated, too_long, length in lines:
                self.report.lines += 1
                self._line(lineno, raw, terminated, too_long, length)
                if self.found >= self.limits.max_file_findings:
                    self.add("too_many_findings", f"{self.found} findings by line {lineno}: "
                             "the rest of the file was not read", lineno)
                    break
        except OSError as exc:
            code = "too_large" if isinstance(exc, reader.ReadLimitError) else "unreadable"
            self.add(code, f"cannot read file: {exc.strerror or exc}")
            failed = True
        finally:
            lines.close()
        if not self.records and not failed and not self.file_otlp:
            self.add("no_records", "file holds no audit record" if not lineno else
                     f"no audit record in the {lineno} line(s) read")

    def _line(self, lineno: int, raw: bytes, terminated: bool, too_long: bool,
              length: int) -> None:
        if too_long:
            self.add("line_too_long", f"line of {length} bytes, longer than the "
                     f"{self.limits.max_line_bytes}-byte cap: not checked "
                     "(--max-line-bytes reads longer lines)", lineno)
            return
        if not raw.strip():
            if raw:
                self.add("blank_line", "line holds only whitespace", lineno)
            return
        if raw.startswith((b'{"resourceSpans"', b'{"resourceMetrics"')):
            # The archive's traces and metrics: no audit record there, and not worth parsing.
            self.report.otlp_lines += 1
            self.file_otlp = True
            return
        try:
            rec = orjson.loads(raw)
        except orjson.JSONDecodeError:
            if not terminated:
                self.add("torn_line", "last line is incomplete (writer crashed or file cut)",
                         lineno)
            elif _looks_truncated(raw):
                self.add("torn_line", "incomplete line followed by later records "
                         "(a writer crashed mid-line)", lineno)
            else:
                self.add("unparseable", "line is not valid JSON", lineno)
            return
        if not isinstance(rec, dict):
            self.add("not_audit", "line is not a JSON object", lineno)
            return
        if reader.is_otlp_line(rec):
            self._otlp(rec, lineno, terminated)
            return
        res = rec.get("resource")
        self._host(res if isinstance(res, dict) else None)
        self._record(rec, lineno, terminated)

    def _host(self, resource: dict[str, Any] | None) -> None:
        """Take host and service from the resource of the records that follow."""
        if resource is self._resource:
            return
        self._resource = resource
        if resource is None:
            self.host = self.service = None
            return
        inst = resource.get("service.instance.id")
        name = resource.get("host.name")
        svc = resource.get("service.name")
        host = inst if isinstance(inst, str) else name if isinstance(name, str) else None
        self.host = host[:_MAX_LABEL] if host else None
        self.service = svc[:_MAX_LABEL] if isinstance(svc, str) else None

    def _otlp(self, doc: dict[str, Any], lineno: int, terminated: bool) -> None:
        """An OTLP/JSON line (the Collector's archive or the ``otlp`` format): one batch of
        log records. Audit records (the audit scope, or the chain fields) are checked
        exactly like flat lines, from their decoded attributes; other logs are counted."""
        self.report.otlp_lines += 1
        self.file_otlp = True
        if not terminated:
            self.add("torn_line", "last line lacks its newline (write cut short)", lineno)
        index = 0
        try:
            for log in reader.otlp_logs(doc):
                index = self.index = log.index
                if log.scope != AUDIT_SCOPE and not log.attribute_keys() >= _CHAIN_KEYS:
                    self.report.other_records += 1
                    continue
                try:
                    attrs = reader.otlp_attributes(log)
                except reader.OtlpError as exc:
                    self.add("bad_otlp", f"audit record {index} of the line: {exc}", lineno)
                    continue
                self._host(log.resource)
                self._record(attrs, lineno, True)
        except reader.OtlpError as exc:
            self.index = None
            self.add("bad_otlp", f"line breaks the OTLP/JSON mapping after its record {index}:"
                     f" {exc} (the rest of the line was not read)", lineno)
        finally:
            self.index = None

    def _session(self, sid: str, alg: Any) -> SessionReport | None:
        """The session's report, created if there is room; None past ``max_sessions``."""
        sessions = self.report.sessions
        sess = sessions.get(sid)
        if sess is None:
            if len(sessions) >= self.limits.max_sessions:
                if not self.sessions_capped:
                    self.sessions_capped = True
                    self.add("too_many_sessions", f"more than {self.limits.max_sessions} "
                             "sessions: the chains of further sessions are not followed "
                             "(their records' hashes are still checked)", session=sid)
                return None
            sess = sessions[sid] = SessionReport(session_id=sid, alg=alg, host=self.host,
                                                 service=self.service)
        if not sess.files or sess.files[-1] != self.path:
            sess.files.append(self.path)  # type: ignore[arg-type]
        return sess

    def _record(self, rec: dict[str, Any], lineno: int, terminated: bool) -> None:
        sid = rec.get(F_SESSION)
        seq = rec.get(F_SEQ)
        prev = rec.get(F_PREV)
        digest = rec.get(F_HASH)
        alg = rec.get(F_ALG)
        if not isinstance(sid, str) or type(seq) is not int or not isinstance(prev, str) \
                or not isinstance(digest, str):
            self.add("not_audit", "record lacks session_id/seq/prev_hash/hash", lineno,
                     sid if isinstance(sid, str) else None)
            return
        self.records += 1
        self.total_records += 1
        add = self.add
        sess = self._session(sid, alg)
        if not terminated:
            # A complete JSON object without its newline: the write was cut right at the end.
            add("torn_line", "last line lacks its newline (write cut short)", lineno, sid)

        # 1. the record itself
        hkey = self.hkey
        if alg == ALG_HMAC:
            if hkey is None:
                if sid not in self.key_reported and sess is not None:
                    self.key_reported.add(sid)
                    add("key_required", f"HMAC chain: set {KEY_ENV} (or --key-env) to verify",
                        lineno, sid)
                hash_ok = None
            else:
                hash_ok = hmac.compare_digest(compute_hash(covered_fields(rec), hkey), digest)
        elif alg == ALG_SHA256:
            hash_ok = hmac.compare_digest(compute_hash(covered_fields(rec), None), digest)
        else:
            add("bad_alg", f"unknown hash_alg {alg!r}", lineno, sid)
            hash_ok = None
        if hkey is not None and alg != ALG_HMAC:
            # With a key, an unkeyed record proves nothing: anyone can recompute a SHA-256
            # chain, so a chain rewritten as "sha256" must not pass as verified.
            add("unkeyed", f"seq {seq}: hash_alg is {alg!r}, not {ALG_HMAC!r}, although a key "
                "was given (record not authenticated; chain downgraded?)", lineno, sid)
        if hash_ok is False:
            add("hash_mismatch", f"seq {seq}: hash does not match the record "
                "(a field was changed, added or removed)", lineno, sid)
        if sess is None:
            return  # past max_sessions: no chain to follow
        if sess.alg != alg:
            add("bad_alg", f"seq {seq}: hash_alg changed from {sess.alg!r} to {alg!r}",
                lineno, sid)
        self._link(sess, rec, sid, seq, prev, digest, lineno)

    def _link(self, sess: SessionReport, rec: dict[str, Any], sid: str, seq: int, prev: str,
              digest: str, lineno: int) -> None:
        """2. the record's place in its chain."""
        add = self.add
        tail = self.tails.get(sid)
        if tail is None:
            if seq != 1:
                loss = rec.get(F_LOST)
                if isinstance(loss, dict) and loss.get("seq_first") == 1 \
                        and loss.get("seq_last") == seq - 1 and prev == genesis_hash(sid):
                    sess.declared_lost += seq - 1
                    sess._range(sess.declared, 1, seq - 1)
                    add("declared_loss", f"seq 1..{seq - 1} ({seq - 1} records) were lost by "
                        f"the writer and declared in seq {seq}", lineno, sid)
                else:
                    sess.missing += seq - 1
                    sess._range(sess.gaps, 1, seq - 1)
                    add("chain_start", f"chain starts at seq {seq}: records 1..{seq - 1} are "
                        "missing (pass the earlier files too?)", lineno, sid)
            elif prev != genesis_hash(sid):
                add("chain_start", "first record's prev_hash is not derived from its session "
                    "id", lineno, sid)
            tail = self.tails[sid] = _Tail(seq=seq, hash=digest)
            self._accept(tail, sess, rec, seq, lineno)
            return
        if seq <= tail.seq and self.index is not None \
                and self.recent.get((sid, seq)) == digest:
            # In an OTLP line, a record seen before, identical (same hash; its hash was
            # checked above): a batch delivered twice (an exporter retried a request that
            # had arrived; OTLP delivery is at-least-once). Nothing is lost or changed, and
            # the chain goes on from its tail. One finding per run of copies, so a re-sent
            # batch of thousands is one line of report. The audit logger never writes a
            # record twice to its own file: there, a copy is ``out_of_order``.
            sess.duplicates += 1
            if not tail.in_duplicates:
                tail.in_duplicates = True
                add("duplicate", f"seq {seq} arrives again, identical to the copy already "
                    "seen (a batch delivered twice?); the session's duplicates are counted "
                    "in its report", lineno, sid)
            return
        tail.in_duplicates = False
        if tail.ended:
            add("after_end", f"seq {seq} appears after the session's end record", lineno, sid)
        if seq == tail.seq + 1:
            if prev != tail.hash:
                add("broken_link", f"seq {seq}: prev_hash does not match seq {tail.seq}'s "
                    "hash (a record was replaced or inserted)", lineno, sid)
        elif seq > tail.seq + 1:
            loss = rec.get(F_LOST)
            declared = isinstance(loss, dict) and loss.get("seq_first") == tail.seq + 1 \
                and loss.get("seq_last") == seq - 1
            if declared and prev == tail.hash:
                n = seq - tail.seq - 1
                sess.declared_lost += n
                sess._range(sess.declared, tail.seq + 1, seq - 1)
                add("declared_loss", f"seq {tail.seq + 1}..{seq - 1} ({n} records) were lost "
                    f"by the writer and declared in seq {seq}", lineno, sid)
            else:
                sess.missing += seq - tail.seq - 1
                sess._range(sess.gaps, tail.seq + 1, seq - 1)
                why = "lines deleted or moved" if self.index is None else \
                    "never arrived: lost in transit, or deleted"
                add("gap", f"seq {tail.seq + 1}..{seq - 1} missing before seq {seq} ({why})",
                    lineno, sid)
        else:
            add("out_of_order", f"seq {seq} after seq {tail.seq} (lines inserted, moved or "
                "swapped)", lineno, sid)
        if seq > tail.seq:
            tail.seq, tail.hash = seq, digest
        self._accept(tail, sess, rec, seq, lineno)

    def _accept(self, tail: _Tail, sess: SessionReport, rec: dict[str, Any], seq: int,
                lineno: int) -> None:
        recent = self.recent
        recent[(sess.session_id, seq)] = rec[F_HASH]
        if len(recent) > self.limits.max_recent:
            recent.popitem(last=False)
        sess.records += 1
        sess.first_seq = seq if sess.first_seq is None else min(sess.first_seq, seq)
        sess.last_seq = seq if sess.last_seq is None else max(sess.last_seq, seq)
        ts = rec.get("timestamp")
        if isinstance(ts, str) and len(ts) <= _MAX_LABEL:
            sess.last_timestamp = ts
        if rec.get(F_EVENT) == END_EVENT:
            tail.ended = True
            if rec.get("records") != seq:
                self.add("bad_end_record", f"end record says {rec.get('records')!r} records, "
                         f"its seq is {seq}", lineno, sess.session_id)
        loss = rec.get(F_LOST)
        if isinstance(loss, dict) and type(loss.get("unqueued")) is int and loss["unqueued"] > 0:
            sess.declared_lost += loss["unqueued"]
            self.add("declared_loss", f"{loss['unqueued']} records found no room in the queue "
                     f"in time and were lost, declared in seq {seq}", lineno, sess.session_id)

    def finish(self) -> None:
        """Findings about whole sessions, kept up to the same cap as a file's."""
        self.path, self.kept = None, 0
        for sid, tail in self.tails.items():
            sess = self.report.sessions[sid]
            sess.ended = tail.ended
            if not tail.ended:
                self.add("no_end_record", f"session has no end record after seq {tail.seq} "
                         "(writer still running, crashed, or file cut)", None, sid)
        if self.report.otlp_lines and not self.total_records:
            self.add("no_records", f"no audit record in the {self.report.otlp_lines} OTLP "
                     "line(s) read")
        for sess in self.report.sessions.values():
            sess.status = sess._verdict()
