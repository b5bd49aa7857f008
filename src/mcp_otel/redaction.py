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
* Every rule takes time linear in the text, whatever it holds (the patterns' comments
  say why), and a payload over the preview limit is masked only as far as its preview
  shows, plus ``PREVIEW_MARGIN`` characters of context (:meth:`Redactor.mask_preview`,
  :meth:`Redactor._preview`); what is still open at such a cut is masked to the cut.
* Non-JSON values are encoded safely (bytes as ``{"$base64": ...}``, non-finite floats and
  integers beyond 64 bits as strings, other objects as ``repr``), lone surrogates are
  replaced, empty keys become ``"(empty)"``. Control characters stay in the data; JSON
  escapes them, so a value can never break the one-record-per-line rule.
"""

from __future__ import annotations

import base64
import datetime as _dt
import math
import re
import string
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from mcp_otel import _json, _settings, limits
from mcp_otel._regex import check_engine, compile_linear

check_engine()

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

#: Characters of context kept past a cut before masking (:meth:`Redactor.mask_preview`,
#: previews of large payloads): a credential that starts before the cut and ends within
#: this margin is masked exactly as in the whole text; one that runs further is masked up
#: to the end of the margin (see ``_mask_open_tail``).
PREVIEW_MARGIN = 256

_I64_MIN = -(2**63)
_U64_MAX = 2**64 - 1
#: Keys longer than this are not cached by :meth:`Redactor.is_secret_key` (memory bound).
_CACHE_KEY_MAX = 256

# Every pattern on untrusted text runs in linear time. The rules below are the ones the
# audit trail always had; what changed is how they find their starts. The old patterns
# let a key or scheme start at every position of a run of key characters and scan to the
# run's end each time, so "token=abc " + 60 KB of hex took 15-32 s. Now:
#
# * a key or URL scheme starts only where a run of its characters starts (a negative
#   lookbehind for the same class) and the run is taken whole (possessive ``*+``): a run
#   that is not a key is scanned once. All start positions inside a run share the run's
#   end, and a shorter key can never be followed by the separator (the next character is
#   a key character), so the match is the one the old leftmost search found;
# * a value whose end the old pattern only looked at (key: value) is measured with a
#   forward search whose result is cached for the next, later start (``_NextStop``);
# * nothing else repeats: quoted values, brackets and URL passwords are scanned once from
#   one start, and the regions scanned from different starts do not overlap (each comment
#   says why).
#
# No quantifier here is nested in another over the same characters, and the only
# lookaheads are bounded (``(?!//)``) or scan a region no other start scans again.
#
# Every pattern is compiled by ``compile_linear`` (mcp_otel._regex), which spells each
# possessive quantifier as the atomic group the re docs define it to be: CPython 3.11.0
# to 3.11.4 match possessive loops over groups wrongly and left secrets unmasked.

_CAMEL_RE = compile_linear(r"[A-Z]+(?=[A-Z][a-z0-9])|[A-Z]?[a-z0-9]+|[A-Z]+")
# ${NAME} or $NAME only: in ${NAME:-default} the default may be the secret itself
_ENV_REF_RE = compile_linear(r"^\$(\{[A-Za-z_][A-Za-z0-9_]*\}|[A-Za-z_][A-Za-z0-9_]*)$")
# scheme://user: -- the scheme starts at the first letter of its run of scheme characters
# (leading digits, '+', '.', '-' are kept in the match, outside the password).
_URL_PRE = r"(?<![A-Za-z0-9+.\-])[0-9+.\-]*+[A-Za-z][A-Za-z0-9+.\-]*+://[^\s:/@]*+:"
_URL_PRE_RE = compile_linear(_URL_PRE)
# scheme://user:password@host. The password runs to the last '@' before the host, so it
# may itself contain '@' and '/' (unencoded, as people write them); that '@' is the last
# one before the query/fragment/end, and after a '/' the password holds no '?' or '#'
# (so "http://host:8080/x?mail=a@b.c" is a port and a query, not a password). A path
# ending in "...x@y" after a port is masked too: the safe side of an ambiguity.
# The password is the shortest stretch (one character at least; no '/' before its
# optional path, no '?', '#' or "://" inside the path) that ends right before an '@'
# whose host ends the URL (_AT_HOST). Written as possessive loops that step over every
# '@' whose host does not: the same match as a lazy scan, without a backtracking state
# per character. Linear: the password part cannot cross '/' before its path nor "://"
# inside it, so the stretches scanned from two schemes never overlap, and the host
# check runs from each '@' only to the next '@'.
_AT_HOST = r"[^\s@?#]*+(?:[?#\s]|$)"  # after an '@': the host, then the URL's end
_URL_PASSWORD_RE = compile_linear(
    _URL_PRE
    + rf"(?P<pw>[^\s/](?:[^\s/@]++|@(?!{_AT_HOST}))*+"
    rf"(?:/(?:[^\s?#:@]++|:(?!//)|@(?!{_AT_HOST}))*+)?)"  # never across another "://"
    rf"(?=@{_AT_HOST})"
)
# key=value pairs in free text (libpq DSNs, query strings, log lines). The key starts at
# the first letter of its run; a quoted value ends at the next quote of its kind (so only
# the last quote of each kind in the text can be unterminated, and it is scanned from one
# key only). An unterminated quoted value ("open") is found so that a text cut short can
# mask it (Redactor._kv_pass); in a whole text it is no value, as it always was.
_KV_RE = compile_linear(
    r"(?<![A-Za-z0-9_.\-])[0-9_.\-]*+(?P<key>[A-Za-z][A-Za-z0-9_.\-]*+)(?P<sep>\s*+=\s*+)"
    r"(?P<val>\"[^\"]*+\"|'[^']*+'|[^\s&;,'\"]++|(?P<open>[\"'])[^\s&;,'\"]++)"
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
#
# The pattern finds a run of key characters and its separator; Redactor._colon_pass
# picks the key inside the run (its first letter at the run's start or right after a
# '.') and measures the value only when the key is secret (_colon_value). Each Redactor
# compiles it with a lookahead for its secret words (_colon_key_pattern), scanned from
# the run's start only: runs that cannot hold a secret key never reach Python.
_COLON_KEY_RUN = r"[A-Za-z0-9_.\-]++(?P<sep>['\"]?\s*+:(?!//)\s*+)"
_DOT_LETTER_RE = compile_linear(r"\.[A-Za-z]")
_KEY_LETTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_KEY_BEHIND = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_AUTH_SCHEME_RE = compile_linear(r"(?:bearer|basic|token|negotiate)\s++", re.IGNORECASE)
# The body of a quoted value (escapes honoured, no escaped newline) and the characters
# that end an unquoted one.
_DQ_BODY_RE = compile_linear(r"(?:[^\"\\]|\\.)*+")
_SQ_BODY_RE = compile_linear(r"(?:[^'\\]|\\.)*+")
_VALUE_END_RE = compile_linear(r"[\s&;,'\"]")
_BRACKETS = {"{": ("}", compile_linear(r"[{}]")), "[": ("]", compile_linear(r"[\[\]]")),
             "(": (")", compile_linear(r"[()]"))}
_AFTER_BRACKET = frozenset(",;&}])")
# An exception class name before ": message" (KeyError, TokenExpiredError): the text after
# it is the message, whose first word is no secret value (other rules still mask inside).
_EXCEPTION_SUFFIXES = ("Error", "Exception", "Warning")
# The colons the key: pattern can act on: not "://" (excluded there), not ":***MASKED***" (a
# value that starts with the mask is left as it is)
_COLON_HINT_RE = compile_linear(r":(?!//|" + re.escape(MASK) + ")")
# An HTTP Basic credential is standard base64 of "user:password" (RFC 7617): after "Basic"
# only a token that is valid base64 (correct padding, or none) ending where the base64
# alphabet ends, and that decodes to bytes holding a ':' (0x3A), is masked, so that prose
# ("basic configuration missing") is kept. Both checks are in the pattern itself (no
# decoding): 4 characters carry 3 bytes, and ':' as byte 0, 1 or 2 of a group is
# "O[g-v]", "?[DTjz][opqr]" or "??[AEIMQUYcgkosw048]6" aligned on a group boundary.
# Linear: both lookaheads scan, in fixed groups of 4, the one token that follows a scheme
# word and its whitespace; a token ends at the first character outside its alphabet
# (whitespace included), so no two scheme words scan the same token.
_B64 = "[A-Za-z0-9+/]"
# Both loops over 4-character groups are possessive: giving a group back can never let
# the padding and the end check succeed (the padding takes at most 3 of its characters),
# and the first group that starts a ':' is the one a lazy search would stop at.
_B64_COLON = rf"(?:O[g-v]|{_B64}[DTjz][opqr]|{_B64}{{2}}[AEIMQUYcgkosw048]6)"
_BASIC_CREDENTIAL = (
    rf"(?-i:(?=(?:{_B64}{{4}})*+(?:{_B64}{{2}}(?:==)?|{_B64}{{3}}=?)?(?![A-Za-z0-9+/=]))"
    rf"(?=(?:(?!{_B64_COLON}){_B64}{{4}})*+{_B64_COLON}))"
)
_BEARER_RE = compile_linear(
    rf"(?P<pre>\b(?:Bearer\s+|Basic\s+(?={_BASIC_CREDENTIAL})))"
    r"(?P<val>[A-Za-z0-9._~+/=\-]{6,})",
    re.IGNORECASE,
)
_AUTH_HINT_RE = compile_linear(r"bearer|basic", re.IGNORECASE)
# For a text cut short (_mask_open_tail), matched at the start of the reversed text: its
# last run without whitespace, and a credential after an auth scheme word running into
# the cut ("Bearer tok" reversed is "kot reraeB"; the word boundary before the scheme
# word is the lookahead after it).
_NON_SPACE_RE = compile_linear(r"\S*+")
_AUTH_TAIL_REVERSED_RE = compile_linear(
    r"(?P<val>[A-Za-z0-9._~+/=\-]++)\s++(?:reraeb|cisab)(?!\w)", re.IGNORECASE
)


def _maybe_secret_text(text: str) -> bool:
    """False only for text that :meth:`Redactor.mask_text` would return unchanged.

    A URL password needs an ``@``, a key=value pair an ``=``, a key: value pair a ``:``,
    a credential its scheme.
    """
    if "=" in text or "@" in text or ":" in text:
        return True
    return _has_auth_word(text)


def _has_auth_word(text: str) -> bool:
    """Whether ``text`` holds ``bearer`` or ``basic`` in any case. For ASCII text (nearly
    all) two C-level scans decide; other text takes the case-insensitive pattern itself,
    which also matches ``ı``, ``İ`` and ``ſ`` as ASCII letters (``casefold`` does not)."""
    if text.isascii():
        lowered = text.lower()
        return "bearer" in lowered or "basic" in lowered
    return _AUTH_HINT_RE.search(text) is not None


def key_parts(key: str) -> list[str]:
    """Lower-cased parts of ``key``: split on separators and camelCase boundaries.

    The camelCase pattern matches ASCII letters and digits only, so one pass over the
    whole key gives the parts of each chunk between separators (``_ - . : / space``) in
    order, and the parts are lower-cased in one call: a hostile key of 500,000 parts
    costs C loops, not Python ones. Linear: an upper-case run is scanned by the first
    alternative, given back one character at a time to its lookahead, and then taken
    whole by the last one; nothing is rescanned from a later start.
    """
    found = _CAMEL_RE.findall(key)
    return "_".join(found).lower().split("_") if found else []


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


_POLICY_LOCK = threading.Lock()
_configured_secret: frozenset[str] = frozenset()
_configured_allow: frozenset[str] = frozenset()
_policy: Redactor | None = None


def configure(*, secret_keys: Iterable[str] = (), allow_keys: Iterable[str] = ()) -> None:
    """Add key names to the process's one redaction policy.

    Why one policy: a secret named once (``AuditLogger(secret_keys=...)``, this function,
    ``MCP_OTEL_REDACT_KEYS``) must be masked by every sink, not only by the one it was
    given to: the audit trail, telemetry events, span attributes, status and exception
    events, and the error texts the instrumentation records. Names are only ever added;
    every redactor built afterwards, and :func:`policy`, includes them.
    """
    global _configured_secret, _configured_allow, _policy
    secret = {k for k in secret_keys if k}
    allow = {k for k in allow_keys if k}
    if not secret and not allow:
        return
    with _POLICY_LOCK:
        _configured_secret = _configured_secret | secret
        _configured_allow = _configured_allow | allow
        _policy = None


def policy() -> Redactor:
    """The process's redactor (defaults, environment, :func:`configure`d names); the one
    the sinks without preview settings of their own use."""
    global _policy
    current = _policy
    if current is None:
        with _POLICY_LOCK:
            if _policy is None:
                _policy = Redactor()
            current = _policy
    return current


@dataclass
class Redactor:
    """Masks secrets and encodes values safely.

    ``secret_keys`` / ``allow_keys`` extend (not replace) the defaults, as do the
    environment variables ``MCP_OTEL_REDACT_KEYS`` and ``MCP_OTEL_REDACT_ALLOW``
    (comma-separated) and the process policy (:func:`configure`). Each entry is normalised
    like a key, so ``"sessionId"`` and ``"session_id"`` are the same entry; a one-part
    entry is a secret *part*.
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
    _colon_key_re: re.Pattern[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        extra = {"_".join(key_parts(k)) for k in (*self.secret_keys, *_configured_secret) if k}
        extra |= _split_env_list(_settings.env_text("MCP_OTEL_REDACT_KEYS"))
        allow = {"_".join(key_parts(k)) for k in (*self.allow_keys, *_configured_allow) if k}
        allow |= _split_env_list(_settings.env_text("MCP_OTEL_REDACT_ALLOW"))
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
        self._kv_hint = compile_linear("|".join(re.escape(w) for w in sorted(minimal)))
        self._colon_key_re = _colon_key_pattern(sorted(minimal))

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
            result = not self._parts.isdisjoint(parts)
            if not result:
                # compounds inside longer keys: "aws_secret_access_key", "my_api_key"
                result = any(f"_{c}_" in f"_{norm}_" for c in self._compounds)
        if len(self._cache) < 4096 and len(key) <= _CACHE_KEY_MAX:
            self._cache[key] = result
        return result

    # -- values -----------------------------------------------------------------------

    def mask_text(self, text: str) -> str:
        """Mask credentials inside free text (URLs/DSNs, key=value, key: value, Bearer).

        Linear in ``len(text)`` whatever the text holds (see the patterns' comments). The
        key=value and key: value passes only run on text holding one of the secret words
        (``_kv_hint``): most text has none, and skipping is cheaper than scanning.
        """
        return self._mask(text, False)

    def mask_preview(self, text: str, limit: int) -> str:
        """``text`` masked and cut to at most ``limit`` characters, masking only what is kept.

        A text that fits once masked is returned whole. Otherwise the result is the first
        ``limit - len(mark)`` characters of the masked text (never the first characters of
        a mask: a mask the cut would split is dropped whole) followed by the mark
        ``... [TRUNCATED: N characters total]`` (N: the length of ``text``), so it is never
        longer than ``limit`` (nor than the mark, for a limit shorter than the mark). Only
        ``text[:kept + PREVIEW_MARGIN]`` is masked, so the cost is bounded by ``limit``,
        not by the text: a credential that starts before the cut is masked as in the whole
        text when it ends within the margin, and up to the end of the margin when it runs
        further (a quoted value, a URL or a token still open there).
        """
        mark = f"... [TRUNCATED: {len(text)} characters total]"
        keep = max(0, limit - len(mark))
        if len(text) <= limit:
            masked = self._mask(text, False) if _maybe_secret_text(text) else text
            if len(masked) <= limit:
                return masked
        else:
            masked = self._mask_window(text, keep)
        return _cut_masked(masked, keep) + mark

    def _mask_window(self, text: str, keep: int) -> str:
        """The masked form of ``text[:keep + PREVIEW_MARGIN]``, for a text longer than that
        (what continues past the window is masked to its end, ``_mask_open_tail``)."""
        window = text[: keep + PREVIEW_MARGIN]
        return self._mask(window, True) if _maybe_secret_text(window) else window

    def _mask(self, text: str, cut: bool) -> str:
        """:meth:`mask_text`; with ``cut``, ``text`` was cut from a longer one, so a value
        still open at its end (an unterminated quote or bracket, a URL, a token) may go on
        past it and is masked to the end."""
        if "://" in text and "@" in text:
            text = _URL_PASSWORD_RE.sub(self._url_sub, text)
        has_eq = "=" in text
        # a colon of "://" or one right before a mask (a URL password masked above) can
        # change nothing: URLs with a password then skip the hint search, as before
        has_colon = ":" in text and _COLON_HINT_RE.search(text) is not None
        if (has_eq or has_colon) and self._kv_hint.search(text.casefold()):
            if has_eq:
                text = self._kv_pass(text, cut)
            if has_colon:
                text = self._colon_pass(text, cut)
        if _has_auth_word(text):
            text = _BEARER_RE.sub(lambda m: m.group("pre") + MASK, text)
        if cut:
            text = _mask_open_tail(text)
        return text

    @staticmethod
    def _url_sub(match: re.Match[str]) -> str:
        pw = match.group("pw")
        if pw == MASK or _ENV_REF_RE.match(pw):
            return match.group(0)
        return match.string[match.start() : match.start("pw")] + MASK

    def _kv_pass(self, text: str, cut: bool = False) -> str:
        """Mask the value of every secret ``key=value`` in ``text``.

        A quoted value with no closing quote ("open") is no value: the search resumes
        right after that quote, so a pair inside it is still found. Only in a text cut
        short (``cut``) does an open value of a secret key count, masked to the end: its
        closing quote may be past the cut.
        """
        out: list[str] = []
        last = at = 0
        n = len(text)
        while (match := _KV_RE.search(text, at)) is not None:
            secret = self.is_secret_key(match.group("key"))
            if match.group("open") is not None and not (cut and secret):
                at = match.start("val") + 1  # no pair: resume inside the quote
                continue
            if not secret:
                at = match.end()
                continue
            v0, at = match.span("val")
            if match.group("open") is not None:
                at = n  # cut: the closing quote may be past the cut
            bare = text[v0:at].strip("'\"")
            if bare == MASK or _ENV_REF_RE.match(bare):
                continue
            out.append(text[last:v0])
            out.append(MASK)
            last = at
        if not out:
            return text
        out.append(text[last:])
        return "".join(out)

    def _colon_pass(self, text: str, cut: bool = False) -> str:
        """Mask the value of every secret ``key: value`` in ``text``.

        The pattern only finds a key and its separator, so a key hidden in a non-secret
        pair's value is still found; a value masked here is not searched for keys again
        (the search resumes after it: no run of key characters crosses a value's end).
        The key is the run from its first letter at the run's start or right after a '.'
        (the old pattern's leftmost start); only a secret key's value is measured.
        """
        out: list[str] = []
        pos = at = 0
        ends = _NextStop(_VALUE_END_RE, text)
        known = self._cache
        search = self._colon_key_re.search
        while (match := search(text, at)) is not None:
            at = match.end()
            rs = match.start()
            key_end = match.start("sep")
            if text[rs] in _KEY_LETTERS and (rs < 2 or text[rs - 2 : rs] != "//"):
                key_start = rs
                start = rs - 1 if rs == pos and _key_quote_before(text, rs) else rs
            else:
                dot = _DOT_LETTER_RE.search(text, rs, key_end)
                if dot is None:
                    continue
                key_start = start = dot.start() + 1
            if start < pos:
                continue  # its opening quote closed the value masked just now
            key = text[key_start:key_end]
            secret = known.get(key)
            if secret is None:
                secret = self.is_secret_key(key)
            if not secret or key.endswith(_EXCEPTION_SUFFIXES):
                continue  # "KeyError: 'user_id'" is a message, not a secret key
            span = _colon_value(text, at, ends, cut)
            if span is None:
                continue
            masked = _masked_colon_value(text, *span)
            if masked is None:
                continue
            out.append(text[pos : span[0]])
            out.append(masked)
            pos = at = span[1]
        if not out:
            return text
        out.append(text[pos:])
        return "".join(out)

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

    def _clean_str(self, text: str, cut: bool = False) -> str:
        if not text.isascii():
            text = _fix_surrogates(text)
        if _maybe_secret_text(text):
            return self._mask(text, cut)
        return text

    def redact(self, value: Any) -> RedactedValue:
        """Clean ``value``; replace it by a preview string when its JSON is too large.

        ``original_bytes`` is the UTF-8 size of the compact JSON of the value *as received*
        (before masking), which is what ``bytes_in``/``bytes_out`` report. A value over
        the preview limit is frozen as JSON first (as :func:`snapshot` does) and only what
        the preview can show is masked (:meth:`_preview`).
        """
        size = size_of(value)
        if size <= self.preview_limit:
            return RedactedValue(self.clean(value), size, False)
        try:
            plain = orjson.loads(_json.dumps(value))
        except Exception:  # pragma: no cover - _json.dumps does not raise
            return RedactedValue(self.clean(value), size, False)
        return self._preview(plain, size)

    def redact_snapshot(self, snap: Snapshot) -> RedactedValue:
        """:meth:`redact` for a value frozen by :func:`snapshot`.

        The snapshot holds plain JSON, so values JSON cannot hold appear in the encoded
        form of :mod:`mcp_otel._json` (``"NaN"``, ISO dates, ``$base64``, ...) and are
        then masked like any other value.
        """
        plain = orjson.loads(snap.json)
        if len(snap.json) <= self.preview_limit:
            return RedactedValue(self.clean(plain), len(snap.json), False)
        return self._preview(plain, len(snap.json))

    def _preview(self, plain: Any, original: int) -> RedactedValue:
        """A payload of ``original`` bytes (over the preview limit), as the record holds it.

        Mask only what is written: the payload (plain JSON data) is cleaned in JSON order
        until ``preview_limit`` characters of it have been looked at; a string that would
        run past that point is cut first, keeping ``PREVIEW_MARGIN`` characters beyond it
        (:meth:`_mask_window`), and the rest of the payload is not looked at. So a 60 MB
        argument costs what a 4 KB one does. When nothing had to be cut and the cleaned
        value fits the limit (masking shortened it), it is written whole, as before;
        otherwise the first ``preview_head`` bytes of its JSON and the truncation mark.
        """
        budget = _Budget(self.preview_limit + 1)
        cleaned = self._clean_bounded(plain, budget, 0)
        encoded = _json.dumps(cleaned)
        if not budget.cut and len(encoded) <= self.preview_limit:
            return RedactedValue(cleaned, original, False)
        head = encoded[: self.preview_head].decode("utf-8", "ignore")
        return RedactedValue(f"{head}... [TRUNCATED: {original} bytes total]", original, True)

    def _clean_bounded(self, value: Any, budget: _Budget, depth: int) -> Any:
        """:meth:`clean` for plain JSON data, stopping once ``budget`` is spent.

        Every string, key and scalar is charged its length as received (masking may
        shorten it, but it had to be looked at); a container stops taking items when the
        budget is gone and then marks the budget ``cut``.
        """
        t = type(value)
        if t is str:
            keep = max(budget.left, 0)
            budget.left -= len(value) + 2
            if len(value) > keep + PREVIEW_MARGIN:
                budget.cut = True
                window = value[: keep + PREVIEW_MARGIN]
                return self._clean_str(window, True)
            return self._clean_str(value)
        if t is not dict and t is not list:
            cleaned = self.clean(value, depth)
            budget.left -= 1 if type(cleaned) is not str else len(cleaned) + 2
            return cleaned
        if depth > 64:
            budget.left -= len("[DEPTH LIMIT]") + 2
            return "[DEPTH LIMIT]"
        budget.left -= 2
        if t is list:
            if (len(value) == 2 and type(value[0]) is str
                    and len(value[0]) <= budget.left + PREVIEW_MARGIN
                    and self.is_secret_key(value[0])):
                # a (name, value) header pair, as in clean()
                name = self._clean_bounded(value[0], budget, depth + 1)
                return [name, self._mask_secret_bounded(value[1], budget)]
            items: list[Any] = []
            for item in value:
                if budget.left <= 0:
                    budget.cut = True
                    break
                items.append(self._clean_bounded(item, budget, depth + 1))
                budget.left -= 1
            return items
        out: dict[str, Any] = {}
        for k, v in value.items():
            if budget.left <= 0:
                budget.cut = True
                break
            key = self._clean_key(k)
            if len(key) > budget.left + PREVIEW_MARGIN:  # its value is past the preview
                out[key[: budget.left + PREVIEW_MARGIN]] = MASK
                budget.left = 0
                budget.cut = True
                break
            budget.left -= len(key) + 4
            if self.is_secret_key(key):
                out[key] = self._mask_secret_bounded(v, budget)
            else:
                out[key] = self._clean_bounded(v, budget, depth + 1)
        return out

    def _mask_secret_bounded(self, value: Any, budget: _Budget) -> Any:
        """:meth:`_mask_secret`; a string too long for the preview is masked without
        reading it (it could only have been kept as an environment reference)."""
        if type(value) is str and len(value) > max(budget.left, 0) + PREVIEW_MARGIN:
            masked: Any = MASK
        else:
            masked = self._mask_secret(value)
        budget.left -= len(masked) + 2 if type(masked) is str else 4
        return masked


class _Budget:
    """Characters of a payload still to be looked at for its preview, and whether any
    part of it was left out."""

    __slots__ = ("cut", "left")

    def __init__(self, left: int) -> None:
        self.left = left
        self.cut = False


class _NextStop:
    """Where the next match of ``pattern`` at or after a position is, for positions
    asked in increasing order: a start inside the stretch already searched reuses its
    result, so many keys whose values share one long run search it once."""

    __slots__ = ("_hi", "_lo", "_pattern", "_text")

    def __init__(self, pattern: re.Pattern[str], text: str) -> None:
        self._pattern = pattern
        self._text = text
        self._lo = self._hi = -1

    def at(self, start: int) -> int:
        if self._lo <= start <= self._hi:
            return self._hi
        found = self._pattern.search(self._text, start)
        self._lo, self._hi = start, found.start() if found else len(self._text)
        return self._hi


def _colon_key_pattern(words: list[str]) -> re.Pattern[str]:
    """The ``key:`` pattern for runs holding one of ``words`` (lower-case ASCII letters
    and digits) in any ASCII case.

    A secret key is a suffix of its run and holds one of the words, so no secret key is
    lost. The lookahead scans the run once, from its start (a cheap check first: most
    positions start no run): it skips characters that start no word in blocks and the
    others one by one, and stops at the first word. The case is spelled out in classes
    (``[Tt][Oo]...``): ``re.IGNORECASE`` costs ten times more per position and also folds
    non-ASCII letters (``K``, ``ſ``) that no key holds.
    """
    def either(c: str) -> str:
        return f"[{c.upper()}{c}]" if c.isalpha() else re.escape(c)

    alternatives = "|".join("".join(either(c) for c in w) for w in words)
    firsts = {c for w in words for c in {w[0], w[0].upper()}}
    run = string.ascii_letters + string.digits + "_.-"
    others = "".join(re.escape(c) for c in run if c not in firsts)
    starts = "".join(re.escape(c) for c in sorted(firsts))
    word_ahead = rf"(?=(?:[{others}]++|(?!{alternatives})[{starts}])*+(?:{alternatives}))"
    return compile_linear(r"(?<![A-Za-z0-9_.\-])(?=[A-Za-z0-9_.\-])" + word_ahead + _COLON_KEY_RUN)


def _key_quote_before(text: str, rs: int) -> bool:
    """Whether the quote before the key at ``rs`` opens it (``"api_key": ...``): a quote
    that starts a word itself and follows no "//"."""
    return (
        rs > 0 and text[rs - 1] in "'\""
        and (rs < 2 or text[rs - 2] not in _KEY_BEHIND)
        and (rs < 3 or text[rs - 3 : rs - 1] != "//")
    )


def _colon_value(text: str, start: int, ends: _NextStop, cut: bool) -> tuple[int, int] | None:
    """The span of the value of a ``key:`` whose separator ends at ``start``, or None.

    After an auth scheme word and its whitespace the value is the credential when there
    is one; else the scheme word itself is the value. In a text cut short, a credential
    that runs into the cut is masked with its scheme word: had the text ended there, the
    word would have been the value.
    """
    scheme = _AUTH_SCHEME_RE.match(text, start)
    if scheme is not None:
        span = _value_span(text, scheme.end(), ends, cut)
        if span is not None:
            return (start, span[1]) if cut and span[1] == len(text) else span
    return _value_span(text, start, ends, cut)


def _value_span(text: str, s: int, ends: _NextStop, cut: bool) -> tuple[int, int] | None:
    """The value starting at ``s``: a quoted string (escapes honoured), a flat bracket
    that ends the value, or an unquoted run (after the opening quote of a string whose
    closing quote is missing). With ``cut``, a quote or bracket still open at the end of
    the text runs to that end.

    Linear over all calls of one pass: a quote or bracket here follows a separator, never
    a backslash or an earlier scan's unclosed bracket, so no two scans overlap; unquoted
    runs come from ``ends``.
    """
    n = len(text)
    if s >= n:
        return None
    c = text[s]
    start = s
    if c == '"' or c == "'":
        body = (_DQ_BODY_RE if c == '"' else _SQ_BODY_RE).match(text, s + 1)
        stop = body.end() if body is not None else s + 1  # it always matches (maybe empty)
        if stop < n and text[stop] == c:
            return s, stop + 1
        if cut and stop >= n:
            return s, n
        start = s + 1
    elif c in _BRACKETS:
        close, stops = _BRACKETS[c]
        found = stops.search(text, s + 1)
        if found is None:
            if cut:
                return s, n
        else:
            j = found.start()
            if text[j] == close and (j + 1 >= n or text[j + 1] in _AFTER_BRACKET
                                     or text[j + 1].isspace()):
                return s, j + 1
    end = ends.at(start)
    return (s, end) if end > start else None


def _masked_colon_value(text: str, v0: int, v1: int) -> str | None:
    """The masked form of the value ``text[v0:v1]``, or None to keep it. A quoted value
    keeps its quotes (and an auth scheme word stays, outside the value), so a masked JSON
    object or repr still reads as one. A value that starts with the mask (a URL password
    masked already) or that is an environment reference is kept. The mask check reads
    positions, not a slice: a value kept for its mask may be long and lie inside the next
    key's value; any other value is masked (the search resumes after it) or is an
    environment reference (no ':' inside), so it is read once."""
    i = v0
    while i < v1 and text[i] in "'\"":
        i += 1
    j = v1
    while j > i and text[j - 1] in "'\"":
        j -= 1
    if text.startswith(MASK, i, j) or _ENV_REF_RE.match(text[i:j]):
        return None
    quote = text[v0] if text[v0] in "'\"" else ""
    return f"{quote}{MASK}{quote}"


def _mask_open_tail(text: str) -> str:
    """Mask, in a text cut from a longer one, what may continue past the cut.

    A URL in the last run without whitespace may have its password's '@' past the cut:
    everything after its first ``scheme://user:`` is masked. A token after ``Bearer``/
    ``Basic`` that reaches the cut is masked whatever its length or form.
    """
    reversed_text = text[::-1]
    run = _NON_SPACE_RE.match(reversed_text)
    last = len(text) - (run.end() if run is not None else 0)
    if text.find("://", last) >= 0:
        pre = _URL_PRE_RE.search(text, last)
        if pre is not None and pre.end() < len(text):
            return text[: pre.end()] + MASK
    tail = _AUTH_TAIL_REVERSED_RE.match(reversed_text)
    if tail is not None:
        return text[: len(text) - tail.end("val")] + MASK
    return text


def _cut_masked(masked: str, limit: int) -> str:
    """``masked[:limit]``, without the first characters of a mask the cut would split."""
    split = masked.find(MASK, max(0, limit - len(MASK) + 1), limit + len(MASK) - 1)
    return masked[:split] if 0 <= split < limit else masked[:limit]


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
