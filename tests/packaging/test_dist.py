"""The distributions a user would install: the sdist and the wheel built from it.

Built with uv (a dev dependency) exactly as a release would be, then checked the way an
index would check them (core metadata validated by ``packaging.metadata``, the validator
PyPI itself uses; ``RECORD`` hashes recomputed), opened to see what they hold, and finally
installed, not editable, into a new virtual environment that has never seen the source
tree, where the CLI, the OpenTelemetry entry points and ``mcp-otel demo`` must work.

Everything is written under pytest's temporary directories; the build reads the checkout
only. The installs fetch dependencies from the package index (through uv's cache).
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.metadata import Metadata
from packaging.requirements import Requirement

from tests._support import require

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
NAME, VERSION = PYPROJECT["name"], PYPROJECT["version"]
DIST = NAME.replace("-", "_")
SOURCE = REPO / "src" / "mcp_otel"

#: Nothing the working tree may hold besides tracked files belongs in a distribution.
_NEVER_SHIPPED = (".venv/", ".envs/", "__pycache__/", ".pyc", "mcp-otel-data/", ".git/",
                  ".pytest_cache/", ".ruff_cache/", ".egg-info/")


def _uv() -> str:
    try:
        import uv
    except ImportError:
        uv = None
    require(uv is not None, "uv (a dev dependency) is not installed")
    return uv.find_uv_bin()


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment of a user's shell: none of this test run's Python or telemetry
    settings (``PYTHONPATH`` would put the source tree back on the path). Index settings
    (``PIP_INDEX_URL``, ``UV_INDEX_URL``, ...) stay: they say where packages come from."""
    drop = ("PYTHON", "VIRTUAL_ENV", "OTEL_", "MCP_OTEL_", "CONDA", "UV_PYTHON",
            "UV_SYSTEM_PYTHON", "UV_PROJECT", "PIP_TARGET", "PIP_PREFIX", "PIP_USER")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env["UV_PYTHON_DOWNLOADS"] = "never"  # use the interpreter given, never fetch one
    env.update(extra)
    return env


def _run(args: list[str], cwd: Path, timeout: float = 300, **env: str) -> str:
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                            env=_clean_env(**env), stdin=subprocess.DEVNULL)
    assert result.returncode == 0, (args, result.stdout[-3000:], result.stderr[-3000:])
    return result.stdout


@dataclass(frozen=True)
class Dists:
    sdist: Path
    wheel: Path


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Dists:
    """``uv build``: the sdist from the checkout, then the wheel from the sdist (so the
    sdist is proven complete enough to build)."""
    out = tmp_path_factory.mktemp("dist")
    _run([_uv(), "build", "--out-dir", str(out), str(REPO)], cwd=out)
    sdists, wheels = sorted(out.glob("*.tar.gz")), sorted(out.glob("*.whl"))
    assert [p.name for p in sdists] == [f"{DIST}-{VERSION}.tar.gz"]
    assert [p.name for p in wheels] == [f"{DIST}-{VERSION}-py3-none-any.whl"]
    return Dists(sdists[0], wheels[0])


def _metadata(raw: bytes) -> Metadata:
    # validate=True raises (an ExceptionGroup naming each bad field) on invalid metadata.
    return Metadata.from_email(raw, validate=True)


def _check_metadata(md: Metadata) -> None:
    assert (md.name, str(md.version)) == (NAME, VERSION)
    assert str(md.requires_python) == PYPROJECT["requires-python"]
    assert md.summary == PYPROJECT["description"]
    assert md.license_expression == PYPROJECT["license"]
    assert md.license_files == ["LICENSE"]
    assert md.description_content_type == "text/markdown"
    assert md.description is not None  # the long description: the README, whole
    assert md.description.strip() == (REPO / "README.md").read_text(encoding="utf-8").strip()
    assert sorted(md.classifiers or []) == sorted(PYPROJECT["classifiers"])
    # Every declared requirement and extra, and nothing else (an extra naming mcp-otel's
    # own extras, as dev does, is written out in full by the backend).
    declared = [Requirement(r) for r in PYPROJECT["dependencies"]]
    for extra in PYPROJECT["optional-dependencies"]:
        declared += [Requirement(f"{r}; extra == {extra!r}") for r in _extra(extra)]
    assert sorted(map(str, md.requires_dist or [])) == sorted(map(str, declared))
    assert sorted(md.provides_extra or []) == sorted(PYPROJECT["optional-dependencies"])


def _extra(name: str) -> list[str]:
    """The requirements of one extra, self-references (``mcp-otel[demo]``) expanded."""
    out: list[str] = []
    for text in PYPROJECT["optional-dependencies"][name]:
        req = Requirement(text)
        if req.name == NAME:
            for inner in sorted(req.extras):
                out += [r for r in _extra(inner) if r not in out]
        elif text not in out:
            out.append(text)
    return out


def _source_files() -> set[str]:
    """Every file of the package in the checkout (what the wheel must hold, exactly)."""
    return {
        p.relative_to(SOURCE.parent).as_posix()
        for p in SOURCE.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }


def test_wheel_metadata_is_valid_and_complete(dists: Dists) -> None:
    with zipfile.ZipFile(dists.wheel) as z:
        raw = z.read(f"{DIST}-{VERSION}.dist-info/METADATA")
        wheel_info = z.read(f"{DIST}-{VERSION}.dist-info/WHEEL").decode()
        entry_points = z.read(f"{DIST}-{VERSION}.dist-info/entry_points.txt").decode()
    _check_metadata(_metadata(raw))
    assert "Root-Is-Purelib: true" in wheel_info and "Tag: py3-none-any" in wheel_info
    assert "mcp-otel = mcp_otel.cli:main" in entry_points
    for signal, cls in (("logs", "JsonlLogExporter"), ("traces", "JsonlSpanExporter"),
                        ("metrics", "JsonlMetricExporter")):
        assert f"[opentelemetry_{signal}_exporter]\njsonl = mcp_otel.exporters:{cls}" \
            in entry_points


def test_wheel_holds_the_package_license_and_types_and_no_tests(dists: Dists) -> None:
    info = f"{DIST}-{VERSION}.dist-info/"
    with zipfile.ZipFile(dists.wheel) as z:
        names = z.namelist()
        licence = z.read(info + "licenses/LICENSE")
        record = z.read(info + "RECORD").decode()
        contents = {n: z.read(n) for n in names}
    package = {n for n in names if not n.startswith(info)}
    assert package == _source_files()  # every module, py.typed, nothing else
    assert "mcp_otel/py.typed" in package  # PEP 561: the annotations are for users
    assert "Typing :: Typed" in PYPROJECT["classifiers"]
    assert sorted(set(names) - package) == sorted(
        info + n for n in ("METADATA", "WHEEL", "entry_points.txt", "RECORD", "licenses/LICENSE")
    )
    assert licence == (REPO / "LICENSE").read_bytes()
    assert b"Apache License" in licence and b"Version 2.0, January 2004" in licence
    for name in names:
        parts = name.split("/")
        assert "tests" not in parts and not parts[-1].startswith(("test_", "conftest")), name
        assert not any(bad in name for bad in _NEVER_SHIPPED), name
    # RECORD lists every file once, with the right hash and size (RECORD itself unhashed).
    rows = {row[0]: row[1:] for row in csv.reader(io.StringIO(record))}
    assert set(rows) == set(names)
    for name, (digest, size) in rows.items():
        if name == info + "RECORD":
            assert (digest, size) == ("", "")
            continue
        data = contents[name]
        expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
        assert (digest, size) == (f"sha256={expected.decode()}", str(len(data))), name


def test_sdist_metadata_and_contents(dists: Dists) -> None:
    root = f"{DIST}-{VERSION}/"
    with tarfile.open(dists.sdist) as tar:
        members = tar.getmembers()
        raw = tar.extractfile(root + "PKG-INFO").read()  # type: ignore[union-attr]
        licence = tar.extractfile(root + "LICENSE").read()  # type: ignore[union-attr]
    _check_metadata(_metadata(raw))
    assert licence == (REPO / "LICENSE").read_bytes()
    names = {m.name for m in members}
    assert all(n.startswith(root) for n in names)
    for required in ("pyproject.toml", "README.md", "LICENSE", "PKG-INFO"):
        assert root + required in names
    shipped = {n[len(root) + len("src/"):] for n in names if n.startswith(root + "src/")}
    assert shipped == _source_files()
    for member in members:
        assert member.isfile() or member.isdir(), member.name  # no links, no devices
        assert not any(bad in member.name + ("/" if member.isdir() else "")
                       for bad in _NEVER_SHIPPED), member.name
    assert dists.sdist.stat().st_size < 2 * 1024 * 1024  # no data or environment slipped in


def test_wheel_installs_in_a_clean_venv_and_runs_the_demo(
    dists: Dists, tmp_path: Path
) -> None:
    """A user's install: a new venv, the wheel (not the checkout, not editable) first
    alone, then with the ``demo`` extra, and the demo run in an empty directory."""
    uv = _uv()
    venv = tmp_path / "venv"
    _run([uv, "venv", "--quiet", "--python", sys.executable, str(venv)], cwd=tmp_path)
    python = venv / "bin" / "python"
    _run([uv, "pip", "install", "--quiet", "--python", str(python), str(dists.wheel)],
         cwd=tmp_path)

    # The core install: the wheel's own files, no MCP framework pulled in, entry points
    # registered where the OpenTelemetry SDK's configurator looks them up.
    probe = _run([str(python), "-c", _PROBE], cwd=tmp_path)
    found = json.loads(probe)
    site = Path(found["file"]).resolve()
    assert site.is_relative_to(venv.resolve()) and not site.is_relative_to(REPO), found
    assert "archive_info" in found["direct_url"] and "dir_info" not in found["direct_url"]
    assert found["version"] == VERSION
    assert found["frameworks"] == []  # mcp-otel depends on no MCP framework
    assert found["exporters"] == {
        "logs": "JsonlLogExporter", "traces": "JsonlSpanExporter",
        "metrics": "JsonlMetricExporter",
    }  # fmt: skip
    assert found["typed"] is True
    cli = venv / "bin" / "mcp-otel"
    assert _run([str(cli), "--version"], cwd=tmp_path).strip() == f"mcp-otel {VERSION}"

    # With the demo extra: a real MCP server and client, every count checked by the demo.
    _run([uv, "pip", "install", "--quiet", "--python", str(python), f"{dists.wheel}[demo]"],
         cwd=tmp_path)
    workdir, data = tmp_path / "cwd", tmp_path / "data"
    workdir.mkdir()
    out = _run([str(cli), "demo", "--processes", "1", "--clients", "1", "--calls", "3",
                "--seed", "7", "--out", str(data)], cwd=workdir, timeout=180)
    assert "all counts agree" in out, out[-3000:]
    assert list(workdir.iterdir()) == []  # it wrote only into the directory it was given
    audit = sorted(p.name for p in (data / "audit").iterdir())
    assert len(audit) == 1 and audit[0].startswith("mcp_audit_"), audit
    verify = subprocess.run([str(cli), "verify", str(data / "audit")], cwd=workdir,
                            capture_output=True, text=True, timeout=60, env=_clean_env())
    assert verify.returncode == 0, (verify.stdout, verify.stderr)


_PROBE = """
import importlib.metadata as md, importlib.util, json, pathlib
import mcp_otel
dist = md.distribution("mcp-otel")
print(json.dumps({
    "file": mcp_otel.__file__,
    "version": dist.version,
    "direct_url": json.loads(dist.read_text("direct_url.json") or "{}"),
    "frameworks": [m for m in ("mcp", "fastmcp") if importlib.util.find_spec(m)],
    "exporters": {
        s: md.entry_points(group=f"opentelemetry_{s}_exporter")["jsonl"].load().__name__
        for s in ("logs", "traces", "metrics")
    },
    "typed": (pathlib.Path(mcp_otel.__file__).parent / "py.typed").is_file(),
}))
"""
