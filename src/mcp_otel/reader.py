"""The one reader of mcp-otel's JSON Lines files: ``verify``, ``stats``, the demo and
``mcp_otel.testing`` all read through it, and so can users' own tools (the names in
``__all__`` are public API): ``read_records`` for the flat files, ``find_files`` for a
directory tree (rotated and gzipped files included), ``otlp_logs``/``otlp_attributes`` for
newline-delimited OTLP/JSON such as the Collector's file-exporter archive.

Why one streaming reader with caps: these files are read back by tools that must not trust
them (a file may be damaged, cut by a crash, replaced by an attacker, or be no JSONL at
all), so reading one costs memory bounded by constants, never by the file's size:

* Files are read in chunks of :data:`CHUNK_BYTES` and split on ``\\n`` only. A line longer
  than ``max_line_bytes`` (:data:`MAX_LINE_BYTES`, 1 MiB, by default) is never held: the
  reader skips to its newline chunk by chunk and yields it as too long, without its data.
  Why 1 MiB: parsed into Python objects a JSON line takes up to ~36x its size (measured
  with orjson on lines of tiny objects), so one line stays under ~40 MB, and the largest
  line mcp-otel writes is a few KiB (payloads are previews of 4 KiB each).
* A ``.gz`` file is decompressed incrementally, at most one chunk at a time, and at most
  ``max(``:data:`GZIP_MIN_BYTES` ``, ``:data:`GZIP_MAX_RATIO` `` x compressed size)``
  bytes of it are read (1 GiB, or 100x the file: our JSONL compresses ~9x (audit) to
  ~27x (repetitive telemetry events), deflate can reach ~1000x): past that the file is a
  decompression bomb and reading stops with :class:`ReadLimitError`.
* Only regular files are read (a FIFO named ``*.jsonl`` would block the reader forever).
* Runs of empty lines are skipped in bulk, so even a file of nothing but newlines is read
  at the speed of the regular-expression engine, not one Python step per line.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import stat
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import orjson

__all__ = [
    "MAX_LINE_BYTES", "JsonlError", "OtlpError", "OtlpLogRecord", "RawLine", "ReadLimitError",
    "find_files", "is_otlp_line", "metric_attributes", "otlp_attributes", "otlp_logs",
    "read_lines", "read_records",
]

#: Longest line read (bytes, without its newline); longer lines are skipped, not held.
MAX_LINE_BYTES = 1 << 20
#: Size of each read (and of each decompressed piece of a ``.gz`` file).
CHUNK_BYTES = 1 << 20
#: A ``.gz`` file is read up to ``max(GZIP_MIN_BYTES, GZIP_MAX_RATIO * compressed size)``.
GZIP_MIN_BYTES = 1 << 30
GZIP_MAX_RATIO = 100
_GZIP_INPUT_BYTES = 1 << 16

_NEWLINES = re.compile(rb"\n+")

#: Envelope keys of flat metric lines (mirrors ``exporters.FLAT_METRIC_ENVELOPE``; kept
#: here so files are read even where the exporters are not importable).
METRIC_ENVELOPE = frozenset({
    "timestamp", "start_timestamp", "metric", "type", "unit", "description", "temporality",
    "monotonic", "value", "count", "sum", "min", "max", "bucket_bounds", "bucket_counts",
    "scale", "zero_count", "positive", "negative", "scope", "schema_version", "resource",
})

#: Top-level keys of an ``otlp``-format line (an OTLP JSON export request).
_OTLP_KEYS = ("resourceLogs", "resourceSpans", "resourceMetrics")


class ReadLimitError(OSError):
    """A ``.gz`` file decompresses to more than its cap: reading it stopped there."""


class JsonlError(ValueError):
    """A line that is not a JSON object where records are expected; one user-facing line."""


class RawLine(NamedTuple):
    """One line of a file, as :func:`read_lines` yields it.

    ``data`` is the line without its ``\\n`` (and trailing ``\\r``); empty when the line
    is ``too_long``. ``terminated`` is False only for a last line without its newline (a
    writer cut short). ``length`` is the line's size in bytes, also when it was skipped.
    """

    number: int
    data: bytes
    terminated: bool
    too_long: bool
    length: int


# --------------------------------------------------------------------------- files


def is_jsonl_name(name: str) -> bool:
    """``*.jsonl`` or ``*.jsonl.gz``: the names mcp-otel gives its files (rotated too)."""
    return name.endswith(".jsonl") or name.endswith(".jsonl.gz")


def find_files(paths: Iterable[str | os.PathLike[str]],
               below: Callable[[str], bool] = is_jsonl_name,
               on_error: Callable[[OSError], None] | None = None) -> list[Path]:
    """The files to read: each file named, and for each directory named, its own JSONL
    files plus every file at any depth below it whose name ``below`` accepts.

    Files are ordered by name (then path), which is date order for mcp-otel's
    ``..._{YYYYMMDD}...`` names, also across subdirectories; each file is listed once.
    Symbolic links to directories are not followed (no loops). Raises
    ``FileNotFoundError`` for a path that does not exist; a directory that cannot be
    listed goes to ``on_error`` (default: raised), so it is never skipped silently.
    """
    out: list[Path] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            found: list[Path] = []
            for root, dirs, names in os.walk(path, onerror=on_error or _raise):
                dirs.sort()
                top = root == str(path)
                found.extend(Path(root, n) for n in names
                             if (is_jsonl_name(n) if top else below(n)))
            found.sort(key=lambda f: (f.name, str(f)))
            out.extend(f for f in found if f.is_file())
        elif path.exists():
            out.append(path)
        else:
            raise FileNotFoundError(str(path))
    seen: set[Path] = set()
    unique = []
    for f in out:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique


def _raise(exc: OSError) -> None:
    raise exc


def _open_regular(path: Path) -> BinaryIO:
    """Open for reading, refusing anything but a regular file, without blocking on a FIFO.

    Non-blocking open, then ``fstat`` on the descriptor (no race with a rename)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise OSError(f"not a regular file ({stat.filemode(mode)})")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return open(fd, "rb", buffering=0)


def gzip_limit(compressed_size: int) -> int:
    """Most bytes read from a ``.gz`` file of ``compressed_size`` bytes."""
    return max(GZIP_MIN_BYTES, GZIP_MAX_RATIO * compressed_size)


def _chunks(path: Path, offset: int) -> Iterator[bytes]:
    """The file's bytes (decompressed for ``.gz``), one bounded chunk at a time."""
    with _open_regular(path) as fh:
        size = os.fstat(fh.fileno()).st_size
        if not path.name.endswith(".gz"):
            if 0 < offset <= size:
                fh.seek(offset)
            while chunk := fh.read(CHUNK_BYTES):
                yield chunk
            return
        limit = gzip_limit(size)
        total = 0
        try:
            for chunk in _gunzip(fh):
                total += len(chunk)
                if total > limit:
                    raise ReadLimitError(
                        f"decompresses to more than {limit} bytes (the cap for a "
                        f"{size}-byte .gz file): a decompression bomb? Not read further")
                yield chunk
        except zlib.error as exc:
            raise OSError(f"corrupt or truncated gzip: {exc}") from exc


def _gunzip(fh: BinaryIO) -> Iterator[bytes]:
    """Inflate a gzip file (any number of members, zero padding between them, as the
    ``gzip`` module accepts) into pieces of at most :data:`CHUNK_BYTES`.

    Why not ``gzip.GzipFile``: it inflates in small steps through two buffering layers and
    read a 1 GiB bomb about 5x slower than zlib driven directly. zlib checks each member's
    CRC-32 and length; a cut file raises ``zlib.error`` here too.
    """
    inflater = zlib.decompressobj(31)  # 16 + 15: gzip header and trailer, 32 KiB window
    in_member = False
    data = b""
    while True:
        if not data:
            data = fh.read(_GZIP_INPUT_BYTES)
            if not data:
                break
        if not in_member:
            data = data.lstrip(b"\0")
            if not data:
                continue
            if inflater.eof:
                inflater = zlib.decompressobj(31)
            in_member = True
        while True:
            out = inflater.decompress(data, CHUNK_BYTES)
            if out:
                yield out
            if inflater.eof:
                data, in_member = inflater.unused_data, False
                break
            data = inflater.unconsumed_tail
            if not data and len(out) < CHUNK_BYTES:
                break  # input used up and no output pending: read more
    if in_member:
        raise zlib.error("compressed file ended before the end-of-stream marker was reached")


def read_lines(path: str | os.PathLike[str], *, max_line_bytes: int = MAX_LINE_BYTES,
               offset: int = 0) -> Iterator[RawLine]:
    """Every non-empty line of ``path``, in bounded memory (see the module docstring).

    ``offset``: start at this byte (the size an append-only file had before); ignored when
    the file is now shorter (it was replaced) or compressed. Line numbers then count from
    the offset. Raises ``OSError`` when the file cannot be read (:class:`ReadLimitError`
    past a ``.gz`` file's cap), after yielding the lines read until then.
    """
    path = Path(path)
    number = 0
    carry = b""  # the start of a line that continues in the next chunk
    skipping = -1  # bytes so far of an over-long line being skipped; -1 when not skipping
    for chunk in _chunks(path, offset):
        pos = 0
        if skipping >= 0:
            nl = chunk.find(b"\n")
            if nl < 0:
                skipping += len(chunk)
                continue
            number += 1
            yield RawLine(number, b"", True, True, skipping + nl)
            skipping = -1
            pos = nl + 1
        if carry:  # never while skipping: an over-long line has no carry
            buf, carry = carry + chunk, b""
        else:
            buf = chunk
        find = buf.find
        while (nl := find(b"\n", pos)) >= 0:
            if nl == pos:  # a run of empty lines
                end = _NEWLINES.match(buf, pos).end()  # type: ignore[union-attr]
                number += end - pos
                pos = end
                continue
            number += 1
            length = nl - pos
            if length > max_line_bytes:
                yield RawLine(number, b"", True, True, length)
            else:
                yield RawLine(number, buf[pos:nl].rstrip(b"\r"), True, False, length)
            pos = nl + 1
        rest = len(buf) - pos
        if rest > max_line_bytes:
            skipping = rest
        elif rest:
            carry = buf[pos:]
    if skipping >= 0:
        yield RawLine(number + 1, b"", False, True, skipping)
    elif carry:
        yield RawLine(number + 1, carry, False, False, len(carry))


# --------------------------------------------------------------------------- records


def read_records(path: str | os.PathLike[str], *,
                 warn: Callable[[str], None] | None = None,
                 max_line_bytes: int = MAX_LINE_BYTES,
                 offset: int = 0) -> Iterator[dict[str, Any]]:
    """Each line of ``path`` as a dict, for readers of events, spans and metrics.

    Blank lines are skipped. A line that is not valid JSON, or not a JSON object, raises
    :class:`JsonlError` (the file is not one of ours). Two things a healthy file can hold
    are skipped with a message to ``warn``: a last line without its newline that does not
    parse (a writer killed mid-line; the rest of the file is good), and a line longer than
    ``max_line_bytes``. ``OSError`` as :func:`read_lines`.
    """
    for number, data, terminated, too_long, length in read_lines(
            path, max_line_bytes=max_line_bytes, offset=offset):
        if too_long:
            if warn is not None:
                warn(f"{path}:{number}: skipped a line of {length} bytes (longer than "
                     f"the {max_line_bytes}-byte line cap)")
            continue
        try:
            record = orjson.loads(data)
        except orjson.JSONDecodeError:
            if not data.strip():
                continue
            if not terminated:
                if warn is not None:
                    warn(f"{path}:{number}: skipped a partial last line "
                         "(the writer stopped mid-line)")
                return
            raise JsonlError(f"{path}:{number}: not a JSON Lines file "
                             "(line is not valid JSON)") from None
        if not isinstance(record, dict):
            raise JsonlError(f"{path}:{number}: not a JSON Lines event file "
                             "(line is not a JSON object)")
        yield record


def metric_attributes(rec: dict[str, Any]) -> dict[str, Any]:
    """A flat metric line's data-point attributes: every key but the envelope's (and the
    ``otel.``-prefixed envelope values an attribute of the same name displaced)."""
    return {k: v for k, v in rec.items()
            if k not in METRIC_ENVELOPE and not k.startswith("otel.")}


def is_otlp_line(rec: dict[str, Any]) -> bool:
    """True for a line of the ``otlp`` format (``MCP_OTEL_JSONL_FORMAT=otlp``): one OTLP
    JSON export request, its records nested under ``resourceLogs``/``Spans``/``Metrics``."""
    return any(isinstance(rec.get(key), list) for key in _OTLP_KEYS)


# --------------------------------------------------------------------------- OTLP/JSON logs
#
# The Collector's file exporter (``logs.jsonl`` and its rotated files) and the ``otlp`` line
# format both write one OTLP/JSON ``LogsData`` per line. Decoded here by the OTLP/JSON rules
# (https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding), not with the SDK's
# private modules: ``intValue`` is a decimal string (a JSON number is accepted too),
# ``doubleValue`` a number or ``"NaN"``/``"Infinity"``/``"-Infinity"`` (the Collector writes
# ``1.0`` as ``1``, so the kind, not the JSON number, says it is a float), ``bytesValue``
# base64, an empty ``AnyValue`` ``{}`` is no value (None), and ids are hex.

#: Deepest ``AnyValue`` nesting decoded; each level is 4 JSON levels, and orjson reads at
#: most 1024, so no document orjson accepts comes near it. A guard, not a limit in use.
MAX_ANY_DEPTH = 256
_INT64_MIN = -(2**63)
_UINT64_MAX = 2**64 - 1  # uint64 values of other writers fit too
_INT_TEXT = re.compile(r"-?[0-9]{1,20}")
_SPECIAL_DOUBLES = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}
_B64 = re.compile(r"[A-Za-z0-9+/_-]*={0,2}")


class OtlpError(ValueError):
    """A document that breaks the OTLP/JSON mapping (wrong type, unknown value kind,
    duplicate attribute key); the message names what and where, never echoes data."""


class OtlpLogRecord(NamedTuple):
    """One log record of an OTLP/JSON ``LogsData`` line, in document order.

    ``resource``: the decoded resource attributes (shared by the records of one
    ``ResourceLogs``); ``scope``: the instrumentation scope's name; ``index``: 1-based
    position of the record in the line; ``raw``: the record's JSON object, attributes not
    yet decoded (see :func:`otlp_attributes`), so records nobody asks about cost nothing.
    """

    resource: dict[str, Any]
    scope: str | None
    index: int
    raw: dict[str, Any]

    def attribute_keys(self) -> set[str]:
        """The attribute names, without decoding a value (to pick records cheaply)."""
        attrs = self.raw.get("attributes")
        if type(attrs) is not list:
            return set()
        return {kv.get("key") for kv in attrs if type(kv) is dict and type(kv.get("key")) is str}


def any_value(node: Any, depth: int = 0) -> Any:
    """The Python value of an OTLP/JSON ``AnyValue``: str, bool, int, float, bytes, list,
    dict, or None for the empty value. Raises :class:`OtlpError` for anything else."""
    if type(node) is not dict:
        raise OtlpError("an AnyValue is not a JSON object")
    if not node:
        return None
    if len(node) != 1:
        raise OtlpError(f"an AnyValue holds {len(node)} kinds (one expected)")
    if depth >= MAX_ANY_DEPTH:
        raise OtlpError(f"AnyValue nested deeper than {MAX_ANY_DEPTH} levels")
    ((kind, v),) = node.items()
    t = type(v)
    if kind == "stringValue":
        if t is str:
            return v
    elif kind == "boolValue":
        if t is bool:
            return v
    elif kind == "intValue":
        if t is str and _INT_TEXT.fullmatch(v):  # at most 20 digits: int() stays cheap
            v, t = int(v), int
        if t is int and _INT64_MIN <= v <= _UINT64_MAX:
            return v
    elif kind == "doubleValue":
        if t is float or t is int:
            return float(v)
        if t is str and v in _SPECIAL_DOUBLES:
            return _SPECIAL_DOUBLES[v]
    elif kind == "bytesValue":
        if t is str and _B64.fullmatch(v):
            try:
                return base64.b64decode(v.replace("-", "+").replace("_", "/"))
            except binascii.Error:
                pass
    elif kind == "arrayValue":
        if t is dict:
            values = v.get("values", [])
            if type(values) is list:
                return [any_value(item, depth + 1) for item in values]
    elif kind == "kvlistValue":
        if t is dict:
            return key_values(v.get("values", []), depth + 1)
    else:
        raise OtlpError(f"unknown AnyValue kind {kind[:64]!r}")
    raise OtlpError(f"{kind} holds a {t.__name__}, not a valid {kind}")


def key_values(items: Any, depth: int = 0) -> dict[str, Any]:
    """A list of OTLP/JSON ``KeyValue`` objects as a dict (insertion order kept).

    A repeated key is an error (the spec forbids it, and which copy a reader keeps would
    decide what a hash covers)."""
    if type(items) is not list:
        raise OtlpError("attributes are not a JSON array")
    out: dict[str, Any] = {}
    for kv in items:
        if type(kv) is not dict or type(key := kv.get("key")) is not str:
            raise OtlpError("an attribute is not a {key, value} object")
        if key in out:
            raise OtlpError(f"attribute {key[:64]!r} appears twice")
        value = kv.get("value", {})
        # Fast path for the commonest value (most audit fields are strings): the same
        # result as any_value, without its call.
        if type(value) is dict and len(value) == 1 and \
                type(text := value.get("stringValue")) is str:
            out[key] = text
        else:
            out[key] = any_value(value, depth)
    return out


def otlp_attributes(record: OtlpLogRecord) -> dict[str, Any]:
    """The decoded attributes of one log record (:class:`OtlpError` when malformed)."""
    return key_values(record.raw.get("attributes", []))


def otlp_logs(line: dict[str, Any]) -> Iterator[OtlpLogRecord]:
    """The log records of one OTLP/JSON line (``LogsData``/``ExportLogsServiceRequest``),
    with their resource and scope, in document order. Spans and metrics lines yield
    nothing. Raises :class:`OtlpError` where the structure breaks (records before it
    have been yielded)."""
    resource_logs = line.get("resourceLogs", [])
    if type(resource_logs) is not list:
        raise OtlpError("resourceLogs is not a JSON array")
    index = 0
    for rl in resource_logs:
        if type(rl) is not dict:
            raise OtlpError("a ResourceLogs is not a JSON object")
        res = rl.get("resource", {})
        if type(res) is not dict:
            raise OtlpError("a resource is not a JSON object")
        resource = key_values(res.get("attributes", []))
        scope_logs = rl.get("scopeLogs", [])
        if type(scope_logs) is not list:
            raise OtlpError("scopeLogs is not a JSON array")
        for sl in scope_logs:
            if type(sl) is not dict:
                raise OtlpError("a ScopeLogs is not a JSON object")
            scope = sl.get("scope", {})
            name = scope.get("name") if type(scope) is dict else None
            records = sl.get("logRecords", [])
            if type(records) is not list:
                raise OtlpError("logRecords is not a JSON array")
            for raw in records:
                index += 1
                if type(raw) is not dict:
                    raise OtlpError(f"log record {index} is not a JSON object")
                yield OtlpLogRecord(resource, name if type(name) is str else None, index, raw)
