"""Rule-based intents in pt-BR, en and es, including the traps (negations, prepositions, near words)."""

from __future__ import annotations

import pytest

from streams.conversations.intents import Intent, IntentKind, classify, fold

K = IntentKind

CASES: list[tuple[str, IntentKind]] = [
    # orders today
    ("meus pedidos hoje", K.ORDERS_TODAY), ("Quais são minhas entregas de hoje?", K.ORDERS_TODAY),
    ("PEDIDOS", K.ORDERS_TODAY), ("tenho corridas hoje?", K.ORDERS_TODAY),
    ("what are my orders today?", K.ORDERS_TODAY), ("my deliveries", K.ORDERS_TODAY),
    ("Orders", K.ORDERS_TODAY),
    ("¿Cuáles son mis pedidos de hoy?", K.ORDERS_TODAY), ("mis entregas", K.ORDERS_TODAY),
    ("ordenes de hoy", K.ORDERS_TODAY),
    # help
    ("ajuda", K.HELP), ("Socorro, como funciona?", K.HELP), ("menu", K.HELP), ("help", K.HELP),
    ("what can you do", K.HELP), ("ayuda por favor", K.HELP),
    # arrived
    ("Cheguei!", K.ARRIVED), ("estou no local", K.ARRIVED), ("tô aqui", K.ARRIVED), ("arrived", K.ARRIVED),
    ("I'm here", K.ARRIVED), ("llegué", K.ARRIVED), ("ya llegué al lugar", K.ARRIVED),
    # delivered
    ("Entregue ✅", K.DELIVERED), ("entreguei o pedido", K.DELIVERED), ("delivered", K.DELIVERED),
    ("Entregado", K.DELIVERED), ("ya entregué", K.DELIVERED),
    # traffic
    ("preso no trânsito", K.TRAFFIC), ("muito engarrafamento", K.TRAFFIC), ("Trânsito", K.TRAFFIC),
    ("stuck in traffic", K.TRAFFIC), ("traffic jam", K.TRAFFIC), ("Tráfico", K.TRAFFIC),
    ("hay un atasco", K.TRAFFIC),
    # breakdown
    ("a moto quebrou", K.BREAKDOWN), ("pneu furado", K.BREAKDOWN), ("Moto quebrou", K.BREAKDOWN),
    ("Breakdown", K.BREAKDOWN), ("my bike broke down", K.BREAKDOWN), ("flat tire", K.BREAKDOWN),
    ("Avería", K.BREAKDOWN), ("se descompuso la moto", K.BREAKDOWN), ("pinchazo", K.BREAKDOWN),
    # on a break
    ("Em pausa", K.ON_BREAK), ("parei pro almoço", K.ON_BREAK), ("intervalo", K.ON_BREAK),
    ("On a break", K.ON_BREAK), ("lunch", K.ON_BREAK), ("En pausa", K.ON_BREAK), ("almorzando", K.ON_BREAK),
    # not understood, and negations left to a human
    ("oi", K.UNKNOWN), ("hello", K.UNKNOWN), ("hola", K.UNKNOWN), ("", K.UNKNOWN), ("👍", K.UNKNOWN),
    ("ainda não entreguei", K.UNKNOWN), ("not delivered yet", K.UNKNOWN), ("no entregué", K.UNKNOWN),
    ("no he llegado", K.UNKNOWN), ("não cheguei", K.UNKNOWN),
]  # fmt: skip


@pytest.mark.parametrize(("text", "kind"), CASES)
def test_texts_in_three_languages(text: str, kind: IntentKind) -> None:
    assert classify(text).kind == kind


@pytest.mark.parametrize(
    ("text", "ref"),
    [
        ("detalhes do pedido 2", "2"), ("pedido nº 3", "3"), ("Pedido #D-1001", "D-1001"),
        ("entrega 12", "12"),
        ("details of order 2", "2"), ("order number 7", "7"), ("order D-1001", "D-1001"),
        ("detalles del pedido n 3", "3"), ("orden 4", "4"),
    ],
)  # fmt: skip
def test_order_details_name_the_order(text: str, ref: str) -> None:
    assert classify(text) == Intent(IntentKind.ORDER_DETAILS, ref)


@pytest.mark.parametrize("kind", ["arrived", "delivered", "traffic", "breakdown", "on_break", "help"])
def test_button_payloads_win_over_text(kind: str) -> None:
    assert classify("anything at all", f"qr:{kind}").kind == IntentKind(kind)


def test_a_title_payload_falls_back_to_the_text_and_an_unknown_coded_payload_is_refused() -> None:
    assert classify("Trânsito", "Trânsito").kind == IntentKind.TRAFFIC  # a template button: id = title
    assert classify("Trânsito", "something-else").kind == IntentKind.TRAFFIC
    assert classify(None).kind == IntentKind.UNKNOWN
    for payload in ("qr:teleport", "qr:choice", "zz:1", "do:teleport:D-1", "do:delivered:", "fail:asleep:D-1",
                    "fr:bored", "acc:"):  # fmt: skip
        assert classify("Trânsito", payload).kind in (IntentKind.UNKNOWN_BUTTON, IntentKind.TRAFFIC)
    assert classify("Trânsito", "qr:teleport").kind == IntentKind.UNKNOWN_BUTTON
    assert classify("Trânsito", "do:delivered:").kind == IntentKind.UNKNOWN_BUTTON


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ("acc:D-1", Intent(IntentKind.ACCEPT, "D-1")),
        ("dec:d-1", Intent(IntentKind.DECLINE, "d-1")),
        ("det:D-2", Intent(IntentKind.ORDER_DETAILS, "D-2")),
        ("do:delivered:D-1", Intent(IntentKind.DELIVERED, "D-1")),
        ("do:picked_up:X:1", Intent(IntentKind.PICKED_UP, "X:1")),
        ("fail:not_home:D-1", Intent(IntentKind.FAILED, "D-1", failure_reason="not_home")),
        ("fail:other:D-1", Intent(IntentKind.FAILED, "D-1", failure_reason="other")),
        ("fr:damaged", Intent(IntentKind.FAILED, failure_reason="damaged")),
    ],
)
def test_payloads_name_the_step_and_the_delivery(payload: str, expected: Intent) -> None:
    assert classify("whatever the title", payload) == expected


STEP_CASES: list[tuple[str, Intent]] = [
    ("aceito", Intent(IntentKind.ACCEPT)), ("Accept", Intent(IntentKind.ACCEPT)),
    ("acepto", Intent(IntentKind.ACCEPT)), ("não aceito", Intent(IntentKind.DECLINE)),
    ("recuso", Intent(IntentKind.DECLINE)), ("decline", Intent(IntentKind.DECLINE)),
    ("rechazo", Intent(IntentKind.DECLINE)),
    ("coletei o pedido", Intent(IntentKind.PICKED_UP)), ("picked up", Intent(IntentKind.PICKED_UP)),
    ("ya recogí", Intent(IntentKind.PICKED_UP)),
    ("a caminho", Intent(IntentKind.ON_THE_WAY)), ("on my way", Intent(IntentKind.ON_THE_WAY)),
    ("en camino", Intent(IntentKind.ON_THE_WAY)),
    ("não consegui entregar", Intent(IntentKind.FAILED)),
    ("could not deliver, wrong address", Intent(IntentKind.FAILED, failure_reason="wrong_address")),
    ("no pude entregar, nadie en casa", Intent(IntentKind.FAILED, failure_reason="not_home")),
    ("cliente ausente", Intent(IntentKind.FAILED, failure_reason="not_home")),
    ("o cliente recusou", Intent(IntentKind.FAILED, failure_reason="refused")),
    ("entreguei o pedido 2", Intent(IntentKind.DELIVERED, "2")),
    ("2", Intent(IntentKind.CHOICE, choice=2)), ("nº 3", Intent(IntentKind.CHOICE, choice=3)),
    ("opción 1", Intent(IntentKind.CHOICE, choice=1)),
    ("30 minutos", Intent(IntentKind.UNKNOWN)),
]  # fmt: skip


@pytest.mark.parametrize(("text", "expected"), STEP_CASES)
def test_delivery_steps_and_numbers_in_three_languages(text: str, expected: Intent) -> None:
    assert classify(text) == expected


def test_every_stall_check_button_title_is_understood() -> None:
    from connectors.whatsapp.catalogue import LANGUAGES, load_catalogue

    catalogue = load_catalogue()
    expected = [IntentKind.TRAFFIC, IntentKind.BREAKDOWN, IntentKind.ON_BREAK]
    for language in LANGUAGES:
        assert [classify(t).kind for t in catalogue.buttons("stall_check", language)] == expected


def test_fold_strips_accents_case_and_punctuation() -> None:
    assert fold("  Não, CHEGUEI!!  Ação ") == "nao cheguei acao"
