"""Every step of a delivery told in the chat: which delivery, the question when two are possible, "2" as
an answer, stale or unknown answers refused, proof by photo or location, words a person would write."""

from __future__ import annotations

import json
from typing import Any

import pytest

from connectors.whatsapp.catalogue import load_catalogue
from connectors.whatsapp.chat import ChatContext, at_door
from connectors.whatsapp.registry import Driver
from schemas.codecs import codec
from streams.conversations.answers import Context, Reaction, respond
from streams.conversations.intents import Intent, IntentKind, classify

T0 = 1_763_870_000_000  # 03:53:20 UTC: 00:53 in São Paulo, 23:53 the day before in Manaus


def delivery(delivery_id: str, status: str, **extra: Any) -> dict[str, Any]:
    return {"delivery_id": delivery_id, "status": status, "pickup": {"lat": -23.5, "lon": -46.6},
            "dropoff": {"lat": -23.6, "lon": -46.7}, "promised_at": T0 + 1_800_000, "eta": None,
            "customer_ref": f"c-{delivery_id}", "pickup_address": f"Loja {delivery_id}, Rua A 10",
            "dropoff_address": f"Av. B 200, ap {delivery_id[-1]}", "customer_first_name": "Ana",
            **extra}  # fmt: skip


def state(*deliveries: dict[str, Any]) -> dict[str, Any]:
    return {"driver_id": "d1", "last_fix": None, "open_alerts": [], "active_deliveries": list(deliveries)}


def event(message_id: str = "wamid.A", **extra: Any) -> dict[str, Any]:
    return {"message_id": message_id, "ts": T0, "received_ts": T0 + 500, "lat": None, "lon": None,
            "type": "text", "text": None, "payload": "{}", **extra}  # fmt: skip


def ctx(language: str = "pt-BR", zone: str = "") -> Context:
    return Context(
        Driver("d1", "+5511987654321", "active", language, zone), load_catalogue(), utc_offset_h=-3.0
    )


def said(text: str, now: dict[str, Any], chat: ChatContext | None = None, language: str = "pt-BR",
         message_id: str = "wamid.A", payload: str | None = None) -> Reaction:  # fmt: skip
    return respond(classify(text, payload), event(message_id, text=text), now, ctx(language), chat)


def step(reaction: Reaction) -> tuple[str, str, str | None]:
    record = reaction.delivery_event
    assert record is not None, reaction
    codec("DeliveryEvent").encode(record)
    return record["delivery_id"], record["type"], record.get("failure_reason")


@pytest.mark.parametrize(
    ("language", "text", "fragment"),
    [("pt-BR", "aceito", "Coleta em Loja D-1, Rua A 10"), ("en", "accept", "Pickup at Loja D-1, Rua A 10"),
     ("es", "acepto", "Recogida en Loja D-1, Rua A 10")],
)  # fmt: skip
def test_accepting_the_one_assignment_in_three_languages(language: str, text: str, fragment: str) -> None:
    reaction = said(text, state(delivery("D-1", "assigned")), language=language)
    assert step(reaction) == ("D-1", "accepted", None)
    assert reaction.delivery_event["event_id"] == "wa:wamid.A"  # type: ignore[index]
    assert fragment in reaction.reply and reaction.sets_context and reaction.context is None


def test_two_possible_deliveries_are_asked_about_and_the_number_answers() -> None:
    now = state(delivery("D-1", "assigned"), delivery("D-2", "assigned"))
    asked = said("aceito", now)
    assert asked.outcome == "asked_which" and asked.delivery_event is None
    assert "1. D-1 para Ana, Av. B 200, ap 1" in asked.reply and "2. D-2 para Ana" in asked.reply
    assert asked.context is not None and asked.context.options == ("do:accept:D-1", "do:accept:D-2")
    answered = said("2", now, chat=asked.context, message_id="wamid.B")
    assert step(answered) == ("D-2", "accepted", None)
    assert answered.delivery_event["event_id"] == "wa:wamid.B"  # type: ignore[index]


def test_a_pressed_button_names_its_delivery() -> None:
    now = state(delivery("D-1", "assigned"), delivery("D-2", "assigned"))
    assert step(said("Recusar", now, payload="dec:D-2")) == ("D-2", "declined", None)
    assert step(said("Aceitar", now, payload="acc:D-1")) == ("D-1", "accepted", None)


@pytest.mark.parametrize(
    ("payload", "refusal"),
    [("acc:D-1", "impossible_step"), ("acc:D-404", "unknown_delivery"), ("acc", None),
     ("qr:teleport", "unknown_button")],
)  # fmt: skip
def test_stale_and_unknown_buttons_are_refused_and_change_nothing(payload: str, refusal: str | None) -> None:
    reaction = said("Aceitar", state(delivery("D-1", "picked_up")), payload=payload)
    assert reaction.delivery_event is None and reaction.alert is None and reaction.ping is None
    if refusal is None:  # a payload of no known form is the button's title: "Aceitar" read as text
        assert reaction.outcome == "no_active_delivery"
    else:
        assert reaction.refusal == refusal
    if refusal == "impossible_step":
        assert "D-1 está coletado" in reaction.reply


def test_a_number_with_no_question_open_or_out_of_range_is_refused() -> None:
    now = state(delivery("D-1", "assigned"))
    stale = said("2", now)
    assert (stale.refusal, stale.delivery_event) == ("stale_context", None) and not stale.sets_context
    listed = said("meus pedidos", now)
    assert listed.context is not None and listed.context.options == ("det:D-1",)
    wrong = said("5", now, chat=listed.context)
    assert wrong.refusal == "choice_out_of_range" and "1 a 1" in wrong.reply


def test_the_orders_list_then_a_number_shows_addresses_and_only_the_first_name() -> None:
    now = state(delivery("D-1", "en_route", eta=T0 + 600_000), delivery("D-2", "assigned"))
    listed = said("meus pedidos", now)
    assert "1. D-1 para Ana, Av. B 200, ap 1: a caminho, previsão 01:03" in listed.reply
    assert "2. D-2 para Ana, Av. B 200, ap 2: atribuído, ainda sem previsão" in listed.reply
    shown = said("2", now, chat=listed.context)
    assert shown.outcome == "order_details"
    assert "Coleta: Loja D-2, Rua A 10" in shown.reply and "prometido para 01:23" in shown.reply


def test_times_are_shown_in_the_drivers_zone() -> None:
    now = state(delivery("D-1", "en_route", eta=T0 + 600_000))
    manaus = respond(classify("my orders"), event(text="my orders"), now, ctx("en", "America/Manaus"))
    assert "ETA 00:03" in manaus.reply  # UTC-4, where São Paulo reads 01:03


def test_a_failure_without_a_reason_asks_for_one_from_the_list() -> None:
    now = state(delivery("D-1", "arrived"))
    asked = said("não consegui entregar", now)
    assert asked.outcome == "asked_reason" and asked.delivery_event is None
    assert "1. cliente ausente" in asked.reply and "4. pedido danificado" in asked.reply
    assert asked.context is not None and asked.context.options[1] == "fail:wrong_address:D-1"
    answered = said("2", now, chat=asked.context, message_id="wamid.B")
    assert step(answered) == ("D-1", "failed", "wrong_address")
    assert "endereço errado" in answered.reply
    assert step(said("cliente ausente", now)) == ("D-1", "failed", "not_home")


def test_arrived_leaves_the_driver_at_the_door_and_a_location_there_is_the_proof() -> None:
    now = state(delivery("D-1", "en_route"), delivery("D-2", "assigned"))
    arrived = said("cheguei", now)
    assert step(arrived) == ("D-1", "arrived", None)
    assert arrived.context == at_door("D-1", T0) and "foto ou sua localização" in arrived.reply
    now = state(delivery("D-1", "arrived"), delivery("D-2", "assigned"))
    shared = event("wamid.L", type="location", lat=-23.60001, lon=-46.70002)
    proof = respond(Intent(IntentKind.LOCATION), shared, now, ctx(), arrived.context)
    assert step(proof) == ("D-1", "delivered", None)
    assert proof.delivery_event["proof_ref"] == "location:-23.60001,-46.70002"  # type: ignore[index]
    assert proof.ping is not None and proof.ping["ping_id"] == "wa:wamid.L"
    elsewhere = respond(Intent(IntentKind.LOCATION), shared, None, ctx(), None)
    assert elsewhere.delivery_event is None and elsewhere.ping is not None


def test_a_photo_is_the_proof_by_its_media_id_never_its_bytes() -> None:
    now = state(delivery("D-1", "arrived"))
    photo = event(
        "wamid.P", type="image", payload=json.dumps({"media_id": "meta:m1", "mime_type": "image/jpeg"})
    )
    delivered = respond(Intent(IntentKind.PHOTO), photo, now, ctx("en"), at_door("D-1"))
    assert step(delivered) == ("D-1", "delivered", None)
    assert delivered.delivery_event["proof_ref"] == "media:meta:m1"  # type: ignore[index]
    assert "proof kept" in delivered.reply
    damaged = respond(Intent(IntentKind.PHOTO), {**photo, "text": "pedido danificado"}, now, ctx(), None)
    assert step(damaged) == ("D-1", "failed", "damaged")
    nothing = respond(Intent(IntentKind.PHOTO), photo, state(), ctx("en"), None)
    assert nothing.delivery_event is None and "no delivery in progress" in nothing.reply


def test_each_step_follows_the_status_it_may_follow() -> None:
    assert step(said("coletei", state(delivery("D-1", "accepted")))) == ("D-1", "picked_up", None)
    assert step(said("a caminho", state(delivery("D-1", "picked_up")))) == ("D-1", "en_route", None)
    assert step(said("entregue", state(delivery("D-1", "en_route")))) == ("D-1", "delivered", None)
    # Nothing the step may follow: said so, and nothing is sent to the state machine to refuse.
    assert said("entregue", state(delivery("D-1", "assigned"))).outcome == "no_active_delivery"
    # A delivery at its door wins over one on its way: no question.
    at_door_first = state(delivery("D-1", "en_route"), delivery("D-2", "arrived"))
    assert step(said("entregue", at_door_first)) == ("D-2", "delivered", None)
