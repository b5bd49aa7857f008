"""The redaction table: what is masked, what is kept, and how values are encoded."""

from __future__ import annotations

import base64
import binascii
import math
import random
import re
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from mcp_otel.audit import AuditLogger
from mcp_otel.redaction import MASK, Redactor, key_parts, size_of

from .conftest import read_records


@pytest.fixture
def r() -> Redactor:
    return Redactor()


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("password", True),
        ("db_password", True),
        ("DB_PASSWORD", True),
        ("apiKey", True),
        ("api_key", True),
        ("X-Api-Key", True),
        ("x-api-key", True),
        ("aws_secret_access_key", True),
        ("secretAccessKey", True),
        ("client_secret", True),
        ("access_token", True),
        ("refreshToken", True),
        ("Authorization", True),
        ("auth", True),
        ("pwd", True),
        ("passwd", True),
        ("credentials", True),
        ("private_key", True),
        ("key", True),
        ("primary_key", False),
        ("primaryKey", False),
        ("max_tokens", False),
        ("maxTokens", False),
        ("author", False),
        ("authorName", False),
        ("idempotency_key", False),
        ("idempotencyKey", False),
        ("keyboard", False),
        ("monkey", False),
        ("passenger", False),
        ("tool_name", False),
        ("session_id", False),
    ],
)
def test_secret_keys_by_whole_parts(r: Redactor, key: str, secret: bool) -> None:
    assert r.is_secret_key(key) is secret, key_parts(key)


def test_nested_dicts_and_lists_are_masked_at_any_depth(r: Redactor) -> None:
    value = {
        "query": "select 1",
        "connection": {"host": "db", "db_password": "hunter2", "port": 5432},
        "headers": [{"X-Api-Key": "abc123"}, {"Accept": "json"}],
        "deep": [[{"inner": {"token": "t0k3n", "primary_key": "id"}}]],
        "max_tokens": 100,
        "author": "ada",
        "idempotency_key": "req-1",
    }
    out = r.clean(value)
    assert out == {
        "query": "select 1",
        "connection": {"host": "db", "db_password": MASK, "port": 5432},
        "headers": [{"X-Api-Key": MASK}, {"Accept": "json"}],
        "deep": [[{"inner": {"token": MASK, "primary_key": "id"}}]],
        "max_tokens": 100,
        "author": "ada",
        "idempotency_key": "req-1",
    }
    assert value["connection"]["db_password"] == "hunter2"  # the input is not modified


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgres://user:s3cret@db:5432/app", f"postgres://user:{MASK}@db:5432/app"),
        ("mysql+pymysql://root:p%40ss@localhost/x", f"mysql+pymysql://root:{MASK}@localhost/x"),
        ("https://example.com/path?q=1", "https://example.com/path?q=1"),
        ("https://user@example.com/", "https://user@example.com/"),
        ("postgres://u:${DB_PASSWORD}@h/db", "postgres://u:${DB_PASSWORD}@h/db"),
        (
            "connect failed: could not reach postgresql://app:hunter2@10.0.0.5/prod (timeout)",
            f"connect failed: could not reach postgresql://app:{MASK}@10.0.0.5/prod (timeout)",
        ),
        (
            "host=db user=app password=hunter2 dbname=x",
            f"host=db user=app password={MASK} dbname=x",
        ),
        ("GET /v1?api_key=abc123&page=2", f"GET /v1?api_key={MASK}&page=2"),
        ("token = 'abc def'", f"token = {MASK}"),
        ("password=${PGPASSWORD}", "password=${PGPASSWORD}"),
        ("Authorization: Bearer eyJhbGciOi.x.y", f"Authorization: Bearer {MASK}"),
        # an exception name before its message is no secret key
        ("KeyError: 'user_id'", "KeyError: 'user_id'"),
        ("TokenExpiredError: session ended at 12:30", "TokenExpiredError: session ended at 12:30"),
        ("TokenExpiredError: password: hunter2", f"TokenExpiredError: password: {MASK}"),
        ("auth failed: token: abc123", f"auth failed: token: {MASK}"),
        ("error: password: hunter2", f"error: password: {MASK}"),
        ("max_tokens=100 primary_key=id", "max_tokens=100 primary_key=id"),
        # an env reference with a default reveals the default: only ${NAME}/$NAME is kept
        ("postgres://u:${DB_PASSWORD:-hunter2}@h/db", f"postgres://u:{MASK}@h/db"),
        ("password=${PGPASSWORD:-hunter2}", f"password={MASK}"),
        ("password=${PGPASSWORD-hunter2} x", f"password={MASK} x"),
        # '/' and '@' inside a URL password: masked up to the last '@' before the host
        ("postgres://app:pa/ss@db/x", f"postgres://app:{MASK}@db/x"),
        ("postgres://app:p@ss@db", f"postgres://app:{MASK}@db"),
        ("postgres://app:p@s/s@db:5432/x y", f"postgres://app:{MASK}@db:5432/x y"),
        ("postgres://app:pa?ss@db/x", f"postgres://app:{MASK}@db/x"),
        ("https://u:pw@h/x?mail=a@b.c", f"https://u:{MASK}@h/x?mail=a@b.c"),
        ("https://example.com:8443/x?mail=a@b.c", "https://example.com:8443/x?mail=a@b.c"),
        # bearer/basic credentials in any case
        ("authorization: bearer eyJhbGciOi.x.y", f"authorization: bearer {MASK}"),
        ("AUTHORIZATION: BASIC dXNlcjpwYXNz", f"AUTHORIZATION: BASIC {MASK}"),
        # Basic: only valid base64 of bytes holding ':' (RFC 7617 "user:password")
        ("basic configuration missing", "basic configuration missing"),
        ("Basic authentication failed", "Basic authentication failed"),
        ("Basic dXNlcjpwYXNz", f"Basic {MASK}"),  # user:pass
        ("basic dXNlcjpwYXNz", f"basic {MASK}"),
        ("Authorization: Basic YWxhZGRpbjpvcGVuc2VzYW1l", f"Authorization: Basic {MASK}"),
        ("Basic aGVsbG8=", "Basic aGVsbG8="),  # "hello": no ':'
        ("plain text without secrets", "plain text without secrets"),
        # key: value, JSON and Python repr forms (error texts, pydantic input_value=...)
        ("api_key: S3cr3t", f"api_key: {MASK}"),
        ("password:hunter2 (rejected)", f"password:{MASK} (rejected)"),
        ('bad args {"api_key": "sk-live-1"}', f'bad args {{"api_key": "{MASK}"}}'),
        ('{"password":"a\\"b", "user": "bob"}', f'{{"password":"{MASK}", "user": "bob"}}'),
        ("bad args {'api_key': 'S1', 'n': 2}", f"bad args {{'api_key': '{MASK}', 'n': 2}}"),
        # a repr cut in its middle keeps only the key's closing quote, or loses the value's
        (
            "input_value={'password': 'hunter2'...api_key': 'sk-live-KEY'}",
            f"input_value={{'password': '{MASK}'...api_key': '{MASK}'}}",
        ),
        ("{'password': 'hunter2", f"{{'password': '{MASK}'"),
        # a flat container under a secret key is masked whole, as in a dict
        ("{'credentials': {'user': 'u', 'pw': 'p'}, 'n': 1}", f"{{'credentials': {MASK}, 'n': 1}}"),
        ("{'token': ['a', 'b']}", f"{{'token': {MASK}}}"),
        ("password: {SSHA}abc", f"password: {MASK}"),
        ("token: ${API_TOKEN}", "token: ${API_TOKEN}"),
        ('{"token": "${API_TOKEN}"}', '{"token": "${API_TOKEN}"}'),
        ("token: ${API_TOKEN:-t0k3n}", f"token: {MASK}"),
        # an auth scheme word stays and the credential after it is masked, however short
        ("Authorization: Bearer x", f"Authorization: Bearer {MASK}"),
        ("authorization: token abc123", f"authorization: token {MASK}"),
        # kept: no secret key, times, URLs (their password has its own rule), allow list
        ("error: something failed at 12:30", "error: something failed at 12:30"),
        ("https://token:pw@h/x", f"https://token:{MASK}@h/x"),
        ("http://auth:8080/x", "http://auth:8080/x"),
        ("max_tokens: 100, primary_key: id", "max_tokens: 100, primary_key: id"),
        ("2026-11-27T09:40:00 key missing", "2026-11-27T09:40:00 key missing"),
    ],
)
def test_free_text_credentials(r: Redactor, text: str, expected: str) -> None:
    assert r.clean(text) == expected


def test_env_references_under_secret_keys_are_kept(r: Redactor) -> None:
    out = r.clean({"password": "${DB_PASSWORD}", "api_key": "$API_KEY", "token": "${X:-d}",
                   "secret": "not ${A} only", "pwd": "${DB_PASSWORD:-hunter2}"})
    assert out == {"password": "${DB_PASSWORD}", "api_key": "$API_KEY", "token": MASK,
                   "secret": MASK, "pwd": MASK}  # a default after :- may be the secret


def test_secret_containers_are_masked_whole(r: Redactor) -> None:
    assert r.clean({"credentials": {"user": "u", "password": "p"}}) == {"credentials": MASK}
    assert r.clean({"auth": None}) == {"auth": None}


def test_user_lists_extend_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCP_OTEL_REDACT_KEYS", "ssn, sessionCookieValue")
    monkeypatch.setenv("MCP_OTEL_REDACT_ALLOW", "token_budget")
    r = Redactor(secret_keys=["iban"], allow_keys=["api_key_name"])
    assert r.clean({"ssn": "1", "iban": "DE00", "session_cookie_value": "c", "token_budget": 5,
                    "api_key_name": "prod", "password": "p"}) == {
        "ssn": MASK, "iban": MASK, "session_cookie_value": MASK, "token_budget": 5,
        "api_key_name": "prod", "password": MASK}


def test_non_json_values_are_encoded_safely(r: Redactor) -> None:
    class Odd:
        def __repr__(self) -> str:
            return "<Odd password=hunter2>"

    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("no")

    out = r.clean({
        "b": b"\x00\xff", "nan": math.nan, "inf": -math.inf, "big": 2**70, "set": {3, 1},
        "tuple": (1, "a"), "odd": Odd(), "broken": Broken(), 7: "int key", "": "empty key",
        "surrogate": "a\udcff", "ctrl": "line1\nline2\r\x00\x1b[31m\u2028",
    })
    assert out["b"] == {"$base64": "AP8="}
    assert out["nan"] == "NaN" and out["inf"] == "-Infinity"  # as mcp_otel._json writes them
    assert out["big"] == str(2**70)
    assert out["set"] == [1, 3] and out["tuple"] == [1, "a"]
    assert out["odd"] == f"<Odd password={MASK}"  # the unquoted value runs to a space
    assert out["broken"] == "<unrepresentable Broken>"
    assert out["7"] == "int key" and out["(empty)"] == "empty key"
    assert out["surrogate"].startswith("a\ufffd")
    out["surrogate"].encode("utf-8")  # a lone surrogate became replacement characters
    encoded = orjson.dumps(out)  # plain JSON now, one line whatever the content
    assert b"\n" not in encoded and b"\r" not in encoded
    assert orjson.loads(encoded)["ctrl"] == "line1\nline2\r\x00\x1b[31m\u2028"


def test_sizes_are_measured_before_redaction_and_previews_keep_the_original_size() -> None:
    r = Redactor(preview_limit=100, preview_head=40)
    small = {"password": "a-very-long-password-value"}
    red = r.redact(small)
    assert red.original_bytes == len(orjson.dumps(small))
    assert red.value == {"password": MASK} and not red.truncated
    big = {"data": "é" * 500, "password": "hunter2"}
    red = r.redact(big)
    assert red.truncated
    assert red.original_bytes == len(orjson.dumps(big)) == size_of(big)
    assert red.value.endswith(f"... [TRUNCATED: {red.original_bytes} bytes total]")
    assert len(red.value.split("...")[0].encode()) <= 40
    assert "hunter2" not in red.value


def test_preview_head_cannot_exceed_limit() -> None:
    with pytest.raises(ValueError):
        Redactor(preview_limit=10, preview_head=20)


def test_cycles_are_cut_on_the_current_path(r: Redactor) -> None:
    x: dict = {}
    x["a"] = x
    assert r.clean(x) == {"a": "<cycle>"}
    lst: list = [1]
    lst.append(lst)
    assert r.clean(lst) == [1, "<cycle>"]
    # a tree whose children point back to their parent: only the back pointers are cut
    root: dict = {"name": "root", "children": []}
    for i in range(3):
        child = {"name": f"c{i}", "parent": root, "children": []}
        child["children"].append({"name": f"g{i}", "parent": child, "root": root})
        root["children"].append(child)
    out = r.clean(root)
    assert out["children"][1] == {
        "name": "c1", "parent": "<cycle>",
        "children": [{"name": "g1", "parent": "<cycle>", "root": "<cycle>"}],
    }
    # shared (non-cyclic) references are written in full each time
    shared = {"password": "p", "v": 1}
    assert r.clean([shared, shared]) == [{"password": MASK, "v": 1}] * 2
    # two references back to the root: exponential without the cycle check
    x["b"] = x
    assert r.clean(x) == {"a": "<cycle>", "b": "<cycle>"}


def test_broken_str_and_repr_never_raise(r: Redactor) -> None:
    class Bad:
        def __repr__(self) -> str:
            raise RuntimeError("repr")

        def __str__(self) -> str:
            raise RuntimeError("str")

        def __hash__(self) -> int:
            return 1

        def __eq__(self, other: object) -> bool:
            return self is other

    out = r.clean({"s": {Bad(), Bad()}, Bad(): "v"})
    assert out["s"] == ["<unrepresentable Bad>"] * 2
    (key,) = (k for k in out if k != "s")
    assert key.startswith("<") and "Bad object at" in key and out[key] == "v"
    assert r.error_text(Bad()).startswith("<") and "Bad object at" in r.error_text(Bad())
    assert r.error_text(ValueError("x")) == "x"
    assert r.error_text("password=hunter2") == "password=hunter2"  # masked later by redact
    assert r.error_text(None) is None


async def test_log_tool_error_never_raises_and_redacts_structured_errors(
        make_audit: Callable[..., AuditLogger], tmp_path: Path) -> None:
    class Bad(Exception):
        def __str__(self) -> str:
            raise RuntimeError("str")

    a = make_audit()
    await a.log_tool_error(tool="t", error=Bad())
    await a.log_tool_error(tool="t", error={"password": "hunter2", "detail": "x"})
    errors = [rec["error"] for rec in read_records(tmp_path / "audit")]
    assert len(errors) == 2
    assert "Bad" in errors[0]
    assert "hunter2" not in errors[1] and MASK in errors[1] and "detail" in errors[1]


def test_header_pairs_with_a_secret_name_are_masked(r: Redactor) -> None:
    out = r.clean({"headers": [["X-Api-Key", "v1"], ("Authorization", "Bearer abcdefgh"),
                               ["Accept", "json"], ["token", "${TOKEN}"], ["password", None],
                               ["cookie", {"a": 1}]]})
    assert out == {"headers": [["X-Api-Key", MASK], ["Authorization", MASK], ["Accept", "json"],
                               ["token", "${TOKEN}"], ["password", None], ["cookie", MASK]]}
    # only two-item lists whose first item is a secret-looking name
    assert r.clean(["password", "reset", "now"]) == ["password", "reset", "now"]
    assert r.clean([["max_tokens", 100]]) == [["max_tokens", 100]]


def _mask_text_without_shortcuts(r: Redactor, text: str) -> str:
    """mask_text's four substitutions, run unconditionally (no pre-checks)."""
    from mcp_otel import redaction as rd

    text = rd._URL_PASSWORD_RE.sub(r._url_sub, text)
    text = r._kv_pass(text)
    text = r._colon_pass(text)
    return rd._BEARER_RE.sub(lambda m: m.group("pre") + MASK, text)


@pytest.mark.parametrize("extra", [(), ("clientRef",), ("x_widget_id",)])
def test_the_cheap_pre_checks_never_skip_a_secret(extra: tuple[str, ...]) -> None:
    """mask_text and the dict fast path skip the regexes for text that cannot hold a
    secret; on texts built to defeat those checks (case, Unicode case folding, compound
    and user-added keys, no separators) the result must equal the unconditional run."""
    r = Redactor(secret_keys=extra)
    texts = [
        "select * from t where id = ?", "PASSWORD=x", "Pass_Word = 'x y'", "dbPwd=1",
        "x-api-key=abc&ok=1", "aws_secret_access_key=AKIA", "SESSION_TOKEN=t", "id=1 n=2",
        "clientref=v", "CLIENT_REF=v", "x_widget_id=9", "widget_id=9", "toKen=v",
        "auth=\u212a", "BEARER abcdef123", "bAsIc dXNlcjpwYXNz", "Ba\u017fic abcdefgh",
        "Authorization: Bas\u0131c dXNlcjpwYXNz", "Authorization: BAS\u0130C dXNlcjpwYXNz",
        "b\u0131sic dXNlcjpwYXNz", "Bearer\u00a0abcdefgh123", "B\u0130ASIC x",
        "https://u:p@ss@h/x", "postgres://app:pw@db/x", "mail me at a@b.c", "a=b@c",
        "https://example.com/path?q=1", "cookie=c; path=/", "signature=s", "no secrets here",
        "", "=", "@", "key", "key=", "=value",
        # key: value, JSON and repr forms (the colon pass and its pre-checks)
        "password: x", "PassWord:x", "x-api-key : abc", '{"api_key": "sk-1"}', '{"Token":"t"}',
        "{'password': 'p'}", "input_value={'a': 1...api_key': 'k'}", "clientRef: v",
        "x_widget_id: 9", "ToKen:\u212a", "auth:\nv", "error: something", "at 12:30",
        "https://token:pw@h/x", "https://u:p@h:5432/x token", "token:***MASKED***@h",
        "Authorization: Bearer x", "AUTHORIZATION: token abc", "secret: {'a': 1}",
        "KeyError: 'user_id'", "AuthError: token: abc", "SecretWarning: x",
        "key:", ":", ":value", "key:://x", "password://x", "'key': ${K}", "key: $K x",
    ]
    for text in texts:
        assert r.mask_text(text) == _mask_text_without_shortcuts(r, text), text
        assert r.clean({"v": text})["v"] == _mask_text_without_shortcuts(r, text), text


def _is_basic_credential(token: str) -> bool:
    """Reference for the Basic rule: standard base64 (padded, or unpadded) with a b":"."""
    if not re.fullmatch(r"[A-Za-z0-9+/]*={0,2}", token) or len(token) % 4 == 1:
        return False
    if "=" in token and len(token) % 4:
        return False  # padding, when present, must be complete
    try:
        decoded = base64.b64decode(token + "=" * (-len(token) % 4), validate=True)
    except binascii.Error:
        return False
    return b":" in decoded


def test_basic_is_masked_exactly_when_base64_of_bytes_with_a_colon() -> None:
    """The pattern's base64 and ':' checks agree with base64.b64decode on many tokens:
    encodings of random bytes with ':' at every offset, padded and unpadded, with their
    case flipped, cut, or with '=' misplaced (seeded, so the same tokens every run)."""
    rng = random.Random(7617)
    tokens: list[str] = []
    for _ in range(3000):
        raw = bytes(rng.choice(b"::abc\x00\xffAZ09/+") for _ in range(rng.randrange(0, 13)))
        tok = base64.b64encode(raw).decode("ascii")
        variant = rng.randrange(6)
        if variant == 1:
            tok = tok.rstrip("=")
        elif variant == 2:
            tok = tok.swapcase()
        elif variant == 3 and tok:
            tok = tok[: rng.randrange(len(tok))]
        elif variant == 4:
            pos = rng.randrange(len(tok) + 1)
            tok = tok[:pos] + "=" + tok[pos:]
        tokens.append(tok)
    tokens += ["".join(rng.choice("Og6jDTzopqrAE4=") for _ in range(rng.randrange(1, 14)))
               for _ in range(3000)]
    from mcp_otel import redaction as rd

    def credential_masked(text: str) -> bool:  # the credential pass alone (no key=value)
        return MASK in rd._BEARER_RE.sub(lambda m: m.group("pre") + MASK, text)

    masked_any = kept_any = False
    for tok in tokens:
        for text in (f"Basic {tok}", f"x basic {tok}, y", f"BASIC  {tok}"):
            masked = credential_masked(text)
            assert masked == (len(tok) >= 6 and _is_basic_credential(tok)), text
            masked_any, kept_any = masked_any or masked, kept_any or not masked
        # Bearer is unchanged: any 6+ token characters
        assert credential_masked(f"Bearer {tok}") == (len(tok) >= 6), tok
    assert masked_any and kept_any


@pytest.mark.parametrize("wait", ["written", "queued"])
async def test_secrets_in_any_mapping_are_masked_by_key(
        tmp_path: Path, wait: str) -> None:
    import collections
    import types

    a = AuditLogger(tmp_path, wait=wait, otlp=False)  # type: ignore[arg-type]
    env = {"AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI", "HOME": "/root"}
    await a.log_tool_call("t", arguments={
        "cfg": types.MappingProxyType({"password": "hunter2"}),
        "ud": collections.UserDict({"api_key": "sk-live-123"}),
        "env": collections.ChainMap(env),
    })
    await a.log_tool_result("t", result=types.MappingProxyType({"token": "t0k3n", "ok": 1}))
    a.shutdown()
    recs = read_records(tmp_path)
    assert recs[0]["arguments"] == {
        "cfg": {"password": MASK}, "ud": {"api_key": MASK},
        "env": {"AWS_SECRET_ACCESS_KEY": MASK, "HOME": "/root"}}
    assert recs[1]["result"] == {"token": MASK, "ok": 1}
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("*.jsonl"))
    for secret in (b"hunter2", b"sk-live-123", b"wJalrXUtnFEMI", b"t0k3n"):
        assert secret not in raw
