"""The text rules as they were before the linear rewrite: a reference for small inputs.

A frozen copy of the backtracking patterns (quadratic on the adversarial corpus, exact on
everything else). ``reference_mask_text`` must agree with ``Redactor.mask_text`` on every
input except where docs/audit.md says the new rules mask more (an unterminated quoted
value after a secret ``key=``). Test-only: never imported by the package.
"""

from __future__ import annotations

import re

from mcp_otel.redaction import MASK, Redactor

_ENV_REF_RE = re.compile(r"^\$(\{[A-Za-z_][A-Za-z0-9_]*\}|[A-Za-z_][A-Za-z0-9_]*)$")
_URL_PASSWORD_RE = re.compile(
    r"(?P<pre>[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@]*:)"
    r"(?P<pw>[^\s/]+?(?:/(?:[^\s?#:]|:(?!//))*?)??)"
    r"(?=@[^\s@?#]*(?:[?#\s]|$))"
)
_KV_RE = re.compile(
    r"(?P<key>[A-Za-z][A-Za-z0-9_.\-]*)(?P<sep>\s*=\s*)"
    r"(?P<val>\"[^\"]*\"|'[^']*'|[^\s&;,'\"]+)"
)
_COLON_RE = re.compile(
    r"(?<![A-Za-z0-9_\-])(?<!//)(?P<kq>['\"]?)(?P<key>[A-Za-z][A-Za-z0-9_.\-]*)"
    r"(?P<sep>['\"]?\s*:(?!//)\s*)"
    r"(?=(?P<scheme>(?i:bearer|basic|token|negotiate)\s+)?"
    r"(?P<val>\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'"
    r"|(?:\{[^{}]*\}|\[[^\[\]]*\]|\([^()]*\))(?=[\s,;&}\])]|$)|[\"']?[^\s&;,'\"]+))"
)
_EXCEPTION_NAME_RE = re.compile(r"(?:Error|Exception|Warning)$")
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


def reference_mask_text(r: Redactor, text: str) -> str:
    """The old ``mask_text`` without its pre-checks (the pre-checks never changed a result)."""

    def url_sub(m: re.Match[str]) -> str:
        pw = m.group("pw")
        if pw == MASK or _ENV_REF_RE.match(pw):
            return m.group(0)
        return m.group("pre") + MASK

    def kv_sub(m: re.Match[str]) -> str:
        if not r.is_secret_key(m.group("key")):
            return m.group(0)
        bare = m.group("val").strip("'\"")
        if bare == MASK or _ENV_REF_RE.match(bare):
            return m.group(0)
        return m.group("key") + m.group("sep") + MASK

    def colon_pass(text: str) -> str:
        out: list[str] = []
        pos = 0
        for m in _COLON_RE.finditer(text):
            if m.start() < pos:
                continue
            key = m.group("key")
            if _EXCEPTION_NAME_RE.search(key) or not r.is_secret_key(key):
                continue
            val = m.group("val")
            bare = val.strip("'\"")
            if bare.startswith(MASK) or _ENV_REF_RE.match(bare):
                continue
            quote = val[0] if val[0] in "'\"" else ""
            out.append(text[pos:m.start("val")])
            out.append(f"{quote}{MASK}{quote}")
            pos = m.end("val")
        if not out:
            return text
        out.append(text[pos:])
        return "".join(out)

    text = _URL_PASSWORD_RE.sub(url_sub, text)
    text = _KV_RE.sub(kv_sub, text)
    text = colon_pass(text)
    return _BEARER_RE.sub(lambda m: m.group("pre") + MASK, text)
