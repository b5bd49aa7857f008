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

import gzip
import hashlib
import hmac
import json
import os
import re
import stat
import threading
import zlib
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

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
SOFT_CODES = frozenset({"torn_line", "no_end_record", "declared_loss"})


@dataclass
class Finding:
    """One problem found by :func:`verify_paths`."""

    code: str
    message: str
    path: str | None = None
    line: int | None = None
    session_id: str | None = None
    severity: str = "error"


@dataclass
class SessionReport:
    """What was seen of one chain."""

    session_id: str
    records: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    ended: bool = False
    alg: str | None = None
    declared_lost: int = 0
    files: list[str] = field(default_factory=list)


@dataclass
class VerifyReport:
    """The outcome of verifying a set of files."""

    files: list[str] = field(default_factory=list)
    lines: int = 0
    sessions: dict[str, SessionReport] = field(default_factory=dict)
    errors: list[Finding] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)
    strict: bool = False

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "strict": self.strict,
            "files": self.files,
            "lines": self.lines,
            "sessions": [asdict(s) for s in self.sessions.values()],
            "errors": [asdict(f) for f in self.errors],
            "warnings": [asdict(f) for f in self.warnings],
        }


@dataclass
class _Tail:
    seq: int
    hash: str
    ended: bool = False


def expand_paths(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Files to verify, in chain order: directories expand to their ``*.jsonl`` and
    ``*.jsonl.gz`` files (a compressed rotated file is part of the chain: skipping it
    would leave its records unchecked).

    Files are sorted by name within a directory, which is date order for
    ``mcp_audit_{YYYYMMDD}.jsonl``. Raises ``FileNotFoundError`` for a missing path.
    """
    out: list[Path] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            found = {*path.glob("*.jsonl"), *path.glob("*.jsonl.gz")}
            out.extend(sorted(q for q in found if q.is_file()))
        elif path.exists():
            out.append(path)
        else:
            raise FileNotFoundError(str(path))
    seen: set[Path] = set()
    unique = []
    for p in out:
        r = p.resolve()
        if r not in seen:
            seen.add(r)
            unique.append(p)
    return unique


def _iter_lines(path: Path) -> Iterator[tuple[int, bytes, bool]]:
    """(line number, raw bytes, terminated) for every line; splits on ``\\n`` only.

    Only regular files are read: the file is opened non-blocking and checked with
    ``fstat`` (no race with a rename), because opening a FIFO named ``*.jsonl`` would wait
    for a writer forever. A ``.gz`` file is read through gzip, so the records inside are
    verified rather than the compressed bytes (which would pass as one torn line). Both
    refusals, and a damaged gzip stream, are ``OSError``: the file is reported unreadable.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    with open(fd, "rb") as raw_fh:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise OSError(f"not a regular file ({stat.filemode(mode)})")
        os.set_blocking(fd, True)
        fh = gzip.GzipFile(fileobj=raw_fh, mode="rb") if path.name.endswith(".gz") else raw_fh
        try:
            for n, raw in enumerate(fh, 1):
                terminated = raw.endswith(b"\n")
                yield n, raw.rstrip(b"\n").rstrip(b"\r") if terminated else raw, terminated
        except (zlib.error, EOFError) as exc:  # gzip's errors that are not OSError
            raise OSError(f"corrupt or truncated gzip: {exc}") from exc


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
    """
    text = raw.decode("utf-8", "replace").rstrip()
    if not text.startswith("{"):
        return False
    closers: list[str] = []
    in_string = False
    cut = len(text)  # where a partial escape starts (dropped before closing the string)
    i = 0
    while i < len(text):
        c = text[i]
        if in_string:
            if c == "\\":
                width = 6 if text[i + 1 : i + 2] == "u" else 2
                if i + width > len(text):
                    cut = i
                    break
                i += width
                continue
            if c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c in "{[":
            closers.append("}" if c == "{" else "]")
        elif c in "}]":
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
            json.loads(candidate)
            return True
        except json.JSONDecodeError:
            continue
    return False


def verify_paths(
    paths: Iterable[str | os.PathLike[str]],
    *,
    key: str | bytes | None = None,
    strict: bool = False,
) -> VerifyReport:
    """Verify every audit chain found in ``paths`` (files or directories)."""
    files = expand_paths(paths)
    hkey = load_key(key)
    report = VerifyReport(files=[str(f) for f in files], strict=strict)
    tails: dict[str, _Tail] = {}

    def add(code: str, message: str, path: Path | None = None, line: int | None = None,
            session: str | None = None) -> None:
        soft = code in SOFT_CODES and not strict
        f = Finding(code, message, str(path) if path else None, line, session,
                    "warning" if soft else "error")
        (report.warnings if soft else report.errors).append(f)

    for path in files:
        try:
            _verify_file(path, hkey, tails, report, add)
        except OSError as exc:
            add("unreadable", f"cannot read file: {exc.strerror or exc}", path)

    for sid, tail in tails.items():
        sess = report.sessions[sid]
        sess.ended = tail.ended
        if not tail.ended:
            add("no_end_record", f"session has no end record after seq {tail.seq} "
                "(writer still running, crashed, or file cut)", None, None, sid)
    return report


def _verify_file(path: Path, hkey: bytes | None, tails: dict[str, _Tail],
                 report: VerifyReport, add: Any) -> None:
    """Stream one file line by line (memory stays flat however large it is)."""
    for lineno, raw, terminated in _iter_lines(path):
        if not raw.strip():
            if raw:
                add("blank_line", "line holds only whitespace", path, lineno)
            continue
        report.lines += 1
        try:
            rec = orjson.loads(raw)
        except orjson.JSONDecodeError:
            if not terminated:
                add("torn_line", "last line is incomplete (writer crashed or file cut)",
                    path, lineno)
            elif _looks_truncated(raw):
                add("torn_line", "incomplete line followed by later records "
                    "(a writer crashed mid-line)", path, lineno)
            else:
                add("unparseable", "line is not valid JSON", path, lineno)
            continue
        if not isinstance(rec, dict):
            add("not_audit", "line is not a JSON object", path, lineno)
            continue
        _check_record(rec, path, lineno, terminated, hkey, tails, report, add)


def _check_record(rec: dict[str, Any], path: Path, lineno: int, terminated: bool,
                  hkey: bytes | None, tails: dict[str, _Tail], report: VerifyReport,
                  add: Any) -> None:
    sid = rec.get(F_SESSION)
    seq = rec.get(F_SEQ)
    prev = rec.get(F_PREV)
    digest = rec.get(F_HASH)
    alg = rec.get(F_ALG)
    if not isinstance(sid, str) or type(seq) is not int or not isinstance(prev, str) \
            or not isinstance(digest, str):
        add("not_audit", "record lacks session_id/seq/prev_hash/hash", path, lineno,
            sid if isinstance(sid, str) else None)
        return
    sess = report.sessions.get(sid)
    if sess is None:
        sess = report.sessions[sid] = SessionReport(session_id=sid, alg=alg)
    if str(path) not in sess.files:
        sess.files.append(str(path))
    if not terminated:
        # A complete JSON object without its newline: the write was cut right at the end.
        add("torn_line", "last line lacks its newline (write cut short)", path, lineno, sid)

    # 1. the record itself
    if alg == ALG_HMAC:
        if hkey is None:
            add("key_required", f"HMAC chain: set {KEY_ENV} (or --key-env) to verify",
                path, lineno, sid)
            hash_ok = None
        else:
            hash_ok = hmac.compare_digest(compute_hash(covered_fields(rec), hkey), digest)
    elif alg == ALG_SHA256:
        hash_ok = hmac.compare_digest(compute_hash(covered_fields(rec), None), digest)
    else:
        add("bad_alg", f"unknown hash_alg {alg!r}", path, lineno, sid)
        hash_ok = None
    if hkey is not None and alg != ALG_HMAC:
        # With a key, an unkeyed record proves nothing: anyone can recompute a SHA-256
        # chain, so a chain rewritten as "sha256" must not pass as verified.
        add("unkeyed", f"seq {seq}: hash_alg is {alg!r}, not {ALG_HMAC!r}, although a key "
            "was given (record not authenticated; chain downgraded?)", path, lineno, sid)
    if hash_ok is False:
        add("hash_mismatch", f"seq {seq}: hash does not match the record "
            "(a field was changed, added or removed)", path, lineno, sid)
    if sess.alg != alg:
        add("bad_alg", f"seq {seq}: hash_alg changed from {sess.alg!r} to {alg!r}",
            path, lineno, sid)

    # 2. its place in the chain
    tail = tails.get(sid)
    if tail is None:
        if seq != 1:
            loss = rec.get(F_LOST)
            if isinstance(loss, dict) and loss.get("seq_first") == 1 \
                    and loss.get("seq_last") == seq - 1 and prev == genesis_hash(sid):
                sess.declared_lost += seq - 1
                add("declared_loss", f"seq 1..{seq - 1} ({seq - 1} records) were lost by the "
                    f"writer and declared in seq {seq}", path, lineno, sid)
            else:
                add("chain_start", f"chain starts at seq {seq}: records 1..{seq - 1} are "
                    "missing (pass the earlier files too?)", path, lineno, sid)
        elif prev != genesis_hash(sid):
            add("chain_start", "first record's prev_hash is not derived from its session id",
                path, lineno, sid)
        tail = tails[sid] = _Tail(seq=seq, hash=digest)
        _accept(tail, sess, rec, seq, digest, path, lineno, add)
        return
    if tail.ended:
        add("after_end", f"seq {seq} appears after the session's end record", path, lineno, sid)
    if seq == tail.seq + 1:
        if prev != tail.hash:
            add("broken_link", f"seq {seq}: prev_hash does not match seq {tail.seq}'s hash "
                "(a record was replaced or inserted)", path, lineno, sid)
    elif seq > tail.seq + 1:
        loss = rec.get(F_LOST)
        declared = isinstance(loss, dict) and loss.get("seq_first") == tail.seq + 1 \
            and loss.get("seq_last") == seq - 1
        if declared and prev == tail.hash:
            n = seq - tail.seq - 1
            sess.declared_lost += n
            add("declared_loss", f"seq {tail.seq + 1}..{seq - 1} ({n} records) were lost by "
                f"the writer and declared in seq {seq}", path, lineno, sid)
        else:
            add("gap", f"seq {tail.seq + 1}..{seq - 1} missing before seq {seq} "
                "(lines deleted or moved)", path, lineno, sid)
    else:
        add("out_of_order", f"seq {seq} after seq {tail.seq} (lines inserted, moved or "
            "swapped)", path, lineno, sid)
    tail.seq, tail.hash = (seq, digest) if seq > tail.seq else (tail.seq, tail.hash)
    _accept(tail, sess, rec, seq, digest, path, lineno, add)


def _accept(tail: _Tail, sess: SessionReport, rec: dict[str, Any], seq: int,
            digest: str, path: Path, lineno: int, add: Any) -> None:
    sess.records += 1
    sess.first_seq = seq if sess.first_seq is None else min(sess.first_seq, seq)
    sess.last_seq = seq if sess.last_seq is None else max(sess.last_seq, seq)
    if rec.get(F_EVENT) == END_EVENT:
        tail.ended = True
        if rec.get("records") != seq:
            add("bad_end_record", f"end record says {rec.get('records')!r} records, "
                f"its seq is {seq}", path, lineno, sess.session_id)
    loss = rec.get(F_LOST)
    if isinstance(loss, dict) and type(loss.get("unqueued")) is int and loss["unqueued"] > 0:
        sess.declared_lost += loss["unqueued"]
        add("declared_loss", f"{loss['unqueued']} records found no room in the queue in time "
            f"and were lost, declared in seq {seq}", path, lineno, sess.session_id)
