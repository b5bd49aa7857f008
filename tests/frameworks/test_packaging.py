"""Installing mcp-otel never changes the user's MCP framework.

Built as a user gets it (a wheel), installed with plain ``pip`` into fresh environments that
already hold a framework the way a user's server environment does: mcp 1.30 (Osiris' kind
of server) and fastmcp 2.14 (which needs mcp<2). Before this, the ``[mcp]`` extra pinned
``mcp>=2.3,<2.4`` and an install replaced a working mcp 1.30 with 2.3.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests._support import require
from tests.frameworks._lines import REPO

_TIMEOUT_S = 300.0
#: Distribution names that are an MCP framework or part of one.
_FRAMEWORKS = {"mcp", "fastmcp", "fastmcp-slim", "mcp-types"}


def _uv() -> str:
    found = shutil.which("uv") or shutil.which("uv", path=str(Path(sys.executable).parent))
    require(found, "uv is not installed (it is in the dev extra): pip install uv")
    assert found is not None
    return found


def _run(*cmd: str | Path) -> str:
    done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                          timeout=_TIMEOUT_S, stdin=subprocess.DEVNULL, check=False)
    assert done.returncode == 0, f"{cmd}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _freeze(python: Path) -> dict[str, str]:
    """Installed distributions (normalised name -> version) of an environment."""
    out = _run(python, "-c", "import importlib.metadata as m; print('\\n'.join("
               "f'{d.metadata[\"Name\"]}=={d.version}' for d in m.distributions()))")
    pairs = (line.split("==", 1) for line in out.splitlines() if "==" in line)
    return {re.sub(r"[-_.]+", "-", name).lower(): version for name, version in pairs}


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """mcp-otel's wheel, built once per test session."""
    out = tmp_path_factory.mktemp("dist")
    _run(_uv(), "build", "--wheel", "--quiet", "--out-dir", out, REPO)
    (built,) = out.glob("mcp_otel-*.whl")
    return built


def test_wheel_requires_no_framework_outside_the_demo_extra(wheel: Path) -> None:
    """Only ``[demo]`` (and ``[dev]``, which includes it) names a framework."""
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = zf.read(name).decode().splitlines()
    requires = [line.removeprefix("Requires-Dist:").strip()
                for line in metadata if line.startswith("Requires-Dist:")]
    framework_extras = {
        re.search(r"extra\s*==\s*['\"]([\w-]+)['\"]", r).group(1) if "extra" in r else None
        for r in requires
        if re.split(r"[\s;<>=!~\[]", r, maxsplit=1)[0].lower() in _FRAMEWORKS
    }
    assert framework_extras == {"demo", "dev"}, requires
    assert "Provides-Extra: mcp" not in metadata


@pytest.mark.parametrize("framework", ["mcp==1.30.0", "fastmcp==2.14.7"])
def test_pip_install_keeps_the_installed_framework(framework: str, wheel: Path,
                                                   tmp_path: Path) -> None:
    uv = _uv()
    venv = tmp_path / "venv"
    python = venv / "bin" / "python"
    _run(uv, "venv", "--quiet", "--seed", "--python", sys.executable, venv)
    _run(uv, "pip", "install", "--quiet", "--python", python, framework)
    before = _freeze(python)

    _run(python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", wheel)
    after = _freeze(python)

    assert after["mcp-otel"] == "0.1.0"
    changed = {name: (version, after.get(name)) for name, version in before.items()
               if after.get(name) != version}
    assert not changed, f"installing mcp-otel changed {changed}"
    for name in _FRAMEWORKS & before.keys():
        assert after[name] == before[name]
    package, _, version = framework.partition("==")
    assert after[package] == version
    _run(python, "-c", "import mcp_otel, mcp_otel.audit, mcp_otel.telemetry, mcp_otel.cache")


@pytest.mark.parametrize(("framework", "demo_on"), [("mcp==1.30.0", "mcp1"),
                                                    ("fastmcp==2.14.7", "mcp1")])
def test_the_demo_extra_keeps_the_installed_framework_and_runs_on_it(
        framework: str, demo_on: str, wheel: Path, tmp_path: Path) -> None:
    """``[demo]`` names mcp only with the bounds mcp-otel instruments (1.2.1 to 2.x): an
    installed mcp 1.x stays, and the demo picks the framework that is there."""
    uv = _uv()
    venv = tmp_path / "venv"
    python = venv / "bin" / "python"
    _run(uv, "venv", "--quiet", "--seed", "--python", sys.executable, venv)
    _run(uv, "pip", "install", "--quiet", "--python", python, framework)
    before = _freeze(python)

    _run(python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         f"{wheel}[demo]")
    after = _freeze(python)

    for name in _FRAMEWORKS & before.keys():
        assert after[name] == before[name], f"installing mcp-otel[demo] changed {name}"
    assert {"uvicorn", "httpx"} <= after.keys()
    chosen = _run(python, "-c", "from mcp_otel._demo.frameworks import resolve; "
                  "print(resolve(None).name)")
    assert chosen.strip() == demo_on
