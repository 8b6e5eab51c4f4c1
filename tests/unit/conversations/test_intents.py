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


def test_unknown_payloads_fall_back_to_the_text() -> None:
    assert classify("Trânsito", "qr:teleport").kind == IntentKind.TRAFFIC
    assert classify("Trânsito", "something-else").kind == IntentKind.TRAFFIC
    assert classify(None).kind == IntentKind.UNKNOWN


def test_every_stall_check_button_title_is_understood() -> None:
    from connectors.whatsapp.catalogue import LANGUAGES, load_catalogue

    catalogue = load_catalogue()
    expected = [IntentKind.TRAFFIC, IntentKind.BREAKDOWN, IntentKind.ON_BREAK]
    for language in LANGUAGES:
        assert [classify(t).kind for t in catalogue.buttons("stall_check", language)] == expected


def test_fold_strips_accents_case_and_punctuation() -> None:
    assert fold("  Não, CHEGUEI!!  Ação ") == "nao cheguei acao"
