"""One settings object, read once from ``WHATSUP_*`` environment variables and validated at start-up."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from streams.exceptions import SettingsError

PREFIX = "WHATSUP_"
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

    token_secret: str | None = _setting(_parse_long_secret, None, secret=True)
    phone_hash_key: str | None = _setting(_parse_secret, None, secret=True)
    api_keys: dict[str, frozenset[str]] = _setting(_parse_api_keys, factory=dict, secret=True)

    whatsapp_api_url: str = _setting(_parse_url(("http", "https")), "https://graph.facebook.com")
    whatsapp_api_version: str = _setting(_parse_str, "v21.0")
    whatsapp_token: str | None = _setting(_parse_secret, None, secret=True)
    whatsapp_phone_number_id: str | None = _setting(_parse_secret, None)
    whatsapp_app_secret: str | None = _setting(_parse_secret, None, secret=True)
    whatsapp_verify_token: str | None = _setting(_parse_secret, None, secret=True)
    twilio_account_sid: str | None = _setting(_parse_secret, None)
    twilio_auth_token: str | None = _setting(_parse_secret, None, secret=True)
    twilio_api_url: str = _setting(_parse_url(("http", "https")), "https://api.twilio.com")

    stall_radius_m: float = _setting(_parse_float, 100.0)
    stall_minutes: float = _setting(_parse_float, 5.0)
    offline_minutes: float = _setting(_parse_float, 3.0)
    retention_days: int = _setting(_parse_int, 90)
    sink_batch_size: int = _setting(_parse_int, 10_000)
    sink_flush_interval_s: float = _setting(_parse_float, 1.0)
    metrics_enabled: bool = _setting(_parse_bool, True)

    ping_max_accuracy_m: float = _setting(_parse_float, 100.0)
    ping_max_speed_mps: float = _setting(_parse_float, 50.0)
    ping_max_future_s: float = _setting(_parse_float, 120.0)
    ping_horizon_hours: float = _setting(_parse_float, 24.0)
    ingest_rate_per_s: float = _setting(_parse_float, 2.0)
    ingest_burst: int = _setting(_parse_int, 20)
    ingest_max_batch: int = _setting(_parse_int, 500)

    twilio_webhook_url: str | None = _setting(_parse_url(("http", "https")), None)
    dispatcher_api_url: str | None = _setting(_parse_url(("http", "https")), None)
    conversation_llm_enabled: bool = _setting(_parse_bool, False)
    notify_eta_threshold_s: float = _setting(_parse_float, 300.0)
    notify_customer_interval_s: float = _setting(_parse_float, 900.0)
    display_utc_offset_h: float = _setting(_parse_float, -3.0)

    def __post_init__(self) -> None:
        positive = (
            "partitions",
            "replication_factor",
            "web_port",
            "retention_days",
            "sink_batch_size",
            "ingest_burst",
            "ingest_max_batch",
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
            "notify_eta_threshold_s",
            "notify_customer_interval_s",
        ):
            if getattr(self, name) <= 0:
                raise SettingsError(f"{PREFIX}{name.upper()} must be positive, got {getattr(self, name)!r}")
        if not -14 <= self.display_utc_offset_h <= 14:
            raise SettingsError(f"{PREFIX}DISPLAY_UTC_OFFSET_H must be within -14..14 hours")
        if self.web_port >= 65536:
            raise SettingsError(f"{PREFIX}WEB_PORT must be below 65536, got {self.web_port}")
        if self.log_level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise SettingsError(f"{PREFIX}LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL")

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
