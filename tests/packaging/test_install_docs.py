"""Every install instruction in the README, docs/ and the demo image names something that
exists: mcp-otel is not on a package index yet, so it is installed from a checkout or a
built wheel, and only with extras that pyproject.toml declares (an instruction like
``pip install 'mcp-otel[mcp]'`` failed twice over: no such extra, no such package)."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
EXTRAS = set(PROJECT["optional-dependencies"])
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")),
        REPO / "deploy" / "demo" / "Dockerfile"]

#: ``pip install ...`` (also ``uv pip install``) up to the end of the line, a closing
#: backtick or a shell operator.
_INSTALL = re.compile(r"pip install ([^`\n;&|#]*)")
_TARGET = re.compile(r"(?P<target>[^\[\]]*)(?:\[(?P<extras>[^\]]*)\])?")


def _instructions() -> list[tuple[str, str]]:
    out = []
    for path in DOCS:
        for match in _INSTALL.finditer(path.read_text(encoding="utf-8")):
            args = match.group(1).strip().removesuffix("\\").strip()  # a continued line
            out.append((path.relative_to(REPO).as_posix(), args))
    return out


def _targets(args: str) -> list[tuple[str, set[str]]]:
    """The requirement or path arguments of one instruction, with their extras."""
    out, skip_next = [], False
    for token in shlex.split(args):
        if skip_next:
            skip_next = False
            continue
        if token.startswith("-"):
            skip_next = token in {"--python", "-r", "-c", "--target", "--prefix"}
            continue
        match = _TARGET.fullmatch(token)
        assert match, token
        extras = {e.strip() for e in (match.group("extras") or "").split(",") if e.strip()}
        out.append((match.group("target"), extras))
    return out


def _is_mcp_otel(target: str) -> bool:
    """A checkout (``.``, a path), a wheel or sdist of mcp-otel, or the name itself."""
    name = target.rsplit("/", 1)[-1]
    return (target in {".", ""} or "mcp-otel" in target or name.startswith("mcp_otel")
            or target.endswith("/"))


def test_the_docs_have_install_instructions_to_check() -> None:
    found = _instructions()
    assert any(doc == "README.md" for doc, _ in found)
    assert any(_is_mcp_otel(t) for _, args in found for t, _ in _targets(args))


@pytest.mark.parametrize(("doc", "args"), _instructions())
def test_install_instruction_names_an_existing_package_and_extras(doc: str, args: str) -> None:
    for target, extras in _targets(args):
        if not _is_mcp_otel(target):
            continue  # another package (a framework pin in docs/fastmcp.md, say)
        assert target not in {"mcp-otel", "mcp_otel"}, (
            f"{doc}: `pip install {args}` installs mcp-otel by name from the package index, "
            "where it is not published; install from a checkout or the built wheel"
        )
        assert extras <= EXTRAS, f"{doc}: `pip install {args}`: no extra {extras - EXTRAS}"
