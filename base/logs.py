"""Logs as JSON lines (or text), with phone numbers and secrets redacted before any handler writes them.

A record's context goes in ``extra``: ``logger.warning("...", extra=record_context(stage=..., topic=...,
partition=..., offset=..., reason=...))``; the JSON formatter writes those keys as top-level fields.
Redaction is a filter on the handler, so it also covers third-party loggers (Faust, aiokafka) and the
text format.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import logging.config
import re
import time
from collections.abc import Iterable
from typing import Any

CONTEXT_FIELDS = ("stage", "topic", "partition", "offset", "reason")
REDACTED = "<redacted>"

# An E.164 number however it is written (+55 11 91234-5678, whatsapp:+5511912345678).
_PHONE = re.compile(r"\+\d[\d ().-]{6,18}\d")
# Bare digits are a phone only next to a field that holds one (WhatsApp's "to": "5511912345678"), so
# offsets and epoch-millisecond timestamps stay readable.
_PHONE_FIELD = re.compile(
    r"""(?P<key>\b(?:to|from|wa_id|phone|phone_number|recipient_id|display_phone_number)\b["']?\s*[:=]\s*["']?)"""
    r"""\d{7,15}\b"""
)
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_KEYED_SECRET = re.compile(
    r"""(?i)(?P<key>\b(?:access_token|token|secret|password|api[_-]?key|x-api-key|authorization|auth_token)"""
    r"""\b["']?\s*[:=]\s*["']?)[^\s"',;&}]+"""
)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Return ``text`` with phone numbers, bearer tokens, JWTs, keyed secrets and ``secrets`` masked."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    text = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    text = _JWT.sub(REDACTED, text)
    text = _KEYED_SECRET.sub(lambda m: m.group("key") + REDACTED, text)
    text = _PHONE_FIELD.sub(lambda m: m.group("key") + REDACTED, text)
    return _PHONE.sub(REDACTED, text)


def record_context(
    *,
    stage: str,
    topic: str | None = None,
    partition: int | None = None,
    offset: int | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    """Return the ``extra`` of a log line about one record, leaving out what is unknown."""
    context = {"stage": stage, "topic": topic, "partition": partition, "offset": offset, "reason": reason}
    return {key: value for key, value in context.items() if value is not None}


class RedactingFilter(logging.Filter):
    """Mask phone numbers and secrets in a record's message, its context fields and its traceback."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        # Longest first, so a secret containing another is masked whole.
        self.secrets = sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage(), self.secrets)
        record.args = None
        for key in CONTEXT_FIELDS:
            value = getattr(record, key, None)
            if isinstance(value, str):
                setattr(record, key, redact(value, self.secrets))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self.secrets)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, self.secrets)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the record's context, the traceback."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in CONTEXT_FIELDS:
            value = getattr(record, key, None)
            if value is not None:
                line[key] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["error"] = record.exc_text
        return json.dumps(line, default=str, ensure_ascii=False)


TEXT_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s"


def logging_config(level: str, fmt: str, secrets: Iterable[str] = ()) -> dict[str, Any]:
    """Return a ``logging.config.dictConfig`` dict: one stderr handler, redacting, JSON or text."""
    formatter = {"()": JsonFormatter} if fmt == "json" else {"format": TEXT_FORMAT}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"redact": {"()": RedactingFilter, "secrets": list(secrets)}},
        "formatters": {"main": formatter},
        "handlers": {
            "main": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "main",
                "filters": ["redact"],
                "level": level,
            }
        },
        "root": {"level": level, "handlers": ["main"]},
    }


def secret_values(settings: Any) -> list[str]:
    """Return the values of every setting marked secret (API keys included), to mask them verbatim."""
    values: list[str] = []
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if not f.metadata.get("secret") or not value:
            continue
        if isinstance(value, dict):
            values.extend(value.keys())
        elif isinstance(value, tuple):
            values.extend(map(str, value))
        else:
            values.append(str(value))
    return values


def configure_logging(settings: Any) -> None:
    """Set up redacted JSON or text logging for a process that is not a Faust worker (sink, sender)."""
    logging.config.dictConfig(
        logging_config(settings.log_level, settings.log_format, secret_values(settings))
    )
