"""Which late status reports start a template fallback, and the record that carries it."""

from __future__ import annotations

from typing import Any

from connectors.whatsapp.late_failure import fallback_key, reports_closed_window, template_record


def status(**fields: Any) -> dict[str, Any]:
    base = {"message_key": "eta:1", "provider": "meta", "status": "failed", "error_code": 131047}
    return {**base, **fields}


def test_only_a_meta_131047_failure_of_an_original_message_counts() -> None:
    assert reports_closed_window(status())
    assert not reports_closed_window(status(status="delivered", error_code=None))
    assert not reports_closed_window(status(error_code=131026))
    assert not reports_closed_window(status(provider="twilio"))
    # The template sent after the failure is never the cause of another fallback.
    assert not reports_closed_window(status(message_key=fallback_key("eta:1")))


def test_the_template_record_keeps_recipient_and_params_and_derives_its_key() -> None:
    original = {
        "message_key": "eta:1", "to": "+5511987654321", "to_hash": "h1", "text": "5 min away",
        "buttons": ["OK"], "template": "eta_changed", "language": "pt_BR", "params": ["12:40"],
        "reason": "eta_update", "driver_id": "d1", "delivery_id": "o1", "created_at": 1,
    }  # fmt: skip
    record = template_record(original, "whatsup_update", 99)
    assert record is not None
    assert record["message_key"] == "eta:1:template" == fallback_key("eta:1")
    assert (record["text"], record["buttons"], record["template"]) == (None, [], "eta_changed")
    assert (record["to"], record["to_hash"], record["params"]) == ("+5511987654321", "h1", ["12:40"])
    assert (record["reason"], record["created_at"], record["delivery_id"]) == ("window_closed", 99, "o1")
    # Text without its own template falls back to the configured one; a template-only original has none.
    plain = template_record({**original, "template": None}, "whatsup_update", 0)
    assert plain is not None and plain["template"] == "whatsup_update"
    assert template_record({**original, "template": None}, None, 0) is None
    assert template_record({**original, "text": None}, "whatsup_update", 0) is None
