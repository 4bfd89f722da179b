"""docker-compose.yml and the Dockerfile, checked by parsing (CI has no Docker engine)."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

REPO = Path(__file__).resolve().parents[2]
APP_SERVICES = ("dispatcher", "executor")
# One prefix per settings class (STYLE.md §5); anything else would be silently ignored.
SETTINGS_PREFIXES = ("WQ_AMQP_", "WQ_LOG_", "WQ_DISPATCHER_", "WQ_EXECUTOR_")


def _services() -> dict[str, Any]:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services: dict[str, Any] = compose["services"]
    return services


def _environment(service: dict[str, Any]) -> dict[str, str]:
    """The service's environment, whichever of Compose's two spellings it uses."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(key): str(value) for key, value in env.items()}


def _with_defaults(value: str) -> str:
    """Apply Compose's ``${VAR:-default}`` defaults, as with no .env file."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value)


def _command(service: dict[str, Any]) -> str:
    command = service["command"]
    return command if isinstance(command, str) else shlex.join(command)


def _host_ip(port: str | dict[str, Any]) -> str | None:
    if isinstance(port, dict):
        return port.get("host_ip")
    parts = str(port).rsplit(":", 2)
    return parts[0] if len(parts) == 3 else None


def _copy_sources(dockerfile: str) -> list[str]:
    """Build-context sources of every COPY (not ``--from`` stages)."""
    sources: list[str] = []
    for line in dockerfile.splitlines():
        words = line.strip().split(maxsplit=1)
        if len(words) < 2 or words[0].upper() != "COPY":
            continue
        args = words[1]
        parts = json.loads(args) if args.startswith("[") else shlex.split(args)
        if any(part.startswith("--from") for part in parts):
            continue
        sources += [part for part in parts if not part.startswith("--")][:-1]
    return sources


def test_compose_defines_broker_dispatcher_and_executor() -> None:
    assert {"rabbitmq", *APP_SERVICES} <= set(_services())


def test_published_ports_are_bound_to_localhost_only() -> None:
    ports = [port for service in _services().values() for port in service.get("ports", [])]
    assert ports
    assert all(_host_ip(port) == "127.0.0.1" for port in ports), ports


def test_executor_runs_replicas_with_a_stop_grace_period() -> None:
    executor = _services()["executor"]
    assert executor["deploy"]["replicas"] >= 2
    assert executor["stop_grace_period"]


def test_app_services_only_set_known_wq_settings() -> None:
    for name in APP_SERVICES:
        env = _environment(_services()[name])
        assert env, name
        assert all(key.startswith(SETTINGS_PREFIXES) for key in env), (name, sorted(env))


def test_app_services_run_the_documented_commands() -> None:
    services = _services()
    assert _command(services["dispatcher"]).startswith("dispatcher serve")
    assert _command(services["executor"]).startswith("executor run --tasks examples.tasks")


def test_broker_has_a_healthcheck_and_a_non_guest_user() -> None:
    broker = _services()["rabbitmq"]
    assert "rabbitmq-diagnostics" in " ".join(broker["healthcheck"]["test"])
    user = _with_defaults(_environment(broker)["RABBITMQ_DEFAULT_USER"])
    # RabbitMQ refuses `guest` from anything but loopback, so other containers could not log in.
    assert user
    assert "guest" not in user


def test_app_services_log_in_as_the_broker_default_user() -> None:
    services = _services()
    user = _with_defaults(_environment(services["rabbitmq"])["RABBITMQ_DEFAULT_USER"])
    for name in APP_SERVICES:
        url = urlsplit(_with_defaults(_environment(services[name])["WQ_AMQP_URL"]))
        assert (url.hostname, url.username) == ("rabbitmq", user), name


def test_app_services_wait_for_a_healthy_broker() -> None:
    for name in APP_SERVICES:
        depends_on = _services()[name]["depends_on"]
        assert depends_on["rabbitmq"]["condition"] == "service_healthy", name


def test_every_dockerfile_copy_source_exists() -> None:
    sources = _copy_sources((REPO / "Dockerfile").read_text())
    assert sources
    missing = [source for source in sources if not (REPO / source).exists()]
    assert not missing
