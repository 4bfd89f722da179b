"""The compose files and the Dockerfile, checked by parsing (CI has no Docker engine).

The Compose Specification's schema comes from check-jsonschema (``vendor.compose-spec``), which
CI installs with the dev group; without it these tests fail, never skip. The rest checks what
the schema cannot: every WQ_* variable exists in a settings class, secrets come from the
environment, the executor's grace fits its stop_grace_period, the cluster lists every node.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from pydantic import SecretStr
from pydantic_settings import BaseSettings

from common import AmqpSettings, LogSettings, load_registry
from dispatcher.settings import DispatcherSettings
from executor.settings import ExecutorSettings

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILES = ("docker-compose.yml", "docker-compose.cluster.yml")
APP_SERVICES = ("dispatcher", "executor")
# One settings class per prefix (STYLE.md §5); anything else would be silently ignored.
SETTINGS: dict[str, type[BaseSettings]] = {
    "WQ_AMQP_": AmqpSettings,
    "WQ_LOG_": LogSettings,
    "WQ_DISPATCHER_": DispatcherSettings,
    "WQ_EXECUTOR_": ExecutorSettings,
}
SETTINGS_PREFIXES = tuple(SETTINGS)
CLUSTER_NODES = ("rabbitmq-1", "rabbitmq-2", "rabbitmq-3")
SCHEMA_ARGS = ("--builtin-schema", "vendor.compose-spec")


def _compose(name: str = "docker-compose.yml") -> dict[str, Any]:
    compose: dict[str, Any] = yaml.safe_load((REPO / name).read_text())
    return compose


def _services(name: str = "docker-compose.yml") -> dict[str, Any]:
    services: dict[str, Any] = _compose(name)["services"]
    return services


def _wq_services(name: str) -> dict[str, dict[str, Any]]:
    """Services of ours: those that set any WQ_* variable."""
    return {
        key: service
        for key, service in _services(name).items()
        if any(var.startswith("WQ_") for var in _environment(service))
    }


def _seconds(duration: str) -> float:
    """A Compose duration such as ``40s`` or ``1m30s`` in seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert parts, duration
    assert "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


def _check_compose_schema(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", *SCHEMA_ARGS, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _environment(service: dict[str, Any]) -> dict[str, str]:
    """The service's environment, whichever of Compose's two spellings it uses."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(key): str(value) for key, value in env.items()}


# What the README's first command writes to .env: the variables compose requires.
DOT_ENV = {"WQ_BROKER_PASSWORD": "0123456789abcdef", "WQ_DISPATCHER_HTTP_TOKEN": "f" * 32}
REQUIRED_SECRETS = ("WQ_BROKER_PASSWORD", "WQ_DISPATCHER_HTTP_TOKEN")


def _with_defaults(value: str) -> str:
    """Interpolate as Compose does with the README's .env: its values, else the defaults."""
    value = re.sub(r"\$\{(\w+):\?[^}]*\}", lambda m: DOT_ENV[m.group(1)], value)
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


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_compose_file_follows_the_compose_specification(name: str) -> None:
    checked = _check_compose_schema(REPO / name)

    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_schema_check_rejects_what_compose_would(tmp_path: Path) -> None:
    broken = tmp_path / "compose.yml"
    # A misspelt key: Compose refuses to load the file, so must CI.
    broken.write_text("services:\n  executor:\n    image: x\n    stop_grace: 40s\n")

    checked = _check_compose_schema(broken)

    assert checked.returncode != 0
    assert "stop_grace" in checked.stdout + checked.stderr


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_every_wq_variable_set_exists_in_a_settings_class(name: str) -> None:
    services = _wq_services(name)
    assert {"dispatcher", "executor"} <= set(services)
    unknown = []
    for service_name, service in services.items():
        for var in _environment(service):
            prefix = next((p for p in SETTINGS if var.startswith(p)), None)
            field = var.removeprefix(prefix or "").lower().partition("__")[0]
            if prefix is None or field not in SETTINGS[prefix].model_fields:
                unknown.append(f"{service_name}: {var}")
    assert not unknown


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_every_broker_url_is_valid_and_lists_the_broker_services(name: str) -> None:
    brokers = {
        service.get("hostname")
        for service in _services(name).values()
        if "rabbitmq" in str(service.get("image", ""))
    }
    for service_name, service in _wq_services(name).items():
        url = _with_defaults(_environment(service)["WQ_AMQP_URL"])
        hosts = {urlsplit(u).hostname for u in AmqpSettings(url=SecretStr(url)).urls()}
        assert hosts == brokers, service_name


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_broker_is_a_pinned_supported_4x_management_image(name: str) -> None:
    images = {s["image"] for s in _services(name).values() if "rabbitmq" in s.get("image", "")}
    assert images
    assert all(re.fullmatch(r"rabbitmq:4\.\d+-management", image) for image in images), images


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_executors_scale_and_outlive_their_shutdown_grace(name: str) -> None:
    for service in _services(name).values():
        assert "container_name" not in service  # it would forbid --scale and replicas
    executor = _services(name)["executor"]
    grace = float(_environment(executor)["WQ_EXECUTOR_SHUTDOWN_GRACE"])
    assert executor["deploy"]["replicas"] >= 2
    assert _seconds(executor["stop_grace_period"]) > grace


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_dispatcher_api_listens_in_the_container_with_a_token_from_the_environment(
    name: str,
) -> None:
    dispatcher = _services(name)["dispatcher"]
    env = _environment(dispatcher)
    assert env["WQ_DISPATCHER_HTTP_HOST"] == "0.0.0.0"
    assert env["WQ_DISPATCHER_HTTP_TOKEN"].startswith("${WQ_DISPATCHER_HTTP_TOKEN")
    assert f"127.0.0.1:8080:{env['WQ_DISPATCHER_HTTP_PORT']}" in dispatcher["ports"]


def test_cluster_runs_three_named_nodes_with_a_shared_cookie_and_quorum_queues() -> None:
    services = _services("docker-compose.cluster.yml")
    nodes = {name: services[name] for name in CLUSTER_NODES}
    assert [node["hostname"] for node in nodes.values()] == list(CLUSTER_NODES)
    cookies = {_environment(node)["ERLANG_COOKIE"] for node in nodes.values()}
    assert len(cookies) == 1
    assert cookies.pop().startswith("${WQ_ERLANG_COOKIE:?"), "the cookie has no default"
    peers = (REPO / "deploy" / "rabbitmq-cluster.conf").read_text()
    assert "peer_discovery_backend = classic_config" in peers
    for index, host in enumerate(CLUSTER_NODES, start=1):
        assert f"classic_config.nodes.{index} = rabbit@{host}" in peers
    for name in _wq_services("docker-compose.cluster.yml"):
        assert _environment(services[name])["WQ_AMQP_QUEUE_TYPE"] == "quorum", name


def test_no_cluster_node_waits_for_another_so_any_restart_order_recovers() -> None:
    # A chain of service_healthy conditions between nodes never comes back from a down/up when
    # the first node in the chain stopped first: it waits at boot for nodes compose will not
    # create until it is healthy. The first-boot order lives in deploy/rabbitmq-node.sh instead.
    services = _services("docker-compose.cluster.yml")
    for name in CLUSTER_NODES:
        assert set(services[name].get("depends_on", {})).isdisjoint(CLUSTER_NODES), name
        assert services[name]["entrypoint"] == ["/bin/sh", "/opt/wq/rabbitmq-node.sh"], name
        assert "./deploy/rabbitmq-node.sh:/opt/wq/rabbitmq-node.sh:ro" in services[name]["volumes"]
        assert _environment(services[name])["SEED_NODE"] == CLUSTER_NODES[0], name


def test_cluster_places_queue_leaders_and_clients_across_the_nodes() -> None:
    conf = (REPO / "deploy" / "rabbitmq-cluster.conf").read_text()
    assert re.search(r"^queue_leader_locator = balanced$", conf, re.MULTILINE)
    for name in _wq_services("docker-compose.cluster.yml"):
        env = _environment(_services("docker-compose.cluster.yml")[name])
        assert env.get("WQ_AMQP_URL_ORDER", "spread") == "spread", name


def test_dockerfile_runs_as_non_root_with_a_healthcheck_and_exec_form() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    instructions = [
        line.split(maxsplit=1) for line in dockerfile.splitlines() if line[:1].isupper()
    ]
    keywords = {words[0]: words[1] if len(words) > 1 else "" for words in instructions}
    assert re.fullmatch(r"python:3\.\d+-slim(-\w+)?", keywords["FROM"])
    assert keywords["USER"].split(":")[0] not in ("root", "0")
    assert "HEALTHCHECK" in keywords
    assert keywords["CMD"].startswith("["), "exec form, so SIGTERM reaches the service"
    assert "PYTHONUNBUFFERED=1" in dockerfile
    assert "--requirement requirements.lock" in dockerfile


def test_requirements_lock_pins_every_runtime_dependency() -> None:
    import tomllib

    def normal(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = {
        normal(re.split(r"[\[<>=!~ ;]", dep, maxsplit=1)[0]) for dep in project["dependencies"]
    }
    lines = [
        line for line in (REPO / "requirements.lock").read_text().splitlines() if line[:1].isalnum()
    ]
    assert all("==" in line for line in lines), lines
    pinned = {normal(line.partition("==")[0]) for line in lines}
    assert wanted <= pinned, sorted(wanted - pinned)


def test_two_executor_pools_consume_every_queue_the_example_types_declare_once() -> None:
    services = _services()
    consumed: list[str] = []
    for name in ("executor", "reports-executor"):
        argv = services[name]["command"]
        assert argv[:2] == ["executor", "run"], name
        consumed += argv[argv.index("--queues") + 1].split(",")
        assert services[name]["stop_grace_period"] == services["executor"]["stop_grace_period"]
    registry = load_registry("examples.tasks", search_path=str(REPO))
    assert sorted(consumed) == registry.queues() == ["default", "reports"]


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_the_demo_suggests_a_lookup_command_that_exists_in_the_stack(name: str) -> None:
    # The summary's "look one up" line: .venv/bin/dispatcher exists on a laptop, not in the
    # container, and the store it reads is the dispatcher service's.
    argv = _services(name)["demo"]["command"]
    lookup = argv[argv.index("--lookup") + 1]
    compose = "docker compose" + ("" if name == "docker-compose.yml" else f" -f {name}")

    assert lookup == f"{compose} exec dispatcher dispatcher"
    assert _command(_services(name)["dispatcher"]).startswith("dispatcher ")


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_the_broker_password_and_the_token_are_required_with_no_fallback(name: str) -> None:
    text = (REPO / name).read_text()
    uses = re.findall(r"\$\{(WQ_BROKER_PASSWORD|WQ_DISPATCHER_HTTP_TOKEN)([^}]*)\}", text)

    assert {var for var, _ in uses} == set(REQUIRED_SECRETS)
    # ${VAR:?message}: compose refuses to start without it, saying where to set it.
    assert all(rest.startswith(":?") and ".env" in rest for _, rest in uses), uses
    assert "wq-change-me" not in text


def test_the_first_command_writes_every_required_secret_to_dot_env() -> None:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Docker Compose\n", 1)[1]
    first = section.split("```bash\n", 1)[1].splitlines()[0]

    assert first.startswith("printf ")
    assert first.split("#")[0].rstrip().endswith("> .env")
    assert all(f"{var}=%s" in first for var in REQUIRED_SECRETS)


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_only_the_long_running_services_are_health_checked(name: str) -> None:
    # The image's HEALTHCHECK looks for the ready file that serve and run keep; the one-shot
    # demo never writes it, and would be reported unhealthy.
    services = _services(name)
    assert services["demo"]["healthcheck"] == {"disable": True}
    for service in _wq_services(name).keys() - {"demo"}:
        assert not services[service].get("healthcheck", {}).get("disable"), service


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_the_demo_runs_where_the_image_keeps_the_example_tasks(name: str) -> None:
    # `python -m examples.demo` imports from the working directory: the image's, /app.
    demo = _services(name)["demo"]
    assert demo.get("working_dir", "/app") == "/app"
    assert re.search(r"^WORKDIR /app$", (REPO / "Dockerfile").read_text(), re.MULTILINE)
    assert "COPY examples/ ./examples/" in (REPO / "Dockerfile").read_text()


def test_the_image_exposes_the_api_port_and_puts_no_sources_on_the_path() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    dispatcher = _environment(_services()["dispatcher"])

    assert re.search(rf"^EXPOSE .*\b{dispatcher['WQ_DISPATCHER_HTTP_PORT']}\b", dockerfile, re.M)
    # The package is installed: a copy of its sources on sys.path could only shadow it.
    assert "PYTHONPATH" not in dockerfile
    for package in ("common", "dispatcher", "executor"):
        assert f"COPY {package}/ ./{package}/" not in dockerfile
    assert "rm -rf /tmp/wq-src" in dockerfile


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_executors_are_named_by_the_container_not_given_one_name(name: str) -> None:
    # Replicas share one environment: a WQ_EXECUTOR_NAME there would give them all one name
    # (one row in the store, one consumer tag). Each takes its container's name instead.
    for service_name, service in _services(name).items():
        if "command" in service and _command(service).startswith("executor run"):
            assert "WQ_EXECUTOR_NAME" not in _environment(service), service_name
