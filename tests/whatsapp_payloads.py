"""Webhook bodies shaped as Meta's and Twilio's documentation shows them, for tests and the demo."""

from __future__ import annotations

import json
from typing import Any

DRIVER_PHONE = "5511987654321"
PHONE_NUMBER_ID = "106540352242922"


def meta_notification(
    messages: list[dict[str, Any]] | None = None, statuses: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Return a ``whatsapp_business_account`` notification carrying ``messages`` and ``statuses``."""
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": PHONE_NUMBER_ID},
    }
    if messages is not None:
        value["contacts"] = [{"profile": {"name": "Driver"}, "wa_id": m["from"]} for m in messages[:1]]
        value["messages"] = messages
    if statuses is not None:
        value["statuses"] = statuses
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"value": value, "field": "messages"}]}],
    }


def meta_message(kind: str, body: dict[str, Any] | None, *, mid: str = "wamid.A1", frm: str = DRIVER_PHONE,
                 ts: int = 1_763_870_000) -> dict[str, Any]:  # fmt: skip
    """Return one inbound message of type ``kind`` with its type-specific ``body``."""
    message: dict[str, Any] = {"from": frm, "id": mid, "timestamp": str(ts), "type": kind}
    if body is not None:
        message[kind] = body
    return message


def text_message(text: str, **kwargs: Any) -> dict[str, Any]:
    """Return an inbound text message."""
    return meta_message("text", {"body": text}, **kwargs)


def location_message(lat: float, lon: float, **kwargs: Any) -> dict[str, Any]:
    """Return an inbound location share (a static fix)."""
    return meta_message("location", {"latitude": lat, "longitude": lon, "name": "Av. Paulista"}, **kwargs)


def meta_status(
    status: str,
    *,
    mid: str = "wamid.OUT1",
    key: str | None = "eta:D1:1",
    recipient: str = "5511912345678",
    errors: list[dict[str, Any]] | None = None,
    ts: int = 1_763_870_100,
) -> dict[str, Any]:
    """Return one status callback for an outbound message the sender tagged with ``key``."""
    item: dict[str, Any] = {"id": mid, "status": status, "timestamp": str(ts), "recipient_id": recipient}
    if key is not None:
        item["biz_opaque_callback_data"] = key
    if errors:
        item["errors"] = errors
    return item


def body_of(doc: dict[str, Any], *, ascii_only: bool = False) -> bytes:
    """Serialize like Meta does: compact JSON (``ascii_only`` escapes non-ASCII as \\uXXXX)."""
    return json.dumps(doc, ensure_ascii=ascii_only, separators=(",", ":")).encode()
