"""The deployment examples in config/deploy/: each gateway.yaml passes `gateway check-config`, each
prometheus.yml passes `promtool check config`, and each compose file refers only to what exists.

Every directory under config/deploy/ with a compose.yaml is an example. Docker is not needed: the
compose files are read as YAML and their references checked (services, files, volumes, the admin
port Prometheus scrapes, the variables .env.example must list).
"""

from __future__ import annotations

import re
import secrets
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.tools import need

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "config" / "deploy"
EXAMPLES = sorted(path.parent for path in DEPLOY.glob("*/compose.yaml"))
# ${NAME}, ${NAME:-default}, ${NAME:?message} (compose) and ${NAME} (gateway.yaml).
VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:?[-?][^}]*)?\}")
MOUNTED_CONFIG = "/etc/gateway/gateway.yaml"


def example_ids() -> list[str]:
    return [path.name for path in EXAMPLES]


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def services(example: Path) -> dict[str, Any]:
    found: dict[str, Any] = load_yaml(example / "compose.yaml")["services"]
    return found


def env_example(example: Path) -> dict[str, str]:
    """The variables `.env.example` lists, with their example values ("" for a secret to fill in)."""
    values = {}
    for raw in (example / ".env.example").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def required_variables(text: str) -> set[str]:
    """Variables used without a default (`${NAME}` or `${NAME:?...}`): the ones that must be set."""
    return {m.group(1) for m in VARIABLE.finditer(text) if not (m.group(2) or "").lstrip(":").startswith("-")}


def all_variables(text: str) -> set[str]:
    return {m.group(1) for m in VARIABLE.finditer(text)}


def bind_mounts(service: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(source, target) of each bind mount in the short syntax (`./file:/path[:ro]`)."""
    for volume in service.get("volumes", []):
        source, target, *_ = volume.split(":")
        yield source, target


def gateway_services(example: Path) -> dict[str, Any]:
    """The services that run the gateway: those that mount a file at the image's config path."""
    return {
        name: service
        for name, service in services(example).items()
        if any(target == MOUNTED_CONFIG for _, target in bind_mounts(service))
    }


def test_there_are_examples_for_one_and_several_instances() -> None:
    stores = {load_yaml(example / "gateway.yaml")["store"].split(":", 1)[0] for example in EXAMPLES}
    assert {"sqlite", "redis"} <= stores, f"examples found: {example_ids()}"


@pytest.mark.parametrize("example", EXAMPLES, ids=example_ids())
def test_gateway_yaml_passes_check_config(example: Path) -> None:
    # The example values of .env.example, and a fresh random value for each secret left empty there.
    env = {name: value or secrets.token_hex(16) for name, value in env_example(example).items()}
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", "-c", str(example / "gateway.yaml")],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert ": OK:" in result.stdout


@pytest.mark.parametrize("example", EXAMPLES, ids=example_ids())
def test_prometheus_yml_passes_promtool(example: Path) -> None:
    need("promtool")
    result = subprocess.run(
        ["promtool", "check", "config", str(example / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("example", EXAMPLES, ids=example_ids())
def test_compose_refers_only_to_what_exists(example: Path) -> None:
    compose = load_yaml(example / "compose.yaml")
    declared_volumes = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        for dependency in service.get("depends_on", []):
            assert dependency in compose["services"], f"{name} depends on a missing service {dependency}"
        if "build" in service:
            context = (example / service["build"]["context"]).resolve()
            assert (context / service["build"].get("dockerfile", "Dockerfile")).is_file(), name
        for source, target in bind_mounts(service):
            if source.startswith("."):
                assert (example / source).exists(), f"{name} mounts a missing {source} at {target}"
            else:
                assert source in declared_volumes, f"{name} uses an undeclared volume {source}"
    assert gateway_services(example), "no service mounts a gateway.yaml"
    for name, service in gateway_services(example).items():
        sources = [source for source, target in bind_mounts(service) if target == MOUNTED_CONFIG]
        assert sources == ["./gateway.yaml"], f"{name} runs {sources}, not this example's gateway.yaml"


@pytest.mark.parametrize("example", EXAMPLES, ids=example_ids())
def test_prometheus_scrapes_every_gateway_on_its_admin_listener(example: Path) -> None:
    gateway = load_yaml(example / "gateway.yaml")
    admin_port = int(gateway["admin"]["listen"].rsplit(":", 1)[1])
    assert gateway["admin"]["listen"].startswith("0.0.0.0:"), "Prometheus could not reach the admin listener"
    targets = {
        target
        for job in load_yaml(example / "prometheus.yml")["scrape_configs"]
        if job["job_name"] == "gateway"
        for group in job["static_configs"]
        for target in group["targets"]
    }
    assert targets == {f"{name}:{admin_port}" for name in gateway_services(example)}


@pytest.mark.parametrize("example", EXAMPLES, ids=example_ids())
def test_every_variable_is_listed_and_passed_on(example: Path) -> None:
    listed = set(env_example(example))
    compose_text = (example / "compose.yaml").read_text(encoding="utf-8")
    missing = all_variables(compose_text) - listed
    assert not missing, f".env.example does not list {sorted(missing)}"
    needed = required_variables((example / "gateway.yaml").read_text(encoding="utf-8"))
    for name, service in gateway_services(example).items():
        passed = set(service.get("environment") or {})
        assert needed <= passed, f"{name} does not pass {sorted(needed - passed)} to gateway.yaml"


REDIS_EXAMPLES = [example for example in EXAMPLES if (example / "redis.conf").exists()]


@pytest.mark.parametrize("example", REDIS_EXAMPLES, ids=[example.name for example in REDIS_EXAMPLES])
def test_redis_example_is_durable(example: Path) -> None:
    settings: dict[str, list[str]] = {}
    for line in (example / "redis.conf").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, *values = line.split()
            settings.setdefault(key.lower(), []).append(" ".join(values))
    assert settings["appendonly"] == ["yes"]
    assert settings["appendfsync"][-1] in ("everysec", "always")
    assert settings["maxmemory-policy"] == ["noeviction"]
    assert settings["no-appendfsync-on-rewrite"] == ["no"]
    assert '""' not in settings.get("save", []), "no snapshots and no AOF must never be an option"
    store = urlsplit(load_yaml(example / "gateway.yaml")["store"])
    redis = services(example)[store.hostname or ""]
    command = redis["command"]
    assert command[:2] == ["redis-server", "/usr/local/etc/redis/redis.conf"]
    assert ("./redis.conf", command[1]) in set(bind_mounts(redis))
    fsync = command[command.index("--appendfsync") + 1]
    assert fsync.startswith("${REDIS_APPENDFSYNC:-"), fsync
    assert any(target == "/data" for _, target in bind_mounts(redis)), "the AOF must be on a volume"


def test_load_balancer_sends_to_every_instance() -> None:
    for example in EXAMPLES:
        conf = example / "nginx.conf"
        if not conf.exists():
            continue
        lines = [line.split("#", 1)[0] for line in conf.read_text(encoding="utf-8").splitlines()]
        upstreams = {m.groups() for line in lines if (m := re.match(r"\s*server\s+([\w.-]+):(\d+)", line))}
        listen_port = load_yaml(example / "gateway.yaml")["server"]["listen"].rsplit(":", 1)[1]
        assert upstreams == {(name, listen_port) for name in gateway_services(example)}
        # nginx would re-send a POST (an order, a callback) to another instance after it reached one.
        assert not any("non_idempotent" in line for line in lines)


PROMETHEUS_DIR = "/etc/prometheus"
GRAFANA_MOUNTS = {
    "/etc/grafana/provisioning": ROOT / "config" / "grafana" / "provisioning",
    "/var/lib/grafana/dashboards": ROOT / "config" / "grafana" / "dashboards",
}


@pytest.mark.parametrize("example", EXAMPLES, ids=example_ids())
def test_prometheus_loads_the_alert_rules(example: Path) -> None:
    rule_files = load_yaml(example / "prometheus.yml")["rule_files"]
    assert rule_files == ["alerts.yml"]
    # promtool reads it beside prometheus.yml (a link to the rules), the container where compose mounts them.
    rules = ROOT / "config" / "prometheus" / "alerts.yml"
    assert (example / "alerts.yml").resolve() == rules
    mounts = {target: source for source, target in bind_mounts(services(example)["prometheus"])}
    assert (example / mounts[f"{PROMETHEUS_DIR}/alerts.yml"]).resolve() == rules
    assert mounts[f"{PROMETHEUS_DIR}/prometheus.yml"] == "./prometheus.yml"


@pytest.mark.parametrize("example", EXAMPLES, ids=example_ids())
def test_grafana_gets_the_provisioning_and_the_dashboard(example: Path) -> None:
    grafana = services(example)["grafana"]
    mounts = {
        target: (example / source).resolve()
        for source, target in bind_mounts(grafana)
        if source.startswith(".")
    }
    assert mounts == GRAFANA_MOUNTS
    provisioning = GRAFANA_MOUNTS["/etc/grafana/provisioning"]
    [provider] = load_yaml(provisioning / "dashboards" / "gateway.yml")["providers"]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    assert (GRAFANA_MOUNTS["/var/lib/grafana/dashboards"] / "gateway.json").is_file()
    [source] = load_yaml(provisioning / "datasources" / "prometheus.yml")["datasources"]
    assert urlsplit(source["url"]).hostname in services(example)
    assert "prometheus" in grafana.get("depends_on", [])
