"""Who an entry belongs to: keys, ``discovery_id``/``cache_key`` derivation, identity checks.

Osiris joined the key fields with ``|`` (``("a|b", "c")`` and ``("a", "b|c")`` were one
entry); here each field is length-prefixed before hashing (:func:`_digests`), so no two
different requests share a hashed input, and no connection or component name ever reaches
a path or a span: only the hashes do. ``get`` serves an entry (memory or disk) only when
its stored connection, component, samples and idempotency key are the request's
(:func:`_check_identity`): anything else is a miss and an ``identity_mismatch`` event,
never another request's data. Maintenance, which knows only a file's name, decides from
the stored fields whether any request can still read an entry (:func:`_reachable`) and
whether it is one connection's (:func:`_belongs_to`).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from mcp_otel import _json, limits
from mcp_otel.cache._coherency import _SLOTS, _STRIPES

_KEY_MEMO_MAX = 4096

#: ``(connection, component, samples, idempotency_key or None)`` of a request, as given.
_Identity = tuple[str, str, int, "str | None"]


@dataclass(frozen=True, slots=True)
class _Key:
    """Hashed identity of one request; the hashes are the only thing that reaches files and
    spans. ``identity`` is the request itself and ``stored`` the form its fields take in an
    entry (``mcp_otel._json``'s): ``get`` serves only an entry whose fields equal
    ``stored``, and a memory record only to the ``identity`` it was stored for. Both are
    ``None`` for a key rebuilt from a file name (maintenance knows only the hash)."""

    cache_key: str
    discovery_id: str
    slot: int
    identity: _Identity | None = None
    stored: tuple[Any, Any, Any, Any] | None = None

    @property
    def stripe(self) -> int:
        return self.slot % _STRIPES


class _Keys:
    """Derives the :class:`_Key` of a request, checking its arguments, and remembers the
    last few thousand (a hit derives no hash)."""

    def __init__(self) -> None:
        self._memo: dict[tuple[str, str, int, str | None], _Key] = {}

    def key(
        self, connection: str, component: str, samples: int, idempotency_key: str | None
    ) -> _Key:
        if samples.__class__ is not int:
            raise TypeError("samples must be an int")
        if (connection.__class__ is not str or component.__class__ is not str
                or (idempotency_key is not None and idempotency_key.__class__ is not str)):
            connection, component, idempotency_key = _exact_names(
                connection, component, idempotency_key)
        memo = (connection, component, samples, idempotency_key)
        key = self._memo.get(memo)
        if key is not None:
            return key
        if not isinstance(connection, str) or not isinstance(component, str):
            raise TypeError("connection and component must be str")
        if idempotency_key is not None and not isinstance(idempotency_key, str):
            raise TypeError("idempotency_key must be str or None")
        cap = limits.MAX_CACHE_ID_CHARS
        # str.__len__: a str subclass's own __len__ is never called (nor trusted)
        if max(str.__len__(connection), str.__len__(component),
               0 if idempotency_key is None else str.__len__(idempotency_key)) > cap:
            raise ValueError(f"connection, component and idempotency_key are identifiers of "
                             f"at most {cap} characters")
        # Osiris: no key and an empty key are the same (no bool(): a subclass may raise)
        idem = None if idempotency_key is None or not str.__len__(idempotency_key) \
            else idempotency_key
        disc, full = _digests(connection, component, samples, idem)
        stored = _stored_identity(connection, component, samples, idem)
        key = _Key(
            f"cache_{full}",
            f"disc_{disc}",
            int(disc[:8], 16) % _SLOTS,
            (connection, component, samples, idem),
            stored,
        )
        if len(self._memo) >= _KEY_MEMO_MAX:
            self._memo.clear()
        self._memo[memo] = key
        return key


def _key_of(discovery_id: str) -> _Key:
    """The slot/stripe of a discovery id found on disk (its cache_key is unknown)."""
    return _Key("", discovery_id, int(discovery_id[5:13], 16) % _SLOTS)


def _exact_names(
    connection: Any, component: Any, idempotency_key: Any
) -> tuple[str, str, str | None]:
    """The key's names as exact ``str`` (a subclass may override ``__format__``,
    ``__hash__`` or ``encode``, which the key derivation calls), or ``TypeError``."""
    if not isinstance(connection, str) or not isinstance(component, str):
        raise TypeError("connection and component must be str")
    if idempotency_key is not None and not isinstance(idempotency_key, str):
        raise TypeError("idempotency_key must be str or None")
    return (str.__str__(connection), str.__str__(component),
            None if idempotency_key is None else str.__str__(idempotency_key))


def _samples_text(samples: int) -> str:
    """``samples`` in the key: decimal, as Osiris derives it; hexadecimal (exact, and never
    equal to a decimal text) beyond ``limits.MAX_INT_BITS``, where ``str()`` raises.

    The choice depends on the value only, so every process derives the same key: a host
    that lowered ``sys.set_int_max_str_digits()`` still gets the decimal digits, converted
    in chunks the interpreter accepts (its minimum limit is 640 digits).
    """
    if samples.bit_length() > limits.MAX_INT_BITS:
        return hex(samples)
    try:
        return int.__repr__(samples)
    except ValueError:  # a lower digit limit in the host
        pass
    sign, rest = ("-", -samples) if samples < 0 else ("", samples)
    chunks: list[str] = []
    while rest:
        rest, chunk = divmod(rest, _DECIMAL_CHUNK)
        chunks.append(f"{chunk:0{_CHUNK_DIGITS}d}")
    return sign + "".join(reversed(chunks)).lstrip("0")


_CHUNK_DIGITS = 500
_DECIMAL_CHUNK = 10**_CHUNK_DIGITS


def _utf8(text: str) -> bytes:
    # Lone surrogates cannot be UTF-8 encoded strictly; hashing must still never fail.
    return text.encode("utf-8", "surrogatepass")


def _connection_hash(connection: str) -> str:
    """What spans show of a connection name: ``conn_`` + 16 hex of its SHA-256."""
    return f"conn_{hashlib.sha256(_utf8(connection)).hexdigest()[:16]}"


def _field(data: bytes) -> bytes:
    return len(data).to_bytes(8, "big") + data


def _digests(
    connection: str, component: str, samples: int, idempotency_key: str | None
) -> tuple[str, str]:
    """The 16-hex digests of ``discovery_id`` and ``cache_key``.

    Each field is length-prefixed (8-byte big-endian byte count, then its UTF-8 bytes;
    ``samples`` as lowercase hexadecimal text, which never fails or takes quadratic time
    however large): no two different requests share an input, whatever characters their
    names hold. Osiris joined the fields with ``|``, so ``("a|b", "c")`` and
    ``("a", "b|c")`` were one entry.
    """
    head = _field(_utf8(connection)) + _field(_utf8(component)) + _field(_utf8(f"{samples:x}"))
    disc = hashlib.sha256(head).hexdigest()[:16]
    idem = "" if idempotency_key is None else idempotency_key
    full = hashlib.sha256(head + _field(_utf8(idem))).hexdigest()[:16]
    return disc, full


def _stored_identity(
    connection: str, component: str, samples: int, idempotency_key: str | None
) -> tuple[Any, Any, Any, Any]:
    """The identity fields as an entry holds them (``mcp_otel._json``'s forms)."""
    return (
        _json.to_jsonable(connection),
        _json.to_jsonable(component),
        _samples_stored(samples),
        _json.to_jsonable(idempotency_key) if idempotency_key else None,
    )


def _samples_stored(samples: int) -> Any:
    """``samples`` as an entry written with the interpreter's default digit limit holds it
    (decimal text beyond 64 bits), whatever limit this host set."""
    stored = _json.to_jsonable(samples)
    if isinstance(stored, str) and samples.bit_length() <= limits.MAX_INT_BITS:
        return _samples_text(samples)
    return stored


def _entry_identity(entry: dict[str, Any]) -> tuple[Any, Any, Any, Any]:
    return (
        entry.get("connection_id"),
        entry.get("component_id"),
        entry.get("samples"),
        entry.get("idempotency_key") or None,
    )


_SAME = object()
_OTHER_IDEMPOTENCY_KEY = object()
_MISMATCH = object()


def _check_identity(entry: dict[str, Any], key: _Key) -> object:
    """Whether a disk entry read for ``key`` is that request's entry.

    ``_OTHER_IDEMPOTENCY_KEY``: the same discovery with another idempotency key (a ``set``
    with another key replaced it; a plain miss). ``_MISMATCH``: anything else that is not
    the request's own entry.
    """
    stored = _entry_identity(entry)
    if stored[:3] != key.stored[:3]:  # type: ignore[index]
        return _MISMATCH
    if stored[3] != key.stored[3]:  # type: ignore[index]
        return _OTHER_IDEMPOTENCY_KEY
    return _SAME if entry.get("cache_key") == key.cache_key else _MISMATCH


# mcp_otel._json writes a lone surrogate as the six characters \udXXX (backslashreplace).
_ESCAPED_SURROGATE = re.compile(r"\\u(d[89a-f][0-9a-f]{2})")


def _names_stored_as(stored: Any) -> list[str]:
    """The names whose stored form is ``stored``: itself and, when it holds escaped lone
    surrogates, the name with them restored (a name mixing both is not recovered)."""
    if not isinstance(stored, str):
        return []
    if "\\u" not in stored:
        return [stored]
    restored = _ESCAPED_SURROGATE.sub(lambda m: chr(int(m.group(1), 16)), stored)
    return [stored] if restored == stored else [stored, restored]


def _samples_stored_as(stored: Any) -> list[int]:
    if stored.__class__ is int:
        return [stored]
    if isinstance(stored, str):  # beyond 64 bits mcp_otel._json writes decimal text
        try:
            return [int(stored)]
        except ValueError:  # not a number, or over Python's digit limit
            return []
    return []


def _hashes_to(
    entry: dict[str, Any], discovery_id: str, connections: list[str], check_cache_key: bool
) -> bool:
    """Whether one of ``connections`` with the entry's other stored fields hashes to the
    entry's ``discovery_id`` (and, with ``check_cache_key``, to its ``cache_key``)."""
    components = _names_stored_as(entry.get("component_id"))
    idem = entry.get("idempotency_key")
    keys = _names_stored_as(idem) if idem else [""]
    for samples in _samples_stored_as(entry.get("samples")):
        for connection in connections:
            for component in components:
                for idempotency_key in keys if check_cache_key else [""]:
                    disc, full = _digests(connection, component, samples, idempotency_key)
                    if f"disc_{disc}" != discovery_id:
                        break  # the discovery id does not depend on the idempotency key
                    if not check_cache_key or f"cache_{full}" == entry.get("cache_key"):
                        return True
    return False


def _reachable(entry: dict[str, Any], discovery_id: str) -> bool:
    """Whether some request can read this entry: its stored identity hashes to its file
    name and ``cache_key``. Entries written under another key format (Osiris' ``|``
    joined one) or edited by hand cannot be read by any ``get``. When the stored names
    hold escaped surrogates that cannot be restored unambiguously, the entry is kept."""
    connections = _names_stored_as(entry.get("connection_id"))
    if _hashes_to(entry, discovery_id, connections, check_cache_key=True):
        return True
    fields = (entry.get("connection_id"), entry.get("component_id"), entry.get("idempotency_key"))
    return any(isinstance(f, str) and _ESCAPED_SURROGATE.search(f) for f in fields)


def _belongs_to(
    entry: dict[str, Any], discovery_id: str, connection: str, stored_form: Any
) -> bool:
    """Whether a disk entry is ``connection``'s: equal stored names, never a prefix.

    Only a name holding a lone surrogate and the literal text of its escaped form share a
    stored form; then the hash decides. An entry that cannot be attributed to either
    (another key format) goes with the name it shows: removing is a later miss, never a
    wrong answer.
    """
    stored = entry.get("connection_id")
    if stored != stored_form:
        return False
    if not isinstance(stored, str) or "\\u" not in stored:
        return True  # the stored form is the name itself: no other name has it
    if _hashes_to(entry, discovery_id, [connection], check_cache_key=False):
        return True
    others = [name for name in _names_stored_as(stored) if name != connection]
    return not _hashes_to(entry, discovery_id, others, check_cache_key=False)
