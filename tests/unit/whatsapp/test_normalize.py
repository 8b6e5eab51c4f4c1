"""Normalization of every message type Meta documents, status callbacks, and Twilio form posts."""

from __future__ import annotations

import json
from typing import Any

import pytest

from connectors.whatsapp.normalize import PayloadError, normalize_meta, normalize_twilio
from connectors.whatsapp.phones import hash_phone
from schemas.codecs import codec
from tests.whatsapp_payloads import (
    DRIVER_PHONE,
    body_of,
    location_message,
    meta_message,
    meta_notification,
    meta_status,
    text_message,
)

KEY = "phone-hash-key"
NOW = 1_763_870_005_000


def _one(message: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    out = normalize_meta(body_of(meta_notification([message])), KEY, NOW)
    assert len(out.inbound) == 1
    record = out.inbound[0].record
    codec("WhatsAppEvent").encode(record)  # every normalized record fits the topic's schema
    assert DRIVER_PHONE not in json.dumps(record)
    assert record["from_hash"] == hash_phone(KEY, DRIVER_PHONE)
    return record, out


def test_text_keeps_the_body_and_the_provider_time() -> None:
    record, _ = _one(text_message("Meus pedidos hoje?", ts=1_763_870_000))
    assert (record["type"], record["text"], record["ts"], record["received_ts"]) == (
        "text", "Meus pedidos hoje?", 1_763_870_000_000, NOW
    )  # fmt: skip
    assert record["message_id"] == "wamid.A1" and record["provider"] == "meta"


def test_phone_numbers_typed_in_text_are_masked() -> None:
    record, _ = _one(text_message("cliente não atende, +55 11 91234-5678"))
    assert "91234" not in record["text"]


def test_reply_context_is_kept() -> None:
    message = {**text_message("ok"), "context": {"from": "15550783881", "id": "wamid.OUT9"}}
    record, _ = _one(message)
    assert json.loads(record["payload"])["reply_to"] == "wamid.OUT9"


def test_template_quick_reply_button() -> None:
    record, _ = _one(meta_message("button", {"payload": "qr:traffic", "text": "Trânsito"}))
    assert (record["type"], record["text"]) == ("button", "Trânsito")
    assert json.loads(record["payload"]) == {"payload": "qr:traffic"}


@pytest.mark.parametrize(
    ("body", "text", "payload"),
    [
        ({"type": "button_reply", "button_reply": {"id": "qr:breakdown", "title": "Breakdown"}}, "Breakdown",
         {"kind": "button_reply", "id": "qr:breakdown"}),
        ({"type": "list_reply", "list_reply": {"id": "order:2", "title": "Pedido 2", "description": "Rua A"}},
         "Pedido 2", {"kind": "list_reply", "id": "order:2"}),
    ],
)  # fmt: skip
def test_interactive_button_and_list_replies(
    body: dict[str, Any], text: str, payload: dict[str, str]
) -> None:
    record, _ = _one(meta_message("interactive", body))
    assert (record["type"], record["text"], json.loads(record["payload"])) == ("interactive", text, payload)


def test_location_share_is_a_static_fix() -> None:
    record, _ = _one(location_message(-23.5614, -46.6559))
    assert (record["type"], record["lat"], record["lon"]) == ("location", -23.5614, -46.6559)
    assert json.loads(record["payload"])["name"] == "Av. Paulista"


@pytest.mark.parametrize("bad", [{"latitude": "x", "longitude": 1}, {"latitude": 91, "longitude": 0}, {}])
def test_a_location_without_usable_coordinates_is_unsupported_not_a_crash(bad: dict[str, Any]) -> None:
    record, out = _one(meta_message("location", bad))
    assert record["type"] == "unsupported" and record["lat"] is None
    assert out.skipped["bad_location"] == 1


def test_reaction() -> None:
    record, _ = _one(meta_message("reaction", {"message_id": "wamid.OUT1", "emoji": "👍"}))
    assert (record["type"], record["text"]) == ("reaction", "👍")
    assert json.loads(record["payload"]) == {"message_id": "wamid.OUT1"}


def test_an_image_is_kept_by_its_media_id_with_its_caption_masked() -> None:
    body = {"mime_type": "image/jpeg", "sha256": "abc", "id": "m1", "caption": "entregue, liga 11 95555-1234"}
    record, out = _one(meta_message("image", body))
    assert record["type"] == "image" and out.unsupported == {}
    assert json.loads(record["payload"]) == {"media_id": "meta:m1", "mime_type": "image/jpeg"}
    assert record["text"].startswith("entregue") and "95555" not in json.dumps(record)
    without_id, out = _one(meta_message("image", {"mime_type": "image/jpeg"}))
    assert without_id["type"] == "unsupported" and out.unsupported == {"image": 1}


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        ("audio", {"mime_type": "audio/ogg", "id": "m2", "voice": True}),
        ("video", {"mime_type": "video/mp4", "id": "m3"}),
        ("document", {"mime_type": "application/pdf", "id": "m4", "filename": "nota.pdf"}),
        ("sticker", {"mime_type": "image/webp", "id": "m5", "animated": False}),
        ("contacts", None),
        ("order", {"catalog_id": "c1", "product_items": []}),
        ("system", {"body": "changed number", "wa_id": "5511900000000", "type": "user_changed_number"}),
        ("request_welcome", None),
        ("unknown", None),
        ("unsupported", None),
        ("brand_new_type", {"x": 1}),
    ],
)
def test_types_we_do_not_act_on_are_counted_as_unsupported(kind: str, body: dict[str, Any] | None) -> None:
    message = meta_message(kind, body)
    if kind == "contacts":
        message["contacts"] = [
            {"name": {"formatted_name": "Ana"}, "phones": [{"phone": "+55 11 95555-1234"}]}
        ]
    if kind in ("unknown", "unsupported"):
        message["errors"] = [{"code": 131051, "title": "Message type unknown"}]
    record, out = _one(message)
    label = "other" if kind == "brand_new_type" else kind
    assert record["type"] == "unsupported"
    assert json.loads(record["payload"])["original_type"] == label
    assert out.unsupported == {label: 1}
    assert "95555" not in json.dumps(record)  # a shared contact's number never reaches the topic


@pytest.mark.parametrize("status", ["sent", "delivered", "read", "failed"])
def test_statuses_become_message_status_with_the_senders_key(status: str) -> None:
    errors = [{"code": 131047, "title": "Re-engagement message"}] if status == "failed" else None
    out = normalize_meta(body_of(meta_notification(statuses=[meta_status(status, errors=errors)])), KEY, NOW)
    assert out.inbound == [] and len(out.statuses) == 1
    update = out.statuses[0]
    codec("MessageStatus").encode(update.status)
    codec("WhatsAppEvent").encode(update.record)
    assert update.status["message_key"] == "eta:D1:1"
    assert update.status["status"] == status
    assert update.status["to_hash"] == hash_phone(KEY, "5511912345678")
    assert update.status["ts"] == 1_763_870_100_000
    assert update.status["error_code"] == (131047 if status == "failed" else None)
    assert update.record["type"] == "status"
    assert update.dedupe_id == f"meta:status:wamid.OUT1:{status}"


def test_a_status_without_the_senders_key_is_named_by_provider_id() -> None:
    out = normalize_meta(body_of(meta_notification(statuses=[meta_status("sent", key=None)])), KEY, NOW)
    assert out.statuses[0].status["message_key"] == "meta:wamid.OUT1"


def test_one_body_may_carry_many_messages_and_statuses() -> None:
    doc = meta_notification(
        [text_message("a", mid="w1"), location_message(1.0, 2.0, mid="w2")], [meta_status("read")]
    )
    out = normalize_meta(body_of(doc), KEY, NOW)
    assert [m.record["message_id"] for m in out.inbound] == ["w1", "w2"]
    assert len(out.statuses) == 1


@pytest.mark.parametrize(
    ("body", "reason"),
    [(b"not json", "malformed_json"), (b"\xff\xfe", "malformed_json"), (b"[]", "unexpected_shape"),
     (b'{"object":"page"}', "unexpected_shape")],
)  # fmt: skip
def test_bodies_that_are_not_notifications_are_refused_with_a_reason(body: bytes, reason: str) -> None:
    with pytest.raises(PayloadError) as info:
        normalize_meta(body, KEY, NOW)
    assert info.value.reason == reason


def test_messages_without_id_or_with_a_bad_number_are_skipped_and_counted() -> None:
    doc = meta_notification([{"from": DRIVER_PHONE, "type": "text"}, text_message("x", frm="abc")])
    out = normalize_meta(body_of(doc), KEY, NOW)
    assert out.inbound == []
    assert out.skipped == {"message_without_id": 1, "bad_phone": 1}


TWILIO_FROM = "whatsapp:+5511987654321"


def test_twilio_text_location_and_button() -> None:
    text = normalize_twilio(
        {"MessageSid": "SM1", "From": TWILIO_FROM, "Body": "cheguei", "NumMedia": "0"}, KEY, NOW
    )
    assert text.inbound[0].record["type"] == "text" and text.inbound[0].record["text"] == "cheguei"
    assert text.inbound[0].record["from_hash"] == hash_phone(KEY, DRIVER_PHONE)
    location = normalize_twilio(
        {"MessageSid": "SM2", "From": TWILIO_FROM, "Latitude": "-23.5", "Longitude": "-46.6", "Body": ""},
        KEY,
        NOW,
    )
    assert (location.inbound[0].record["lat"], location.inbound[0].record["lon"]) == (-23.5, -46.6)
    button = normalize_twilio(
        {"MessageSid": "SM3", "From": TWILIO_FROM, "ButtonText": "Em pausa", "ButtonPayload": "qr:on_break"},
        KEY,
        NOW,
    )
    assert button.inbound[0].record["type"] == "button"
    media = normalize_twilio(
        {"MessageSid": "SM4", "From": TWILIO_FROM, "NumMedia": "1", "Body": ""}, KEY, NOW
    )
    assert media.inbound[0].record["type"] == "unsupported" and media.unsupported == {"media": 1}
    photo = normalize_twilio(
        {"MessageSid": "SM5", "From": TWILIO_FROM, "NumMedia": "1", "MediaContentType0": "image/jpeg",
         "MediaUrl0": "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/SM5/Media/ME1",
         "Body": "entregue"},
        KEY,
        NOW,
    )  # fmt: skip
    record = photo.inbound[0].record
    assert (record["type"], record["text"]) == ("image", "entregue") and photo.unsupported == {}
    assert json.loads(record["payload"]) == {"media_id": "twilio:SM5:0", "mime_type": "image/jpeg"}
    for out in (text, location, button, media, photo):
        codec("WhatsAppEvent").encode(out.inbound[0].record)


@pytest.mark.parametrize(
    ("twilio", "ours"),
    [("sent", "sent"), ("delivered", "delivered"), ("read", "read"), ("undelivered", "failed"),
     ("failed", "failed"), ("queued", "queued")],
)  # fmt: skip
def test_twilio_status_callbacks(twilio: str, ours: str) -> None:
    params = {
        "MessageSid": "SM9",
        "MessageStatus": twilio,
        "To": "whatsapp:+5511912345678",
        "ErrorCode": "63016",
    }
    out = normalize_twilio(params, KEY, NOW, message_key="stall_check:a1")
    status = out.statuses[0].status
    codec("MessageStatus").encode(status)
    assert (status["status"], status["message_key"], status["provider"]) == (ours, "stall_check:a1", "twilio")
    assert status["error_code"] == 63016


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"From": TWILIO_FROM}, "unexpected_shape"),
        ({"MessageSid": "SM1", "From": "whatsapp:abc"}, "bad_phone"),
    ],
)
def test_twilio_posts_without_sid_or_number_are_refused(params: dict[str, str], reason: str) -> None:
    with pytest.raises(PayloadError) as info:
        normalize_twilio(params, KEY, NOW)
    assert info.value.reason == reason


def test_a_body_nested_too_deep_is_malformed_json_not_a_crash() -> None:
    deep = b"[" * 200_000 + b"]" * 200_000
    with pytest.raises(PayloadError) as refused:
        normalize_meta(deep, "k", 0)
    assert refused.value.reason == "malformed_json"
