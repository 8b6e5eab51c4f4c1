"""docker-compose.yml and deploy/ agree with the settings and with each other (no Docker needed)."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from base.settings import PREFIX, Settings
from streams.ingest import events, pings, webhooks

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
PROMETHEUS_FILE = ROOT / "deploy" / "prometheus" / "prometheus.yml"
ALERTMANAGER_FILE = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
NGINX_FILE = ROOT / "deploy" / "nginx" / "nginx.conf"
GRAFANA_PROVISIONING = ROOT / "deploy" / "grafana" / "provisioning"
INGEST_SOURCES = ROOT / "streams" / "ingest"

INFRA_SERVICES = {"kafka", "clickhouse", "redis", "prometheus", "alertmanager", "grafana", "lb"}
ONE_SHOT_SERVICES = {"topics", "migrate"}
APP_SERVICES = {"topics", "migrate", "worker", "ingest", "sink", "sender"}
# The pipeline processes `docker compose up --scale NAME=N` may run several of.
SCALABLE_SERVICES = {"worker", "ingest", "sink", "sender"}
EXPECTED_SERVICES = INFRA_SERVICES | APP_SERVICES

# What an operator would put in `.env`; anything else required gets a generic placeholder.
PLACEHOLDER_ENV = {
    "CLICKHOUSE_PASSWORD": "placeholder-clickhouse-password",
    "GRAFANA_ADMIN_PASSWORD": "placeholder-grafana-password",
    "WHATSUP_TOKEN_SECRET": "placeholder-token-secret-of-32-characters",
    "WHATSUP_PHONE_HASH_KEY": "placeholder-phone-hash-key",
    "WHATSUP_API_KEYS": "placeholder-key-0001:orders,placeholder-key-0002:dispatcher",
}

_INTERPOLATION = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)
_WHOLE_INTERPOLATION = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*(?::?[-?][^}]*)?\}$")


class MissingVariableError(Exception):
    """A `${VAR:?message}` (or `${VAR?message}`) interpolation whose variable is not set."""


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Resolve compose interpolations in ``value`` against ``env``, like `docker compose config`."""

    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["bare"]
        op, arg = match["op"], match["arg"] or ""
        current = env.get(name)
        # With a colon, an empty value counts as unset.
        unset = current is None or (op is not None and op.startswith(":") and current == "")
        if op is not None and op.endswith("?") and unset:
            raise MissingVariableError(f"{name}: {arg}")
        if op is not None and op.endswith("-") and unset:
            return arg
        return current or ""

    return _INTERPOLATION.sub(replace, value)


def placeholder_env(names: Iterable[str]) -> dict[str, str]:
    """Return a host environment giving every required variable in ``names`` a placeholder."""
    return {name: PLACEHOLDER_ENV.get(name, f"placeholder-{name.lower()}") for name in names}


def required_variables(value: str) -> set[str]:
    """Return the variables ``value`` requires with `${VAR:?...}` or `${VAR?...}`."""
    return {
        m["braced"] for m in _INTERPOLATION.finditer(value) if m["op"] is not None and m["op"].endswith("?")
    }


def unknown_settings(names: Iterable[str]) -> list[str]:
    """Return the ``WHATSUP_*`` names the settings object does not understand."""
    known = Settings.env_names()
    return sorted(name for name in names if name.startswith(PREFIX) and name not in known)


def secret_env_names() -> set[str]:
    """Return the environment names of settings marked ``secret=True``."""
    return {PREFIX + f.name.upper() for f in dataclasses.fields(Settings) if f.metadata["secret"]}


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    """Return a service's environment as a dict, from either the mapping or the list form."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def container_ports(service: Mapping[str, Any]) -> set[int]:
    """Return the container ports a service publishes or exposes to the compose network."""
    ports = {int(str(p).split("/")[0]) for p in service.get("expose", [])}
    for entry in service.get("ports", []):
        # Short syntax: [host_ip:][host_port:]container_port[/protocol]
        target = entry["target"] if isinstance(entry, dict) else str(entry).split("/")[0].split(":")[-1]
        ports.add(int(target))
    return ports


def published_ports(service: Mapping[str, Any]) -> set[int]:
    """Return the host ports a service binds."""
    published = set()
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            published.add(int(entry["published"]))
        else:
            # Short syntax: [host_ip:]host_port:container_port[/protocol]; no host port means a random one.
            parts = str(entry).split("/")[0].split(":")
            if len(parts) >= 2:
                published.add(int(parts[-2]))
    return published


def writable_volumes(service: Mapping[str, Any]) -> list[str]:
    """Return the volumes and bind mounts a service can write to."""
    writable = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            if not volume.get("read_only"):
                writable.append(str(volume.get("source")))
        elif not str(volume).endswith(":ro"):
            writable.append(str(volume))
    return writable


def settings_of(service: Mapping[str, Any]) -> Settings:
    """Return the settings a service starts with, its required host variables given placeholders."""
    raw = environment(service)
    needed = set().union(*(required_variables(v) for v in raw.values()))
    return Settings.from_env({key: interpolate(value, placeholder_env(needed)) for key, value in raw.items()})


_NGINX_COMMENT = re.compile(r"#[^\n]*")
_NGINX_SET = re.compile(r"\bset\s+\$(\w+)\s+(\S+);")
_NGINX_LOCATION = re.compile(r"\blocation\s+(=\s*)?(\S+)\s*\{([^{}]*)\}")
_NGINX_PROXY_PASS = re.compile(r"\bproxy_pass\s+(\S+);")


def nginx_locations(text: str) -> list[tuple[bool, str, str | None]]:
    """Return each location of a simple nginx config as (exact, path, URL it proxies to or None)."""
    text = _NGINX_COMMENT.sub("", text)
    variables = dict(_NGINX_SET.findall(text))
    locations = []
    for exact, path, body in _NGINX_LOCATION.findall(text):
        target = _NGINX_PROXY_PASS.search(body)
        url = None if target is None else variables.get(target[1].lstrip("$"), target[1])
        locations.append((bool(exact), path, url))
    return locations


def nginx_route(locations: list[tuple[bool, str, str | None]], path: str) -> str | None:
    """Return where nginx sends ``path``: an exact location first, else the longest matching prefix."""
    for exact, location, url in locations:
        if exact and location == path:
            return url
    prefixes = [(location, url) for exact, location, url in locations if not exact]
    matches = [(location, url) for location, url in prefixes if path.startswith(location)]
    return max(matches, key=lambda match: len(match[0]))[1] if matches else None


def bind_mounts(service: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """Yield (host path, container path) of every bind mount of a service."""
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            if volume.get("type") == "bind":
                yield volume["source"], volume["target"]
            continue
        source, _, rest = str(volume).partition(":")
        if source.startswith((".", "/", "~")):
            yield source, rest.split(":")[0]


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses a key given twice (PyYAML silently keeps the last one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        keys = [key.value for key, _ in node.value if isinstance(key, yaml.ScalarNode) and key.value != "<<"]
        duplicates = sorted({k for k in keys if keys.count(k) > 1})
        if duplicates:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate keys {duplicates}", node.start_mark
            )
        return super().construct_mapping(node, deep=deep)


def load_yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as handle:
        return yaml.load(handle, Loader=_UniqueKeyLoader)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE_FILE)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture(scope="module")
def prometheus_config() -> dict[str, Any]:
    return load_yaml(PROMETHEUS_FILE)


# --- the interpolation resolver the other tests rely on ---


def test_interpolate_follows_compose_rules() -> None:
    env = {"SET": "value", "EMPTY": ""}
    assert interpolate("${SET}/${SET:-d}/${SET:?m}/$SET", env) == "value/value/value/value"
    assert (
        interpolate("${UNSET:-fallback}|${EMPTY:-fallback}|${EMPTY-kept}|${UNSET}", env)
        == "fallback|fallback||"
    )
    assert interpolate("cost: $$5", env) == "cost: $5"
    with pytest.raises(MissingVariableError, match="UNSET: say why"):
        interpolate("${UNSET:?say why}", env)
    with pytest.raises(MissingVariableError):
        interpolate("${EMPTY:?must not be empty}", env)
    assert required_variables("a${A:?x}b${B:-}c${C?y}") == {"A", "C"}


# --- services ---


def test_a_key_given_twice_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "twice.yml"
    path.write_text("services:\n  sink: {image: a}\n  sink: {image: b}\n")
    with pytest.raises(yaml.constructor.ConstructorError, match="sink"):
        load_yaml(path)


def test_compose_has_every_service(compose: dict[str, Any], services: dict[str, Any]) -> None:
    assert "version" not in compose, "the compose spec has no version key"
    assert set(services) >= EXPECTED_SERVICES


def test_app_services_run_the_project_image(services: dict[str, Any]) -> None:
    images = {services[name]["image"] for name in APP_SERVICES}
    assert len(images) == 1
    for name in APP_SERVICES:
        assert services[name]["build"]["context"] == "."
    assert (ROOT / services["worker"]["build"]["dockerfile"]).is_file()
    commands = {name: services[name]["command"][0] for name in APP_SERVICES}
    assert commands == {
        "topics": "create-topics",
        "migrate": "migrate",
        "sink": "sink",
        "worker": "worker",
        "ingest": "ingest",
        "sender": "sender",
    }


def test_every_whatsup_variable_is_a_setting(services: dict[str, Any]) -> None:
    for name, service in services.items():
        assert unknown_settings(environment(service)) == [], name


def test_unknown_settings_flags_a_made_up_name() -> None:
    assert unknown_settings(["WHATSUP_KAFKA_BOOTSTRAP", "WHATSUP_NOT_A_SETTING", "PATH"]) == [
        "WHATSUP_NOT_A_SETTING"
    ]


def test_secrets_come_from_the_host_environment(services: dict[str, Any]) -> None:
    secrets = secret_env_names()
    assert {"WHATSUP_TOKEN_SECRET", "WHATSUP_API_KEYS", "WHATSUP_TWILIO_AUTH_TOKEN"} <= secrets
    for name, service in services.items():
        for key, value in environment(service).items():
            looks_secret = key in secrets or re.search(r"PASSWORD|SECRET|TOKEN", key) is not None
            if looks_secret:
                assert _WHOLE_INTERPOLATION.match(value), f"{name}: {key} must be a ${{...}} interpolation"
            password = urlsplit(value).password if "://" in value else None
            if password is not None:
                assert _WHOLE_INTERPOLATION.match(password), f"{name}: {key} has a literal password"


def test_required_secrets_fail_loudly_when_missing(services: dict[str, Any]) -> None:
    env = environment(services["worker"])
    for key in ("WHATSUP_TOKEN_SECRET", "WHATSUP_PHONE_HASH_KEY", "WHATSUP_API_KEYS"):
        assert required_variables(env[key]) == {key}
    with pytest.raises(MissingVariableError):
        interpolate(env["WHATSUP_CLICKHOUSE_URL"], {})


def test_settings_accept_the_compose_environment(services: dict[str, Any]) -> None:
    for name in APP_SERVICES:
        settings = settings_of(services[name])
        assert settings.kafka_bootstrap == "kafka:9092"
        if name != "ingest":  # the intake is given no ClickHouse URL at all (see the ingest tests)
            assert urlsplit(settings.clickhouse_url).hostname == "clickhouse"
        assert urlsplit(settings.redis_url).hostname == "redis"
        assert settings.token_secret == PLACEHOLDER_ENV["WHATSUP_TOKEN_SECRET"]
        assert settings.whatsapp_token is None, "optional secrets default to unset"
        assert len(settings.api_keys) == 2


def test_long_running_services_have_a_healthcheck(services: dict[str, Any]) -> None:
    for name, service in services.items():
        if name in ONE_SHOT_SERVICES:
            assert service.get("restart") == "no", name
            continue
        test = service.get("healthcheck", {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL"), name


def test_dependencies_wait_for_the_right_condition(services: dict[str, Any]) -> None:
    for name, service in services.items():
        for dependency, spec in (service.get("depends_on") or {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            condition = spec["condition"]
            if dependency in ONE_SHOT_SERVICES:
                assert condition == "service_completed_successfully", (name, dependency)
            else:
                assert condition == "service_healthy", (name, dependency)
                assert "healthcheck" in services[dependency], dependency
    worker_needs = set(services["worker"]["depends_on"])
    assert {"topics", "migrate", "redis"} <= worker_needs
    assert {"topics", "kafka", "redis"} <= set(services["ingest"]["depends_on"])


def test_worker_listens_where_it_is_checked(services: dict[str, Any]) -> None:
    worker = services["worker"]
    settings = settings_of(worker)
    assert settings.web_port in container_ports(worker)
    assert f"localhost:{settings.web_port}/health" in " ".join(worker["healthcheck"]["test"])


def test_each_worker_advertises_its_own_address(services: dict[str, Any], tmp_path: Path) -> None:
    # Faust listens on every interface whatever WHATSUP_WEB_HOST says; WHATSUP_WEB_HOST is the host of the
    # canonical URL the other workers forward dispatcher requests to, so each replica must give its own.
    worker = services["worker"]
    assert "WHATSUP_WEB_HOST" not in environment(worker), "one fixed address would be every replica's"
    shell, flag, script, name = (interpolate(part, {}) for part in worker["entrypoint"])
    assert (shell, flag, name) == ("/bin/sh", "-c", "whatsup")
    # Run the entrypoint as the container would, with a stand-in for the `whatsup` command.
    stand_in = tmp_path / "whatsup"
    stand_in.write_text('#!/bin/sh\necho "$WHATSUP_WEB_HOST $*"\n')
    stand_in.chmod(0o755)
    env = {"PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}", "HOSTNAME": "3f2a9c0d81be"}
    started = subprocess.run(
        [shell, flag, script, name, *worker["command"]], env=env, capture_output=True, text=True, check=True
    )
    assert started.stdout == "3f2a9c0d81be worker\n"


def test_scaled_services_can_run_side_by_side(services: dict[str, Any]) -> None:
    for name in SCALABLE_SERVICES:
        service = services[name]
        assert published_ports(service) == set(), f"{name}: a fixed host port lets only one replica start"
        assert "container_name" not in service, name
        assert "hostname" not in service, f"{name}: every replica would claim the same name"
        assert writable_volumes(service) == [], f"{name}: replicas would write the same files"


def test_ingest_serves_the_intake_where_it_is_checked(services: dict[str, Any]) -> None:
    ingest = services["ingest"]
    assert ingest["command"] == ["ingest"]
    settings = settings_of(ingest)
    assert settings.web_host == "0.0.0.0", "the balancer and Prometheus reach it over the compose network"
    assert settings.ingest_port in container_ports(ingest)
    assert f"localhost:{settings.ingest_port}/health" in " ".join(ingest["healthcheck"]["test"])


def test_ingest_holds_the_intake_secrets_and_no_others(services: dict[str, Any]) -> None:
    env = environment(services["ingest"])
    secret_fields = {f.name for f in dataclasses.fields(Settings) if f.metadata["secret"]}
    source = " ".join(path.read_text(encoding="utf-8") for path in INGEST_SOURCES.glob("*.py"))
    read = secret_fields & set(re.findall(r"\bsettings\.(\w+)", source))
    assert {"token_secret", "api_keys", "phone_hash_key", "twilio_auth_token"} <= read
    assert {PREFIX + name.upper() for name in read} <= set(env)
    assert "WHATSUP_CLICKHOUSE_URL" not in env, "the intake never queries ClickHouse: no password for it"
    assert {"WHATSUP_WHATSAPP_TOKEN", "WHATSUP_TWILIO_ACCOUNT_SID"}.isdisjoint(env), "it sends no messages"
    # clean_pings must judge a ping as the intake told the phone: both run with the same settings.
    worker_env = environment(services["worker"])
    assert {key: worker_env.get(key) for key in env if key != "WHATSUP_WEB_HOST"} == {
        key: value for key, value in env.items() if key != "WHATSUP_WEB_HOST"
    }


def test_the_sink_scales_only_against_a_clickhouse_server(services: dict[str, Any]) -> None:
    # Embedded chDB is owned by one process; several sinks share a server, one consumer group between them.
    assert urlsplit(settings_of(services["sink"]).clickhouse_url).scheme in ("http", "https")


# --- the load balancer ---


def test_load_balancer_routes_intake_to_ingest_and_reads_to_workers(services: dict[str, Any]) -> None:
    locations = nginx_locations(NGINX_FILE.read_text(encoding="utf-8"))
    ingest = f"http://ingest:{settings_of(services['ingest']).ingest_port}"
    worker = f"http://worker:{settings_of(services['worker']).web_port}"
    expected = {
        pings.ROUTE: ingest,
        events.ROUTE: ingest,
        webhooks.META_ROUTE: ingest,
        webhooks.TWILIO_ROUTE: ingest,
        "/health": ingest,
        "/v1/drivers/drv-17": worker,
        "/v1/deliveries/dlv-42": worker,
        "/v1/deliveries/dlv-42/history": worker,
        # Prometheus scrapes every replica itself; metrics are not public.
        "/metrics": None,
        "/": None,
    }
    assert {path: nginx_route(locations, path) for path in expected} == expected
    for url in {url for _, _, url in locations if url is not None}:
        target = urlsplit(url)
        assert target.hostname in SCALABLE_SERVICES, url
        assert target.port in container_ports(services[target.hostname]), url


def test_load_balancer_finds_every_replica_through_docker_dns() -> None:
    text = _NGINX_COMMENT.sub("", NGINX_FILE.read_text(encoding="utf-8"))
    resolver = re.search(r"\bresolver\s+([^;]+);", text)
    assert resolver is not None, "without a resolver nginx resolves each name once, at start-up"
    assert resolver[1].split()[0] == "127.0.0.11", "Docker's embedded DNS server"
    assert re.search(r"\bvalid=\d+s\b", resolver[1]), "Docker's DNS TTL is 600 s: new replicas need a re-ask"
    # A literal host in proxy_pass is resolved once at start-up; a variable makes nginx use the resolver.
    assert all(target.startswith("$") for target in _NGINX_PROXY_PASS.findall(text))


def test_load_balancer_publishes_the_intake_port(services: dict[str, Any]) -> None:
    lb = services["lb"]
    text = _NGINX_COMMENT.sub("", NGINX_FILE.read_text(encoding="utf-8"))
    listen = {int(port) for port in re.findall(r"\blisten\s+(\d+)\s*;", text)}
    assert listen == {settings_of(services["ingest"]).ingest_port}
    assert published_ports(lb) == listen <= container_ports(lb)
    assert dict(bind_mounts(lb))["./deploy/nginx/nginx.conf"] == "/etc/nginx/nginx.conf"
    assert lb["depends_on"]["ingest"]["condition"] == "service_healthy"


def test_mounted_host_paths_exist(services: dict[str, Any]) -> None:
    mounts = [(name, source) for name, service in services.items() for source, _ in bind_mounts(service)]
    assert mounts, "deploy/ config should be mounted"
    for name, source in mounts:
        assert source.startswith("./deploy/"), f"{name} mounts {source} from outside deploy/"
        assert (ROOT / source).exists(), f"{name} mounts missing {source}"


def test_named_volumes_are_declared(compose: dict[str, Any], services: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.get("source") if isinstance(volume, dict) else str(volume).split(":")[0]
            if source and not source.startswith((".", "/", "~")):
                assert source in declared, f"{name} uses undeclared volume {source}"


# --- Prometheus ---


def test_prometheus_scrapes_the_compose_services(
    services: dict[str, Any], prometheus_config: dict[str, Any]
) -> None:
    jobs = {job["job_name"]: job for job in prometheus_config["scrape_configs"]}
    assert {"prometheus"} | {f"whatsup-{name}" for name in SCALABLE_SERVICES} <= set(jobs)
    assert prometheus_config["global"]["scrape_interval"] == "5s"
    assert jobs["whatsup-worker"]["metrics_path"] == "/metrics"
    for job_name, job in jobs.items():
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host, _, port = target.rpartition(":")
                # Prometheus scrapes itself over its own loopback.
                service = "prometheus" if host == "localhost" else host
                assert service in services, f"{job_name} scrapes unknown host {host}"
                assert int(port) in container_ports(services[service]), f"{job_name}: {target} not exposed"
        for dns in job.get("dns_sd_configs", []):
            for name in dns["names"]:
                assert name in services, f"{job_name} looks up unknown service {name}"
                assert dns["port"] in container_ports(services[name]), f"{job_name}: {name}:{dns['port']}"


def test_prometheus_scrapes_every_replica(prometheus_config: dict[str, Any]) -> None:
    jobs = {job["job_name"]: job for job in prometheus_config["scrape_configs"]}
    for name in SCALABLE_SERVICES:
        job = jobs[f"whatsup-{name}"]
        # A static target is one address; a compose service name answers with every replica's (type A).
        assert "static_configs" not in job, f"{name}: a static target scrapes one replica"
        assert [(dns["type"], dns["names"]) for dns in job["dns_sd_configs"]] == [("A", [name])]


def test_prometheus_rule_files_live_in_the_mounted_directory(
    services: dict[str, Any], prometheus_config: dict[str, Any]
) -> None:
    mounts = dict(bind_mounts(services["prometheus"]))
    assert mounts["./deploy/prometheus"] == "/etc/prometheus"
    for pattern in prometheus_config["rule_files"]:
        assert not pattern.startswith("/"), "relative to the config file, so the same in tests and compose"
        assert (PROMETHEUS_FILE.parent / pattern).parent.is_dir(), pattern


# --- Alertmanager ---


def test_prometheus_sends_alerts_to_the_alertmanager_service(
    services: dict[str, Any], prometheus_config: dict[str, Any]
) -> None:
    [manager] = prometheus_config["alerting"]["alertmanagers"]
    [target] = [t for static in manager["static_configs"] for t in static["targets"]]
    host, _, port = target.rpartition(":")
    assert host == "alertmanager" and int(port) in container_ports(services["alertmanager"])


def test_alertmanager_reads_its_mounted_config_and_the_routing_key_from_a_secret(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    service = services["alertmanager"]
    mounts = dict(bind_mounts(service))
    assert mounts["./deploy/alertmanager"] == "/etc/alertmanager"
    assert "--config.file=/etc/alertmanager/alertmanager.yml" in service["command"]
    config = load_yaml(ALERTMANAGER_FILE)
    receivers = config["receivers"]
    key_files = {pd["routing_key_file"] for r in receivers for pd in r.get("pagerduty_configs", [])}
    assert key_files == {"/run/secrets/pagerduty_routing_key"}
    assert "pagerduty_routing_key" in service["secrets"]
    assert compose["secrets"]["pagerduty_routing_key"] == {"environment": "PAGERDUTY_ROUTING_KEY"}


def test_every_paging_rule_reaches_pagerduty_and_no_warning_does() -> None:
    routes = load_yaml(ALERTMANAGER_FILE)["route"]["routes"]
    paging = [route for route in routes if route["receiver"] == "pagerduty"]
    assert [route["matchers"] for route in paging] == [['severity="page"']]
    rules = load_yaml(PROMETHEUS_FILE.parent / "rules" / "whatsup.yml")
    severities = {rule["labels"]["severity"] for group in rules["groups"] for rule in group["rules"]}
    assert severities == {"page", "warn"}, "a severity no route names would page nobody or everyone"


def test_alertmanager_config_passes_amtool() -> None:
    amtool = shutil.which("amtool")
    assert amtool, "amtool not found: run deploy/system-deps.sh (Debian package prometheus-alertmanager)"
    result = subprocess.run([amtool, "check-config", str(ALERTMANAGER_FILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# --- Grafana ---


def test_grafana_datasources_parse_and_have_unique_uids(services: dict[str, Any]) -> None:
    config = load_yaml(GRAFANA_PROVISIONING / "datasources" / "datasources.yml")
    datasources = config["datasources"]
    uids = [source["uid"] for source in datasources]
    assert len(uids) == len(set(uids))
    assert sum(bool(source.get("isDefault")) for source in datasources) == 1
    by_uid = {source["uid"]: source for source in datasources}

    prometheus_url = urlsplit(by_uid["prometheus"]["url"])
    assert prometheus_url.hostname in services
    assert prometheus_url.port in container_ports(services[prometheus_url.hostname])

    clickhouse = by_uid["clickhouse"]
    assert clickhouse["type"] == "grafana-clickhouse-datasource"
    assert clickhouse["jsonData"]["port"] in container_ports(services[clickhouse["jsonData"]["host"]])
    password = clickhouse["secureJsonData"]["password"]
    assert password.startswith("$"), "the password is expanded by Grafana from its environment"
    grafana_env = environment(services["grafana"])
    assert password.strip("${}") in grafana_env
    assert "grafana-clickhouse-datasource" in grafana_env["GF_INSTALL_PLUGINS"]


def test_grafana_dashboard_provider_reads_the_mounted_directory(services: dict[str, Any]) -> None:
    config = load_yaml(GRAFANA_PROVISIONING / "dashboards" / "dashboards.yml")
    mounted = {target: source for source, target in bind_mounts(services["grafana"])}
    for provider in config["providers"]:
        path = provider["options"]["path"]
        assert path in mounted, f"dashboard provider reads unmounted {path}"
        assert (ROOT / mounted[path]).is_dir()
    assert mounted["/etc/grafana/provisioning"] == "./deploy/grafana/provisioning"
