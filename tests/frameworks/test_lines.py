"""Each framework line passes the shared suite, run inside that line's own environment.

The environments are built by ``scripts/framework-envs.sh`` (``.ci/run`` does it before
pytest and exports ``MCP_OTEL_ENVS_DIR``). Each line's run is a real ``python -m pytest`` in
its environment's interpreter, so the framework under test is the one a user of that line
has, not whatever the main environment holds. The selected lines start together, as many
at a time as there are cores, and each test waits for its own line's run.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree

import pytest

from tests._support import require
from tests.frameworks._lines import LINE_VARIABLE, REPO, all_lines, envs_dir

#: One line's whole suite; generous because it grows with the transports it drives.
_RUN_TIMEOUT_S = 900.0
_SUITE = "tests/frameworks/suite"
_SUMMARY = re.compile(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed)\b")
_LINES = all_lines()


#: Suite modules every line must pass tests of (a module that skips itself whole, as the
#: family-specific ones do elsewhere, would otherwise go unnoticed), by family.
_MODULES = ("test_smoke", "test_instrumentation", "test_auto", "test_demo")
_FAMILY_MODULES = {"mcp1": ("test_mcp1",), "mcp2": (), "fastmcp2": ("test_fastmcp",),
                   "fastmcp3": ("test_fastmcp",), "fastmcp4": ("test_fastmcp",)}


@dataclass(frozen=True)
class SuiteRun:
    """A finished run of the suite in one line's environment."""

    returncode: int
    output: str
    #: Tests that passed, per suite module (from the run's JUnit XML report).
    passed_by_module: dict[str, int] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        """pytest's closing summary (``3 passed, 1 skipped in 2.1s``) as numbers."""
        summary = next((line for line in reversed(self.output.splitlines())
                        if _SUMMARY.search(line)), "")
        counts = {"passed": 0, "failed": 0, "error": 0, "skipped": 0}
        for number, word in _SUMMARY.findall(summary):
            key = "error" if word.startswith("error") else word
            counts[key] = counts.get(key, 0) + int(number)
        return counts


def _python(line: str, envs: Path | None = None) -> Path:
    return (envs or envs_dir()) / line / "bin" / "python"


def _passed_by_module(report: Path) -> dict[str, int]:
    passed: dict[str, int] = {}
    if not report.exists():
        return passed
    for case in ElementTree.parse(report).iter("testcase"):
        if any(child.tag in ("failure", "error", "skipped") for child in case):
            continue
        module = case.get("classname", "").rsplit(".", 1)[-1]
        passed[module] = passed.get(module, 0) + 1
    return passed


def _run_suite(line: str, envs: Path | None = None, select: str = _SUITE,
               reports: Path | None = None) -> SuiteRun:
    env = dict(os.environ, **{LINE_VARIABLE: line})
    report = (reports / f"{line}.xml") if reports is not None else None
    junit = [f"--junitxml={report}"] if report is not None else []
    try:
        done = subprocess.run(
            [str(_python(line, envs)), "-m", "pytest", select, "-q", "-p", "no:cacheprovider",
             *junit],
            cwd=REPO, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=_RUN_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        return SuiteRun(-1, f"{out}\n(timed out after {_RUN_TIMEOUT_S:.0f}s)")
    return SuiteRun(done.returncode, done.stdout + done.stderr,
                    _passed_by_module(report) if report is not None else {})


@pytest.fixture(scope="module")
def suite_runs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
               ) -> Iterator[dict[str, Future[SuiteRun]]]:
    """Start every selected line whose environment exists, all at once (bounded by cores)."""
    selected = [item.callspec.params["line"] for item in request.session.items
                if item.module is request.module and hasattr(item, "callspec")]
    reports = tmp_path_factory.mktemp("suite-reports")
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        runs = {line: pool.submit(_run_suite, line, None, _SUITE, reports)
                for line in dict.fromkeys(selected) if _python(line).exists()}
        yield runs
        for future in runs.values():
            future.cancel()


@pytest.mark.timeout(_RUN_TIMEOUT_S * len(_LINES))
@pytest.mark.parametrize("line", list(_LINES))
def test_line_passes_the_shared_suite(line: str,
                                      suite_runs: dict[str, Future[SuiteRun]]) -> None:
    require(line in suite_runs,
            f"no environment for {line} at {envs_dir() / line}: run scripts/framework-envs.sh")
    run = suite_runs[line].result()
    counts = run.counts()
    tail = "\n".join(run.output.splitlines()[-80:])
    assert run.returncode == 0, f"{line}: suite exited {run.returncode}\n{tail}"
    assert counts["failed"] == counts["error"] == 0, f"{line}: {counts}\n{tail}"
    assert counts["passed"] > 0, f"{line}: ran no test\n{tail}"
    for module in (*_MODULES, *_FAMILY_MODULES[_LINES[line].family]):
        assert run.passed_by_module.get(module, 0) > 0, (
            f"{line}: no test of {module} passed ({run.passed_by_module})\n{tail}")


def test_a_line_whose_environment_holds_another_release_fails(tmp_path: Path) -> None:
    """The runner sees a failing suite: mcp1-old's name on mcp1-new's environment."""
    real = envs_dir() / "mcp1-new"
    require((real / "bin" / "python").exists(),
            f"no environment for mcp1-new at {real}: run scripts/framework-envs.sh")
    (tmp_path / "mcp1-old").symlink_to(real)
    run = _run_suite("mcp1-old", tmp_path,
                     f"{_SUITE}/test_smoke.py::test_installed_framework_is_the_lines_release")
    assert run.returncode == 1, run.output
    assert run.counts() == {"passed": 0, "failed": 1, "error": 0, "skipped": 0}, run.output
    lines = all_lines()
    assert lines["mcp1-new"].version in run.output and lines["mcp1-old"].version in run.output
