"""One settings object, read once from ``WHATSUP_*`` environment variables and validated at start-up."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from base.exceptions import SettingsError

PREFIX = "WHATSUP_"
# What a worker process runs (WHATSUP_WORKER_ROLE): every agent, the clean stage alone, or everything
# downstream of it (driver state, ETAs, alerts, notifications, conversations, the dispatcher API).
WORKER_ROLES = ("all", "clean", "deliveries")
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _default_var_dir() -> Path:
    return PROJECT_ROOT / "var"


def _parse_int(raw: str) -> int:
    return int(raw.strip())


def _parse_float(raw: str) -> float:
    value = float(raw.strip())
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError("not a finite number")
    return value


def _parse_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected one of 1/0, true/false, yes/no, on/off")


def _parse_str(raw: str) -> str:
    return raw.strip()


def _parse_secret(raw: str) -> str | None:
    return raw.strip() or None


def _parse_long_secret(raw: str) -> str | None:
    # An HS256 key shorter than this can be brute-forced offline from a single token.
    secret = raw.strip()
    if secret and len(secret) < 32:
        raise ValueError("must be at least 32 characters")
    return secret or None


def _parse_long_secrets(raw: str) -> tuple[str, ...]:
    secrets = [part.strip() for part in raw.split(",") if part.strip()]
    for secret in secrets:
        _parse_long_secret(secret)
    return tuple(secrets)


GUARDRAIL_GRADES = ("log", "warn", "block")


def _parse_grades(raw: str) -> dict[str, str]:
    grades = {}
    for part in raw.split(","):
        if not part.strip():
            continue
        reason, _, grade = part.partition("=")
        if grade.strip() not in GUARDRAIL_GRADES or not reason.strip():
            raise ValueError(f"expected reason=grade pairs, grade one of {', '.join(GUARDRAIL_GRADES)}")
        grades[reason.strip()] = grade.strip()
    return grades


def _parse_optional_path(raw: str) -> Path | None:
    return Path(raw.strip()) if raw.strip() else None


def _parse_upper(raw: str) -> str:
    return raw.strip().upper()


def _parse_bootstrap(raw: str) -> str:
    servers = [s.strip() for s in raw.split(",") if s.strip()]
    if not servers:
        raise ValueError("expected host:port[,host:port...]")
    for server in servers:
        host, sep, port = server.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{server!r} is not host:port")
    return ",".join(servers)


def _parse_url(schemes: tuple[str, ...]) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        url = raw.strip()
        scheme = urlparse(url).scheme
        if scheme not in schemes:
            raise ValueError(f"scheme must be one of {', '.join(schemes)}")
        return url

    return parse


def _parse_api_keys(raw: str) -> dict[str, frozenset[str]]:
    """Parse ``key:role|role,key:role`` into a map from key to roles."""
    keys: dict[str, frozenset[str]] = {}
    for entry in raw.split(","):
        entry = entry.strip()
        if not entry:
            continue
        key, sep, roles = entry.partition(":")
        role_set = frozenset(r.strip() for r in roles.split("|") if r.strip())
        if not sep or len(key) < 16 or not role_set:
            raise ValueError("expected key:role[|role] entries, keys of at least 16 characters")
        keys[key] = role_set
    return keys


def _parse_retention(raw: str) -> dict[str, int]:
    """Parse ``table=days,table=days`` into per-table retention overrides."""
    days: dict[str, int] = {}
    for entry in raw.split(","):
        entry = entry.strip()
        if not entry:
            continue
        table, sep, value = entry.partition("=")
        if not sep or not table.strip().isidentifier() or not value.strip().isdigit() or int(value) <= 0:
            raise ValueError("expected table=days[,table=days] with positive whole days")
        days[table.strip()] = int(value)
    return days


def _parse_optional_url(raw: str) -> str | None:
    url = raw.strip()
    if url and urlparse(url).scheme not in ("http", "https"):
        raise ValueError("scheme must be http or https")
    return url or None


def _parse_content_sids(raw: str) -> dict[str, str]:
    """Parse ``template[:language]=HX...,...`` into template (and language) -> Twilio content sid."""
    sids: dict[str, str] = {}
    for entry in raw.split(","):
        entry = entry.strip()
        if not entry:
            continue
        name, sep, sid = entry.partition("=")
        if not sep or not name.strip() or not sid.strip().startswith("HX"):
            raise ValueError("expected template[:language]=HX... entries")
        sids[name.strip()] = sid.strip()
    return sids


def _setting(
    parse: Callable[[str], Any], default: Any = None, *, factory: Any = None, secret: bool = False
) -> Any:
    metadata = {"parse": parse, "secret": secret}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class Settings:
    """Everything the pipeline can be told from its environment; field ``x`` is ``WHATSUP_X``."""

    kafka_bootstrap: str = _setting(_parse_bootstrap, "127.0.0.1:9092")
    clickhouse_url: str = _setting(
        _parse_url(("chdb", "http", "https")), factory=lambda: f"chdb://{_default_var_dir() / 'clickhouse'}"
    )
    redis_url: str = _setting(_parse_url(("redis", "rediss", "unix")), "redis://127.0.0.1:6390/0")
    app_id: str = _setting(_parse_str, "whatsup")
    topic_prefix: str = _setting(_parse_str, "")
    partitions: int = _setting(_parse_int, 6)
    replication_factor: int = _setting(_parse_int, 1)
    web_host: str = _setting(_parse_str, "127.0.0.1")
    web_port: int = _setting(_parse_int, 6066)
    data_dir: Path = _setting(lambda raw: Path(raw.strip()), factory=_default_var_dir)
    log_level: str = _setting(lambda raw: raw.strip().upper(), "INFO")
    log_format: str = _setting(lambda raw: raw.strip().lower(), "text")
    # Which of the worker's agents this process runs: all, or one of the roles of streams.roles.
    worker_role: str = _setting(lambda raw: raw.strip().lower(), "all")

    # Encryption in transit (docs/RUNBOOK.md, Running encrypted). Kafka: PLAINTEXT, SSL or SASL_SSL, with a
    # CA to trust, optionally a client certificate, and SASL's mechanism and credentials.
    kafka_security_protocol: str = _setting(_parse_upper, "PLAINTEXT")
    kafka_ssl_ca_file: Path | None = _setting(_parse_optional_path, None)
    kafka_ssl_cert_file: Path | None = _setting(_parse_optional_path, None)
    kafka_ssl_key_file: Path | None = _setting(_parse_optional_path, None)
    kafka_sasl_mechanism: str = _setting(_parse_upper, "SCRAM-SHA-512")
    kafka_sasl_username: str | None = _setting(_parse_secret, None)
    kafka_sasl_password: str | None = _setting(_parse_secret, None, secret=True)
    # HTTPS for every HTTP server of the process, and the CA its calls to the project's other servers trust.
    tls_cert_file: Path | None = _setting(_parse_optional_path, None)
    tls_key_file: Path | None = _setting(_parse_optional_path, None)
    tls_ca_file: Path | None = _setting(_parse_optional_path, None)
    token_secret: str | None = _setting(_parse_long_secret, None, secret=True)
    # Also accepted when checking driver tokens, never used to sign: the next secret before a rotation, the
    # previous one after it (docs/RUNBOOK.md, Rotating secrets).
    token_secrets_accepted: tuple[str, ...] = _setting(_parse_long_secrets, factory=tuple, secret=True)
    phone_hash_key: str | None = _setting(_parse_secret, None, secret=True)
    api_keys: dict[str, frozenset[str]] = _setting(_parse_api_keys, factory=dict, secret=True)

    whatsapp_api_url: str = _setting(_parse_url(("http", "https")), "https://graph.facebook.com")
    whatsapp_api_version: str = _setting(_parse_str, "v21.0")
    whatsapp_token: str | None = _setting(_parse_secret, None, secret=True)
    whatsapp_phone_number_id: str | None = _setting(_parse_secret, None)
    whatsapp_app_secret: str | None = _setting(_parse_secret, None, secret=True)
    # Accepted on webhooks besides the current one while Meta's app secret is being rotated.
    whatsapp_app_secret_previous: str | None = _setting(_parse_secret, None, secret=True)
    whatsapp_verify_token: str | None = _setting(_parse_secret, None, secret=True)
    twilio_account_sid: str | None = _setting(_parse_secret, None)
    twilio_auth_token: str | None = _setting(_parse_secret, None, secret=True)
    # Accepted on webhooks besides the current one while Twilio's auth token is being rotated.
    twilio_auth_token_previous: str | None = _setting(_parse_secret, None, secret=True)
    twilio_api_url: str = _setting(_parse_url(("http", "https")), "https://api.twilio.com")
    twilio_from: str | None = _setting(_parse_secret, None)
    twilio_content_sids: dict[str, str] = _setting(_parse_content_sids, factory=dict)
    twilio_status_callback_url: str | None = _setting(_parse_optional_url, None)

    sender_metrics_port: int = _setting(_parse_int, 6068)
    sender_concurrency: int = _setting(_parse_int, 16)
    sender_batch_size: int = _setting(_parse_int, 500)
    sender_rate_per_s: float = _setting(_parse_float, 80.0)
    sender_burst: int = _setting(_parse_int, 20)
    sender_max_attempts: int = _setting(_parse_int, 6)
    sender_backoff_base_s: float = _setting(_parse_float, 0.5)
    sender_backoff_max_s: float = _setting(_parse_float, 30.0)
    sender_timeout_s: float = _setting(_parse_float, 10.0)
    sender_breaker_failures: int = _setting(_parse_int, 5)
    sender_breaker_reset_s: float = _setting(_parse_float, 30.0)
    sender_claim_ttl_hours: float = _setting(_parse_float, 168.0)
    sender_confirm_wait_s: float = _setting(_parse_float, 30.0)
    sender_fallback_template: str | None = _setting(_parse_secret, "whatsup_update")
    # A late 131047 reported longer ago than this is not followed by the template: an ETA or a delay notice
    # that old misleads more than it tells (and a new deployment does not resend the topic's history).
    sender_late_fallback_max_age_s: float = _setting(_parse_float, 1800.0)

    sandbox_host: str = _setting(_parse_str, "127.0.0.1")
    sandbox_meta_port: int = _setting(_parse_int, 6070)
    sandbox_twilio_port: int = _setting(_parse_int, 6071)
    sandbox_pagerduty_port: int = _setting(_parse_int, 6072)
    sandbox_llm_port: int = _setting(_parse_int, 6073)
    sandbox_rate_per_s: float = _setting(_parse_float, 80.0)
    sandbox_callback_url: str | None = _setting(_parse_optional_url, None)
    sandbox_callbacks: bool = _setting(_parse_bool, True)

    stall_radius_m: float = _setting(_parse_float, 100.0)
    stall_minutes: float = _setting(_parse_float, 5.0)
    offline_minutes: float = _setting(_parse_float, 3.0)
    # An assignment not accepted (nor started) by its driver after this long alerts dispatch; 0: never.
    accept_timeout_s: float = _setting(_parse_float, 180.0)
    retention_days: int = _setting(_parse_int, 90)
    sink_batch_size: int = _setting(_parse_int, 10_000)
    # While a partition's earlier batches wait for the writer (a backlog), its open batch fills up to this
    # many records: the engine's fixed cost per insert is then spread over more rows.
    sink_backlog_batch_size: int = _setting(_parse_int, 50_000)
    sink_flush_interval_s: float = _setting(_parse_float, 1.0)
    sink_port: int = _setting(_parse_int, 6067)
    sink_retention: dict[str, int] = _setting(_parse_retention, factory=dict)
    metrics_enabled: bool = _setting(_parse_bool, True)
    metrics_sample_s: float = _setting(_parse_float, 5.0)

    ping_max_accuracy_m: float = _setting(_parse_float, 100.0)
    ping_max_speed_mps: float = _setting(_parse_float, 50.0)
    ping_max_future_s: float = _setting(_parse_float, 120.0)
    ping_horizon_hours: float = _setting(_parse_float, 24.0)
    ingest_rate_per_s: float = _setting(_parse_float, 2.0)
    ingest_burst: int = _setting(_parse_int, 20)
    ingest_max_batch: int = _setting(_parse_int, 500)
    ingest_port: int = _setting(_parse_int, 6065)

    stall_step_s: float = _setting(_parse_float, 30.0)
    stall_horizon_minutes: float = _setting(_parse_float, 2.0)
    stall_grace_s: float = _setting(_parse_float, 15.0)
    geofence_radius_m: float = _setting(_parse_float, 150.0)
    depots_geojson: Path | None = _setting(lambda raw: Path(raw.strip()) if raw.strip() else None, None)
    tick_interval_s: float = _setting(_parse_float, 5.0)
    stop_wait_s: float = _setting(_parse_float, 15.0)
    recovery_stall_s: float = _setting(_parse_float, 60.0)
    deliveries_max_batch: int = _setting(_parse_int, 500)

    eta_min_change_s: float = _setting(_parse_float, 60.0)
    eta_max_interval_s: float = _setting(_parse_float, 300.0)
    eta_late_grace_s: float = _setting(_parse_float, 120.0)
    eta_detour_factor: float = _setting(_parse_float, 1.3)
    eta_default_speed_mps: float = _setting(_parse_float, 6.0)
    # Unset: no routing provider, ETAs come from the blended speed alone.
    routing_url: str | None = _setting(_parse_url(("http", "https")), None)
    routing_timeout_s: float = _setting(_parse_float, 2.0)

    twilio_webhook_url: str | None = _setting(_parse_url(("http", "https")), None)
    dispatcher_api_url: str | None = _setting(_parse_url(("http", "https")), None)
    # The language model that reads what the rules do not understand: off by default. Any OpenAI-compatible
    # chat-completions API with function calling (OpenRouter by default); the key comes from the environment.
    conversation_llm_enabled: bool = _setting(_parse_bool, False)
    llm_base_url: str = _setting(_parse_url(("http", "https")), "https://openrouter.ai/api/v1")
    llm_api_key: str | None = _setting(_parse_secret, None, secret=True)
    llm_model: str = _setting(_parse_str, "openai/gpt-4o-mini")
    # The whole answer, retries included; past it the message gets the rules' answer (or, fail-closed, a
    # refusal).
    llm_timeout_s: float = _setting(_parse_float, 4.0)
    llm_max_attempts: int = _setting(_parse_int, 3)
    # open: when the model cannot answer (timeout, errors, budget), the rules answer; closed: the message is
    # refused with "the assistant is unavailable" and nothing is guessed.
    llm_fail_mode: str = _setting(_parse_str, "open")
    llm_cache_ttl_s: float = _setting(_parse_float, 86400.0)
    # Model calls per UTC day, per driver and for the whole fleet (cached answers cost nothing).
    llm_budget_per_driver: int = _setting(_parse_int, 100)
    llm_budget_global: int = _setting(_parse_int, 20000)
    llm_concurrency: int = _setting(_parse_int, 8)
    # How each guardrail hit is graded: log (recorded), warn (the driver is told), block (refused, dispatch
    # alerted). reason=grade pairs, over the defaults in streams/conversations/guardrails.py.
    guardrail_grades: dict[str, str] = _setting(_parse_grades, factory=dict)
    # Customers' tracking links: the public base URL of GET /t/{token} (unset: this host's ingest port) and
    # how long a link works after the message that carries it.
    tracking_base_url: str | None = _setting(_parse_url(("http", "https")), None)
    tracking_ttl_h: float = _setting(_parse_float, 24.0)
    # A driver's position shows on the tracking page only within this distance of the drop-off.
    tracking_near_m: float = _setting(_parse_float, 2000.0)
    # How long a driver's chat context (the last list or buttons shown) answers a bare number.
    conversation_context_ttl_s: float = _setting(_parse_float, 900.0)
    notify_eta_threshold_s: float = _setting(_parse_float, 300.0)
    notify_customer_interval_s: float = _setting(_parse_float, 900.0)
    display_utc_offset_h: float = _setting(_parse_float, -3.0)

    console_port: int = _setting(_parse_int, 6069)
    # A base map's tile URL template ({z}/{x}/{y}); unset, the console draws on a plain background.
    console_tile_url: str | None = _setting(_parse_url(("http", "https")), None)
    console_session_idle_s: float = _setting(_parse_float, 1800.0)
    console_alert_window_h: float = _setting(_parse_float, 24.0)
    # Failed sign-ins allowed per name and per client address in a quarter of an hour.
    console_login_failures: int = _setting(_parse_int, 5)

    def __post_init__(self) -> None:
        positive = (
            "partitions",
            "replication_factor",
            "web_port",
            "sink_port",
            "retention_days",
            "sink_batch_size",
            "sink_backlog_batch_size",
            "ingest_burst",
            "ingest_max_batch",
            "ingest_port",
            "deliveries_max_batch",
            "sender_metrics_port",
            "sender_concurrency",
            "sender_batch_size",
            "sender_burst",
            "sender_max_attempts",
            "sender_breaker_failures",
            "sandbox_meta_port",
            "sandbox_twilio_port",
            "sandbox_pagerduty_port",
            "sandbox_llm_port",
            "console_port",
            "console_login_failures",
            "llm_max_attempts",
            "llm_budget_per_driver",
            "llm_budget_global",
            "llm_concurrency",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise SettingsError(f"{PREFIX}{name.upper()} must be positive, got {getattr(self, name)!r}")
        for name in (
            "stall_radius_m",
            "stall_minutes",
            "offline_minutes",
            "sink_flush_interval_s",
            "ping_max_accuracy_m",
            "ping_max_speed_mps",
            "ping_max_future_s",
            "ping_horizon_hours",
            "ingest_rate_per_s",
            "metrics_sample_s",
            "stall_step_s",
            "stall_horizon_minutes",
            "stall_grace_s",
            "geofence_radius_m",
            "tick_interval_s",
            "conversation_context_ttl_s",
            "llm_timeout_s",
            "llm_cache_ttl_s",
            "tracking_ttl_h",
            "tracking_near_m",
            "stop_wait_s",
            "recovery_stall_s",
            "eta_min_change_s",
            "eta_max_interval_s",
            "eta_default_speed_mps",
            "routing_timeout_s",
            "sender_rate_per_s",
            "sender_backoff_base_s",
            "sender_backoff_max_s",
            "sender_timeout_s",
            "sender_breaker_reset_s",
            "sender_claim_ttl_hours",
            "sender_confirm_wait_s",
            "sender_late_fallback_max_age_s",
            "sandbox_rate_per_s",
            "notify_eta_threshold_s",
            "notify_customer_interval_s",
            "console_session_idle_s",
            "console_alert_window_h",
        ):
            if getattr(self, name) <= 0:
                raise SettingsError(f"{PREFIX}{name.upper()} must be positive, got {getattr(self, name)!r}")
        if self.sender_confirm_wait_s <= self.sender_timeout_s:
            # A live send must never look abandoned: the wait has to outlast the slowest request.
            raise SettingsError(
                f"{PREFIX}SENDER_CONFIRM_WAIT_S ({self.sender_confirm_wait_s:g}) must exceed "
                f"{PREFIX}SENDER_TIMEOUT_S ({self.sender_timeout_s:g})"
            )
        for name in (
            "web_port",
            "ingest_port",
            "sink_port",
            "sender_metrics_port",
            "sandbox_meta_port",
            "sandbox_twilio_port",
            "sandbox_pagerduty_port",
            "sandbox_llm_port",
            "console_port",
        ):
            if getattr(self, name) >= 65536:
                raise SettingsError(f"{PREFIX}{name.upper()} must be below 65536, got {getattr(self, name)}")
        if self.stall_step_s > self.stall_minutes * 60:
            raise SettingsError(f"{PREFIX}STALL_STEP_S must not exceed {PREFIX}STALL_MINUTES")
        self._check_tls()
        if self.depots_geojson is not None and not self.depots_geojson.is_file():
            raise SettingsError(f"{PREFIX}DEPOTS_GEOJSON={self.depots_geojson} is not a file")
        if self.eta_late_grace_s < 0:
            raise SettingsError(
                f"{PREFIX}ETA_LATE_GRACE_S must not be negative, got {self.eta_late_grace_s!r}"
            )
        if self.eta_detour_factor < 1.0:
            raise SettingsError(
                f"{PREFIX}ETA_DETOUR_FACTOR must be at least 1, got {self.eta_detour_factor!r}"
            )
        if not -14 <= self.display_utc_offset_h <= 14:
            raise SettingsError(f"{PREFIX}DISPLAY_UTC_OFFSET_H must be within -14..14 hours")
        if self.llm_fail_mode not in ("open", "closed"):
            raise SettingsError(f"{PREFIX}LLM_FAIL_MODE must be open or closed, got {self.llm_fail_mode!r}")
        if self.log_level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise SettingsError(f"{PREFIX}LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        if self.log_format not in ("json", "text"):
            raise SettingsError(f"{PREFIX}LOG_FORMAT must be json or text, got {self.log_format!r}")
        if self.worker_role not in WORKER_ROLES:
            raise SettingsError(
                f"{PREFIX}WORKER_ROLE must be one of {', '.join(WORKER_ROLES)}, got {self.worker_role!r}"
            )

    @classmethod
    def env_names(cls) -> frozenset[str]:
        """Return every environment variable name the settings understand."""
        return frozenset(PREFIX + f.name.upper() for f in dataclasses.fields(cls))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build the settings from ``env`` (default ``os.environ``), naming any bad variable."""
        env = os.environ if env is None else env
        known = cls.env_names()
        unknown = sorted(name for name in env if name.startswith(PREFIX) and name not in known)
        if unknown:
            raise SettingsError(
                f"unknown setting {', '.join(unknown)}; known settings: {', '.join(sorted(known))}"
            )
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            name = PREFIX + f.name.upper()
            if name not in env:
                continue
            try:
                values[f.name] = f.metadata["parse"](env[name])
            except ValueError as exc:
                shown = "<hidden>" if f.metadata["secret"] else repr(env[name])
                raise SettingsError(f"{name}={shown} is malformed: {exc}") from None
        return cls(**values)

    def _check_tls(self) -> None:
        protocols = ("PLAINTEXT", "SSL", "SASL_SSL")
        if self.kafka_security_protocol not in protocols:
            raise SettingsError(f"{PREFIX}KAFKA_SECURITY_PROTOCOL must be one of {', '.join(protocols)}")
        mechanisms = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
        if self.kafka_sasl_mechanism not in mechanisms:
            raise SettingsError(f"{PREFIX}KAFKA_SASL_MECHANISM must be one of {', '.join(mechanisms)}")
        if self.kafka_security_protocol == "SASL_SSL" and not (
            self.kafka_sasl_username and self.kafka_sasl_password
        ):
            raise SettingsError(
                f"{PREFIX}KAFKA_SECURITY_PROTOCOL=SASL_SSL needs {PREFIX}KAFKA_SASL_USERNAME and _PASSWORD"
            )
        for pair in (("kafka_ssl_cert_file", "kafka_ssl_key_file"), ("tls_cert_file", "tls_key_file")):
            if (getattr(self, pair[0]) is None) != (getattr(self, pair[1]) is None):
                raise SettingsError(f"{PREFIX}{pair[0].upper()} and {PREFIX}{pair[1].upper()} go together")
        for name in (
            "kafka_ssl_ca_file",
            "kafka_ssl_cert_file",
            "kafka_ssl_key_file",
            "tls_cert_file",
            "tls_key_file",
            "tls_ca_file",
        ):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                raise SettingsError(f"{PREFIX}{name.upper()}={path} is not a file")

    def redacted(self) -> dict[str, Any]:
        """Return the settings as a dict with every secret masked, for logs and `whatsup settings`."""
        shown: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.metadata["secret"] and value:
                value = "<set>"
            elif isinstance(value, str) and urlparse(value).password:
                value = value.replace(f":{urlparse(value).password}@", ":<set>@", 1)
            shown[f.name] = str(value) if isinstance(value, Path) else value
        return shown


_current: Settings | None = None


def get_settings() -> Settings:
    """Return the process's settings, read from the environment on first use."""
    global _current
    if _current is None:
        _current = Settings.from_env()
    return _current
