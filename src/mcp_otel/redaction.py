"""Secret masking, safe encoding, previews and byte sizes for audit values.

Everything an audit record carries from the outside world (tool arguments, results, error
messages) passes through :class:`Redactor` *before* it reaches any sink: the OTel
pipeline, the file, OTLP. The result is plain JSON data (dict with str keys, list, str,
int, float, bool, None), so that the bytes hashed by the audit chain are exactly the bytes
the exporter writes, and the SDK's attribute cleaning has nothing left to change.

Rules (documented in docs/audit.md):

* A key is secret when one of its *parts* is in the secret list. Parts come from splitting
  on ``_ - . space`` and camelCase boundaries and lower-casing: ``db_password`` ->
  ``db, password``; ``apiKey`` -> ``api, key``; ``X-Api-Key`` -> ``x, api, key``. Whole
  parts only, so ``author`` is not ``auth`` and ``max_tokens`` is not ``token``.
* A key whose normalised form (parts joined by ``_``) is in the allow list is never
  secret: ``primary_key``, ``idempotency_key``, ...
* A two-item list whose first item is a secret-looking name (a header pair such as
  ``["X-Api-Key", "..."]``) has its second item masked like a value under that key.
* A secret value becomes ``***MASKED***`` unless it is a string that is entirely an
  environment reference (``${NAME}`` or ``$NAME``), which reveals nothing and is kept;
  ``${NAME:-default}`` is masked (the default may be the secret).
* In every string (keys not involved), passwords inside URLs/DSNs
  (``scheme://user:PASSWORD@host``, up to the last ``@`` before the host, so a password
  may contain ``@`` and ``/``), ``secretkey=value`` pairs, ``secretkey: value`` pairs
  (the key optionally quoted: JSON, Python reprs) and ``Bearer``/``Basic`` credentials
  (any case) are masked the same way; ``${ENV}`` references are kept.
* Non-JSON values are encoded safely (bytes as ``{"$base64": ...}``, non-finite floats and
  integers beyond 64 bits as strings, other objects as ``repr``), lone surrogates are
  replaced, empty keys become ``"(empty)"``. Control characters stay in the data; JSON
  escapes them, so a value can never break the one-record-per-line rule.
"""

from __future__ import annotations

import base64
import datetime as _dt
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from mcp_otel import _json, limits

MASK = "***MASKED***"

#: Osiris' list, plus a few unambiguous additions. Matched against whole key parts.
DEFAULT_SECRET_PARTS: frozenset[str] = frozenset(
    {
        "password",
        "passwd",
        "pass",
        "pwd",
        "passphrase",
        "secret",
        "key",
        "apikey",
        "token",
        "auth",
        "authorization",
        "credential",
        "credentials",
        "cookie",
        "bearer",
        "signature",
    }
)
#: Compound secrets matched on the normalised key (parts joined by ``_``).
DEFAULT_SECRET_KEYS: frozenset[str] = frozenset(
    {"api_key", "secret_access_key", "access_key_id", "private_key", "session_token"}
)
#: Keys that contain a secret-looking part but are not secrets.
DEFAULT_ALLOW_KEYS: frozenset[str] = frozenset(
    {
        "primary_key",
        "foreign_key",
        "idempotency_key",
        "cache_key",
        "sort_key",
        "partition_key",
        "key_id",
        "public_key",
        "max_tokens",
        "token_count",
        "tokens",
        "token_type",
        "author",
        "authority",
        "pass_rate",
    }
)

#: Arguments/results whose compact JSON is larger than this are replaced by a preview.
DEFAULT_PREVIEW_LIMIT = limits.PREVIEW_BYTES
#: How many bytes of the (redacted) JSON the preview keeps.
DEFAULT_PREVIEW_HEAD = limits.PREVIEW_HEAD_BYTES

_I64_MIN = -(2**63)
_U64_MAX = 2**64 - 1

_CAMEL_RE = re.compile(r"[A-Z]+(?=[A-Z][a-z0-9])|[A-Z]?[a-z0-9]+|[A-Z]+")
# ${NAME} or $NAME only: in ${NAME:-default} the default may be the secret itself
_ENV_REF_RE = re.compile(r"^\$(\{[A-Za-z_][A-Za-z0-9_]*\}|[A-Za-z_][A-Za-z0-9_]*)$")
# scheme://user:password@host. The password runs to the last '@' before the host, so it
# may itself contain '@' and '/' (unencoded, as people write them); that '@' is the last
# one before the query/fragment/end, and after a '/' the password holds no '?' or '#'
# (so "http://host:8080/x?mail=a@b.c" is a port and a query, not a password). A path
# ending in "...x@y" after a port is masked too: the safe side of an ambiguity.
_URL_PASSWORD_RE = re.compile(
    r"(?P<pre>[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@]*:)"
    r"(?P<pw>[^\s/]+?(?:/(?:[^\s?#:]|:(?!//))*?)??)"  # never across another "://"
    r"(?=@[^\s@?#]*(?:[?#\s]|$))"
)
# key=value pairs in free text (libpq DSNs, query strings, log lines)
_KV_RE = re.compile(
    r"(?P<key>[A-Za-z][A-Za-z0-9_.\-]*)(?P<sep>\s*=\s*)"
    r"(?P<val>\"[^\"]*\"|'[^']*'|[^\s&;,'\"]+)"
)
# key: value pairs in free text (log lines, HTTP headers, YAML) and the quoted forms of
# JSON ("api_key": "...") and Python reprs ('password': '...', as in pydantic's
# input_value={...}). Each quote around the key is optional on its own: a repr cut in
# the middle ("'...api_key': 'x'") keeps only the closing one. The key starts a word ('.'
# excepted: the cut mark "..." may precede it), and neither the key nor the value follows
# a "//": "https://token:pw@h" is a URL (its password has its own rule), and "12:30" has
# no key. After an auth scheme word ("Authorization: Bearer x") the credential is the
# value, so the token cannot survive behind a masked scheme name. A quoted value honours
# backslash escapes; a value whose closing quote was cut off runs like an unquoted one.
# A flat {...}, [...] or (...) value is masked whole, as a dict or list under a secret key
# is ("{SSHA}hash" is not one: the bracket must end the value).
_COLON_RE = re.compile(
    r"(?<![A-Za-z0-9_\-])(?<!//)(?P<kq>['\"]?)(?P<key>[A-Za-z][A-Za-z0-9_.\-]*)"
    r"(?P<sep>['\"]?\s*:(?!//)\s*)"
    # the value is looked at, not consumed: in "error: password: x" the scan must still
    # find "password" after the non-secret "error" (see Redactor._colon_pass)
    r"(?=(?P<scheme>(?i:bearer|basic|token|negotiate)\s+)?"
    r"(?P<val>\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'"
    r"|(?:\{[^{}]*\}|\[[^\[\]]*\]|\([^()]*\))(?=[\s,;&}\])]|$)|[\"']?[^\s&;,'\"]+))"
)
# An exception class name before ": message" (KeyError, TokenExpiredError): the text after
# it is the message, whose first word is no secret value (other rules still mask inside).
_EXCEPTION_NAME_RE = re.compile(r"(?:Error|Exception|Warning)$")
# The colons _COLON_RE can act on: not "://" (excluded there), not ":***MASKED***" (a
# value that starts with the mask is left as it is)
_COLON_HINT_RE = re.compile(r":(?!//|" + re.escape(MASK) + ")")
# An HTTP Basic credential is standard base64 of "user:password" (RFC 7617): after "Basic"
# only a token that is valid base64 (correct padding, or none) ending where the base64
# alphabet ends, and that decodes to bytes holding a ':' (0x3A), is masked, so that prose
# ("basic configuration missing") is kept. Both checks are in the pattern itself (no
# decoding): 4 characters carry 3 bytes, and ':' as byte 0, 1 or 2 of a group is
# "O[g-v]", "?[DTjz][opqr]" or "??[AEIMQUYcgkosw048]6" aligned on a group boundary.
_B64 = "[A-Za-z0-9+/]"
_BASIC_CREDENTIAL = (
    rf"(?-i:(?=(?:{_B64}{{4}})*(?:{_B64}{{2}}(?:==)?|{_B64}{{3}}=?)?(?![A-Za-z0-9+/=]))"
    rf"(?=(?:{_B64}{{4}})*?(?:O[g-v]|{_B64}[DTjz][opqr]|{_B64}{{2}}[AEIMQUYcgkosw048]6)))"
)
_BEARER_RE = re.compile(
    rf"(?P<pre>\b(?:Bearer\s+|Basic\s+(?={_BASIC_CREDENTIAL})))"
    r"(?P<val>[A-Za-z0-9._~+/=\-]{6,})",
    re.IGNORECASE,
)
_AUTH_HINT_RE = re.compile(r"bearer|basic", re.IGNORECASE)


def _maybe_secret_text(text: str) -> bool:
    """False only for text that :meth:`Redactor.mask_text` would return unchanged.

    A URL password needs an ``@``, a key=value pair an ``=``, a key: value pair a ``:``,
    a credential its scheme. For ASCII text (nearly all) four C-level scans decide; other
    text takes the case-insensitive pattern itself, which also matches ``ı``, ``İ`` and
    ``ſ`` as ASCII letters (``casefold`` does not).
    """
    if "=" in text or "@" in text or ":" in text:
        return True
    if text.isascii():
        lowered = text.lower()
        return "bearer" in lowered or "basic" in lowered
    return _AUTH_HINT_RE.search(text) is not None


def key_parts(key: str) -> list[str]:
    """Lower-cased parts of ``key``: split on separators and camelCase boundaries."""
    parts: list[str] = []
    for chunk in re.split(r"[\s_\-.:/]+", key):
        if chunk:
            parts.extend(p.lower() for p in _CAMEL_RE.findall(chunk))
    return parts


def _split_env_list(value: str | None) -> set[str]:
    if not value:
        return set()
    return {"_".join(key_parts(v)) or v.strip().lower() for v in value.split(",") if v.strip()}


class Snapshot:
    """A value as received, frozen as its compact JSON (:func:`mcp_otel._json.dumps`).

    Why: the audit caller must capture arguments at call time (the caller may mutate them
    right after) and measure their size anyway; the JSON bytes are both, for one C call.
    Masking the snapshot can then wait for the audit writer thread, off the caller's
    path. The ``repr`` shows only the size, so a snapshot that reached a sink by mistake
    would leak nothing.
    """

    __slots__ = ("json",)

    def __init__(self, json: bytes) -> None:
        self.json = json

    def __repr__(self) -> str:
        return f"<Snapshot of {len(self.json)} bytes>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Snapshot) and other.json == self.json

    __hash__ = None  # type: ignore[assignment]


def snapshot(value: Any) -> Snapshot:
    """Freeze ``value`` as JSON now (the module table of :mod:`mcp_otel._json`).

    The bytes are copied into an object of their own size: orjson returns its working
    buffer shrunk in place, a system-malloc block of a kilobyte or more, and holding
    thousands of those in the audit queue fragmented the heap (a 1,000,000-call burst grew
    RSS by 190 MB instead of 38 MB).
    """
    return Snapshot(bytes(memoryview(_json.dumps(value))))


@dataclass(frozen=True)
class RedactedValue:
    """A value ready for an audit record, with what is known about the original."""

    value: Any
    original_bytes: int
    truncated: bool


@dataclass
class Redactor:
    """Masks secrets and encodes values safely; one instance per :class:`AuditLogger`.

    ``secret_keys`` / ``allow_keys`` extend (not replace) the defaults, as do the
    environment variables ``MCP_OTEL_REDACT_KEYS`` and ``MCP_OTEL_REDACT_ALLOW``
    (comma-separated). Each entry is normalised like a key, so ``"sessionId"`` and
    ``"session_id"`` are the same entry; a one-part entry is a secret *part*.
    """

    secret_keys: Iterable[str] = ()
    allow_keys: Iterable[str] = ()
    preview_limit: int = DEFAULT_PREVIEW_LIMIT
    preview_head: int = DEFAULT_PREVIEW_HEAD
    _parts: frozenset[str] = field(init=False, repr=False)
    _compounds: frozenset[str] = field(init=False, repr=False)
    _allow: frozenset[str] = field(init=False, repr=False)
    _cache: dict[str, bool] = field(init=False, repr=False, default_factory=dict)
    _kv_hint: re.Pattern[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        extra = {"_".join(key_parts(k)) for k in self.secret_keys if k}
        extra |= _split_env_list(os.environ.get("MCP_OTEL_REDACT_KEYS"))
        allow = {"_".join(key_parts(k)) for k in self.allow_keys if k}
        allow |= _split_env_list(os.environ.get("MCP_OTEL_REDACT_ALLOW"))
        self._parts = DEFAULT_SECRET_PARTS | {k for k in extra if "_" not in k}
        self._compounds = DEFAULT_SECRET_KEYS | {k for k in extra if "_" in k}
        self._allow = DEFAULT_ALLOW_KEYS | allow
        if self.preview_head > self.preview_limit:
            raise ValueError("preview_head must not exceed preview_limit")
        # A secret key contains, lower-cased, one of these as a substring (key parts are
        # contiguous runs of the key's own letters and digits; a compound key holds all
        # of its parts, so one part per compound is enough), so text without any of them
        # cannot hold a secret key=value pair: most text skips the key=value pass.
        words = set(self._parts)
        for compound in self._compounds:
            parts = [p for p in compound.split("_") if p]
            if parts and not words.intersection(parts):
                words.add(max(parts, key=len))
        minimal = {w for w in words if not any(o != w and o in w for o in words)}
        self._kv_hint = re.compile("|".join(re.escape(w) for w in sorted(minimal)))

    # -- keys -------------------------------------------------------------------------

    def is_secret_key(self, key: str) -> bool:
        """True when values under ``key`` must be masked."""
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        parts = key_parts(key)
        norm = "_".join(parts)
        if norm in self._allow:
            result = False
        elif norm in self._compounds:
            result = True
        else:
            result = any(p in self._parts for p in parts)
            if not result:
                # compounds inside longer keys: "aws_secret_access_key", "my_api_key"
                result = any(f"_{c}_" in f"_{norm}_" for c in self._compounds)
        if len(self._cache) < 4096:
            self._cache[key] = result
        return result

    # -- values -----------------------------------------------------------------------

    def mask_text(self, text: str) -> str:
        """Mask credentials inside free text (URLs/DSNs, key=value, key: value, Bearer).

        The key=value and key: value passes only run on text holding one of the secret
        words (``_kv_hint``): most text has none, and skipping is cheaper than scanning.
        """
        if "://" in text and "@" in text:
            text = _URL_PASSWORD_RE.sub(self._url_sub, text)
        has_eq = "=" in text
        # a colon of "://" or one right before a mask (a URL password masked above) can
        # change nothing: URLs with a password then skip the hint search, as before
        has_colon = ":" in text and _COLON_HINT_RE.search(text) is not None
        if (has_eq or has_colon) and self._kv_hint.search(text.casefold()):
            if has_eq:
                text = _KV_RE.sub(self._kv_sub, text)
            if has_colon:
                text = self._colon_pass(text)
        if _AUTH_HINT_RE.search(text):
            text = _BEARER_RE.sub(lambda m: m.group("pre") + MASK, text)
        return text

    @staticmethod
    def _url_sub(match: re.Match[str]) -> str:
        pw = match.group("pw")
        if pw == MASK or _ENV_REF_RE.match(pw):
            return match.group(0)
        return match.group("pre") + MASK

    def _kv_sub(self, match: re.Match[str]) -> str:
        val = match.group("val")
        if not self.is_secret_key(match.group("key")):
            return match.group(0)
        bare = val.strip("'\"")
        if bare == MASK or _ENV_REF_RE.match(bare):
            return match.group(0)
        return match.group("key") + match.group("sep") + MASK

    def _colon_pass(self, text: str) -> str:
        """Mask the value of every secret ``key: value`` in ``text``.

        A loop rather than ``re.sub``: the pattern only looks ahead at a value, so a key
        hidden in a non-secret pair's value is still found; a value masked here is not
        searched for keys again.
        """
        out: list[str] = []
        pos = 0
        for match in _COLON_RE.finditer(text):
            if match.start() < pos:
                continue  # inside a value masked just now
            masked = self._colon_value(match)
            if masked is None:
                continue
            out.append(text[pos:match.start("val")])
            out.append(masked)
            pos = match.end("val")
        if not out:
            return text
        out.append(text[pos:])
        return "".join(out)

    def _colon_value(self, match: re.Match[str]) -> str | None:
        """The masked value of a ``key: value`` match, or None to keep it. A quoted value
        keeps its quotes (and an auth scheme word stays, outside the value), so a masked
        JSON object or repr still reads as one."""
        key = match.group("key")
        if _EXCEPTION_NAME_RE.search(key) or not self.is_secret_key(key):
            return None  # "KeyError: 'user_id'" is a message, not a secret key
        val = match.group("val")
        bare = val.strip("'\"")
        if bare.startswith(MASK) or _ENV_REF_RE.match(bare):
            return None  # masked already ("https://token:***MASKED***@host")
        quote = val[0] if val[0] in "'\"" else ""
        return f"{quote}{MASK}{quote}"

    def _mask_secret(self, value: Any) -> Any:
        if isinstance(value, str) and _ENV_REF_RE.match(value.strip()):
            return value
        if value is None:
            return None
        return MASK

    def clean(self, value: Any, _depth: int = 0, _path: set[int] | None = None) -> Any:
        """JSON-safe copy of ``value`` with secrets masked, at any depth.

        A container that is already on the path from the root (a cycle) is written as
        ``"<cycle>"``, like :mod:`mcp_otel._json` does; shared, non-cyclic references are
        written in full each time.
        """
        if value is None or value is True or value is False:
            return value
        t = type(value)
        if t is str:
            return self._clean_str(value)
        if t is int:  # beyond 64 bits: decimal text (a summary beyond limits.MAX_INT_BITS)
            return value if _I64_MIN <= value <= _U64_MAX else limits.int_text(value)
        if t is float:
            return value if math.isfinite(value) else _json._float(value)
        if _depth > 64:
            return "[DEPTH LIMIT]"
        if (
            t is dict or t is list or t is tuple
            or isinstance(value, Mapping | list | tuple | set | frozenset)
        ):
            path = set() if _path is None else _path
            ident = id(value)
            if ident in path:
                return "<cycle>"
            path.add(ident)
            try:
                return self._clean_container(value, _depth + 1, path)
            finally:
                path.discard(ident)
        if isinstance(value, bytes | bytearray | memoryview):
            return {"$base64": base64.b64encode(bytes(value)).decode("ascii")}
        if isinstance(value, bool):
            return bool(value)
        if isinstance(value, int):
            return self.clean(int(value), _depth)
        if isinstance(value, float):
            return self.clean(float(value), _depth)
        if isinstance(value, str):
            return self._clean_str(str(value))
        if isinstance(value, _dt.datetime | _dt.date | _dt.time):
            return value.isoformat()
        try:
            text = repr(value)
        except Exception:  # a broken __repr__ must not lose the record
            text = f"<unrepresentable {type(value).__name__}>"
        return self._clean_str(text)

    def _clean_container(self, value: Any, depth: int, path: set[int]) -> Any:
        if type(value) is dict or isinstance(value, Mapping):
            # Scalars are handled inline: this loop is the audit caller's hot path.
            out: dict[str, Any] = {}
            known = self._cache
            hint = _maybe_secret_text
            for k, v in value.items():
                key = k if type(k) is str and k and k.isascii() else self._clean_key(k)
                secret = known.get(key)
                if secret is None:
                    secret = self.is_secret_key(key)
                if secret:
                    out[key] = self._mask_secret(v)
                    continue
                t = type(v)
                plain = (
                    (t is str and v.isascii() and not hint(v))
                    or (t is int and _I64_MIN <= v <= _U64_MAX)
                    or v is None
                    or t is bool
                )
                out[key] = v if plain else self.clean(v, depth, path)
            return out
        if isinstance(value, list | tuple):
            if len(value) == 2 and isinstance(value[0], str) and self.is_secret_key(value[0]):
                # a (name, value) header pair: [["X-Api-Key", "..."]]
                return [self.clean(value[0], depth, path), self._mask_secret(value[1])]
            return [self.clean(v, depth, path) for v in value]
        # set / frozenset: a deterministic order that no __repr__ can break
        return [self.clean(v, depth, path) for v in sorted(value, key=_json._repr)]

    def error_text(self, error: Any) -> str | None:
        """The text of a tool error, for :meth:`redact`; never raises.

        A mapping or sequence is cleaned (secrets masked by key) *before* it becomes text;
        anything else is ``str(error)``, or its safe ``repr`` when ``__str__`` raises.
        """
        if error is None or isinstance(error, str):
            return error
        if isinstance(error, Mapping | list | tuple | set | frozenset):
            return str(self.clean(error))
        try:
            return str(error)
        except Exception:  # a broken __str__ must not lose the record
            return _json._repr(error)

    def _clean_key(self, key: Any) -> str:
        if type(key) is str and key and key.isascii():
            return key
        if not isinstance(key, str):
            key = key.decode("utf-8", "replace") if isinstance(key, bytes) else _str_key(key)
        key = _fix_surrogates(key)
        return key or "(empty)"

    def _clean_str(self, text: str) -> str:
        if not text.isascii():
            text = _fix_surrogates(text)
        if _maybe_secret_text(text):
            return self.mask_text(text)
        return text

    def redact(self, value: Any) -> RedactedValue:
        """Clean ``value``; replace it by a preview string when its JSON is too large.

        ``original_bytes`` is the UTF-8 size of the compact JSON of the value *as received*
        (before masking), which is what ``bytes_in``/``bytes_out`` report.
        """
        return self._preview(self.clean(value), size_of(value))

    def redact_snapshot(self, snap: Snapshot) -> RedactedValue:
        """:meth:`redact` for a value frozen by :func:`snapshot`.

        The snapshot holds plain JSON, so values JSON cannot hold appear in the encoded
        form of :mod:`mcp_otel._json` (``"NaN"``, ISO dates, ``$base64``, ...) and are
        then masked like any other value.
        """
        return self._preview(self.clean(orjson.loads(snap.json)), len(snap.json))

    def _preview(self, cleaned: Any, original: int) -> RedactedValue:
        if original <= self.preview_limit:
            return RedactedValue(cleaned, original, False)
        encoded = _json.dumps(cleaned)
        if len(encoded) <= self.preview_limit:
            return RedactedValue(cleaned, original, False)
        head = encoded[: self.preview_head].decode("utf-8", "ignore")
        return RedactedValue(f"{head}... [TRUNCATED: {original} bytes total]", original, True)


def size_of(value: Any) -> int:
    """UTF-8 size of the compact JSON of ``value`` (never raises)."""
    if value is None:
        return 4
    try:
        return len(_json.dumps(value))
    except Exception:
        try:
            return len(_json.dumps(_json.to_jsonable(value)))
        except Exception:
            return len(repr(value).encode("utf-8", "replace"))


def _str_key(key: Any) -> str:
    try:
        return str(key)
    except Exception:  # a broken __str__ must not lose the record
        return _json._repr(key)


def _fix_surrogates(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return text
