"""Turn Meta and Twilio webhook payloads into WhatsAppEvent and MessageStatus records (pure, no I/O).

Phones are replaced by their keyed hash before anything leaves this module, except in ``Inbound.phone``,
which the webhook keeps in memory to answer refusals and never writes to a topic. Message types we do not
act on (audio, video, documents, contacts, orders, system, anything new) become ``unsupported`` events that
name the original type: counted, never a crash. An image (a driver's proof of delivery) is kept by its
provider media id, never its bytes. Free text, captions included, has phone-like digit runs masked.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from base import jsontext
from connectors.whatsapp.phones import PhoneError, hash_phone, normalize_phone, redact_phones

# The message types Meta documents; anything else is labelled "other" in metrics.
META_TYPES = frozenset(
    {
        "text", "image", "audio", "video", "document", "sticker", "location", "contacts", "button",
        "interactive", "reaction", "order", "system", "unknown", "unsupported", "request_welcome",
    }
)  # fmt: skip
STATUS_KINDS = frozenset({"queued", "sent", "delivered", "read", "failed"})
TWILIO_STATUS = {
    "accepted": "queued",
    "queued": "queued",
    "sending": "queued",
    "sent": "sent",
    "delivered": "delivered",
    "read": "read",
    "failed": "failed",
    "undelivered": "failed",
}


# The latest second an Avro long of epoch milliseconds holds.
MAX_TS_S = (2**63 - 1) // 1000
MAX_ERROR_CODE = 2**31 - 1  # MessageStatus.error_code is an Avro int


class PayloadError(ValueError):
    """A webhook body that is not a payload of the provider's documented shape."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Inbound:
    """One inbound message: its WhatsAppEvent record and the sender's clear phone (memory only)."""

    record: dict[str, Any]
    phone: str

    @property
    def dedupe_id(self) -> str:
        return f"{self.record['provider']}:msg:{self.record['message_id']}"


@dataclass(frozen=True)
class StatusUpdate:
    """One status callback: its WhatsAppEvent record and its MessageStatus record."""

    record: dict[str, Any]
    status: dict[str, Any]

    @property
    def dedupe_id(self) -> str:
        return f"{self.record['provider']}:status:{self.record['message_id']}:{self.status['status']}"


@dataclass
class Normalized:
    """Everything one webhook body carried."""

    inbound: list[Inbound] = field(default_factory=list)
    statuses: list[StatusUpdate] = field(default_factory=list)
    # Per original type label: how many messages became ``unsupported`` events, and why some were skipped.
    unsupported: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)


def _ms(raw: Any, default: int) -> int:
    try:
        seconds = int(str(raw))
    except (TypeError, ValueError):
        return default
    return seconds * 1000 if 0 < seconds <= MAX_TS_S else default


def _error_code(raw: str) -> int | None:
    """Return a provider error code of ASCII digits that fits an Avro int (``"²".isdigit()`` is true)."""
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 10):
        return None
    return int(raw) if int(raw) <= MAX_ERROR_CODE else None


def _coordinate(raw: Any, limit: float) -> float | None:
    try:
        value = float(raw)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer of 400 digits
        return None
    return value if math.isfinite(value) and -limit <= value <= limit else None


def _event(provider: str, message_id: str, from_hash: str, ts: int, received_ts: int) -> dict[str, Any]:
    return {
        "message_id": message_id,
        "provider": provider,
        "from_hash": from_hash,
        "type": "unsupported",
        "text": None,
        "payload": "{}",
        "lat": None,
        "lon": None,
        "ts": ts,
        "received_ts": received_ts,
    }


def _status_update(
    provider: str, provider_id: str, message_key: str, kind: str, code: int | None, title: str | None,
    to_hash: str, ts: int, received_ts: int,
) -> StatusUpdate:  # fmt: skip
    status = {
        "message_key": message_key,
        "provider": provider,
        "provider_message_id": provider_id,
        "status": kind,
        "error_code": code,
        "error_title": title,
        "attempt": 1,
        "to_hash": to_hash,
        "ts": ts,
    }
    record = _event(provider, provider_id, to_hash, ts, received_ts)
    record["type"] = "status"
    payload = {"status": kind, "message_key": message_key, "error_code": code}
    record["payload"] = json.dumps(payload, sort_keys=True)
    return StatusUpdate(record, status)


def _fill_meta_message(record: dict[str, Any], message: Mapping[str, Any], out: Normalized) -> None:
    kind = str(message.get("type", "unknown"))
    found = message.get(kind)
    body: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
    payload: dict[str, Any] = {}
    if isinstance(message.get("context"), Mapping) and message["context"].get("id"):
        payload["reply_to"] = str(message["context"]["id"])
    if kind == "text" and isinstance(body.get("body"), str):
        record.update(type="text", text=redact_phones(body["body"]))
    elif kind == "button" and isinstance(body.get("text"), str):
        record.update(type="button", text=body["text"])
        payload["payload"] = str(body.get("payload", ""))
    elif kind == "interactive" and body.get("type") in ("button_reply", "list_reply"):
        found_reply = body.get(body["type"])
        reply: Mapping[str, Any] = found_reply if isinstance(found_reply, Mapping) else {}
        record.update(type="interactive", text=str(reply.get("title", "")) or None)
        payload.update(kind=body["type"], id=str(reply.get("id", "")))
    elif kind == "location":
        lat, lon = _coordinate(body.get("latitude"), 90.0), _coordinate(body.get("longitude"), 180.0)
        if lat is None or lon is None:
            out.skipped["bad_location"] += 1
            payload["original_type"] = "location"
            out.unsupported["location"] += 1
        else:
            record.update(type="location", lat=lat, lon=lon)
            payload.update({k: str(body[k]) for k in ("name", "address") if body.get(k)})
    elif kind == "image" and isinstance(body.get("id"), str) and body["id"]:
        caption = body.get("caption")
        record.update(
            type="image", text=redact_phones(caption) if isinstance(caption, str) and caption else None
        )
        payload.update(media_id=f"meta:{body['id']}", mime_type=str(body.get("mime_type", "")))
    elif kind == "reaction":
        record.update(type="reaction", text=str(body.get("emoji", "")) or None)
        payload["message_id"] = str(body.get("message_id", ""))
    else:
        label = kind if kind in META_TYPES else "other"
        out.unsupported[label] += 1
        payload["original_type"] = label
        errors = message.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], Mapping):
            payload["error_code"] = errors[0].get("code")
    record["payload"] = json.dumps(payload, sort_keys=True, ensure_ascii=False)


def _meta_status(status: Mapping[str, Any], key: str, received_ts: int, out: Normalized) -> None:
    provider_id = str(status.get("id", ""))
    recipient = str(status.get("recipient_id", ""))
    kind = str(status.get("status", ""))
    if not provider_id or not recipient:
        out.skipped["status_without_id"] += 1
        return
    try:
        to_hash = hash_phone(key, recipient)
    except PhoneError:
        out.skipped["bad_phone"] += 1
        return
    errors = status.get("errors") if isinstance(status.get("errors"), list) else []
    error = errors[0] if errors and isinstance(errors[0], Mapping) else {}
    code = error.get("code")
    code = code if type(code) is int and 0 <= code <= MAX_ERROR_CODE else None
    title = str(error["title"]) if error.get("title") else None
    message_key = str(status.get("biz_opaque_callback_data") or f"meta:{provider_id}")
    kind = kind if kind in STATUS_KINDS else "unknown"
    ts = _ms(status.get("timestamp"), received_ts)
    out.statuses.append(
        _status_update("meta", provider_id, message_key, kind, code, title, to_hash, ts, received_ts)
    )


def normalize_meta(body: bytes, key: str, received_ts: int) -> Normalized:
    """Normalize a Meta webhook body (``whatsapp_business_account`` notification) with phone key ``key``."""
    try:
        doc = jsontext.loads(body)
    except ValueError as exc:
        raise PayloadError("malformed_json", f"body is not JSON text: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("entry"), list):
        raise PayloadError("unexpected_shape", "expected an object with an entry list")
    out = Normalized()
    for entry in doc["entry"]:
        changes = entry.get("changes") if isinstance(entry, dict) else None
        for change in changes if isinstance(changes, list) else []:
            value = change.get("value") if isinstance(change, dict) else None
            if not isinstance(value, dict):
                out.skipped["change_without_value"] += 1
                continue
            for message in _listed(value, "messages", out):
                _meta_message(message, key, received_ts, out)
            for status in _listed(value, "statuses", out):
                if isinstance(status, dict):
                    _meta_status(status, key, received_ts, out)
    return out


def _listed(value: Mapping[str, Any], name: str, out: Normalized) -> list[Any]:
    """Return the list ``value[name]``; anything else there is counted as skipped."""
    found = value.get(name)
    if found is None or isinstance(found, list):
        return found or []
    out.skipped[f"{name}_not_a_list"] += 1
    return []


def _meta_message(message: Any, key: str, received_ts: int, out: Normalized) -> None:
    if not isinstance(message, dict) or not message.get("id") or not message.get("from"):
        out.skipped["message_without_id"] += 1
        return
    try:
        phone = normalize_phone(str(message["from"]))
    except PhoneError:
        out.skipped["bad_phone"] += 1
        return
    record = _event(
        "meta",
        str(message["id"]),
        hash_phone(key, phone),
        _ms(message.get("timestamp"), received_ts),
        received_ts,
    )
    _fill_meta_message(record, message, out)
    out.inbound.append(Inbound(record, phone))


def normalize_twilio(
    params: Mapping[str, str], key: str, received_ts: int, message_key: str | None = None
) -> Normalized:
    """Normalize a Twilio WhatsApp form post: an inbound message, or a status callback."""
    sid = params.get("MessageSid") or params.get("SmsSid")
    if not sid:
        raise PayloadError("unexpected_shape", "MessageSid is missing")
    out = Normalized()
    status = params.get("MessageStatus") or params.get("SmsStatus")
    if status in TWILIO_STATUS and params.get("To") and status != "received":
        try:
            to_hash = hash_phone(key, params["To"])
        except PhoneError:
            raise PayloadError("bad_phone", "To is not a phone number") from None
        code = params.get("ErrorCode", "")
        update = _status_update(
            "twilio", sid, message_key or f"twilio:{sid}", TWILIO_STATUS[status],
            _error_code(code), None, to_hash, received_ts, received_ts,
        )  # fmt: skip
        out.statuses.append(update)
        return out
    try:
        phone = normalize_phone(params.get("From", ""))
    except PhoneError:
        raise PayloadError("bad_phone", "From is not a phone number") from None
    record = _event("twilio", sid, hash_phone(key, phone), received_ts, received_ts)
    lat = _coordinate(params.get("Latitude"), 90.0)
    lon = _coordinate(params.get("Longitude"), 180.0)
    payload: dict[str, Any] = {}
    if lat is not None and lon is not None:
        record.update(type="location", lat=lat, lon=lon)
    elif params.get("ButtonText"):
        record.update(type="button", text=params["ButtonText"])
        payload["payload"] = params.get("ButtonPayload", "")
    elif params.get("NumMedia", "0") not in ("", "0") and params.get("MediaContentType0", "").startswith(
        "image/"
    ):
        body = params.get("Body")
        record.update(type="image", text=redact_phones(body) if body else None)
        payload.update(media_id=f"twilio:{sid}:0", mime_type=params["MediaContentType0"])
    elif params.get("NumMedia", "0") not in ("", "0"):
        out.unsupported["media"] += 1
        payload["original_type"] = "media"
    elif "Body" in params:
        record.update(type="text", text=redact_phones(params["Body"]))
    else:
        out.unsupported["other"] += 1
        payload["original_type"] = "other"
    record["payload"] = json.dumps(payload, sort_keys=True, ensure_ascii=False)
    out.inbound.append(Inbound(record, phone))
    return out
