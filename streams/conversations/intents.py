"""Rule-based, multilingual (pt-BR, en, es) intents of a driver's WhatsApp message. Pure: no I/O.

Text is folded (lower case, accents stripped, punctuation to spaces) and matched against word-bounded
phrases of all three languages at once: a driver registered as pt-BR who writes "my orders" is understood.
Quick-reply buttons carry ``qr:<intent>`` payloads, matched exactly before any text rule.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from enum import StrEnum


class IntentKind(StrEnum):
    """What a driver asks or tells."""

    ORDERS_TODAY = "orders_today"
    ORDER_DETAILS = "order_details"
    HELP = "help"
    ARRIVED = "arrived"
    DELIVERED = "delivered"
    TRAFFIC = "traffic"
    BREAKDOWN = "breakdown"
    ON_BREAK = "on_break"
    LOCATION = "location"
    UNKNOWN = "unknown"


QUICK_REPLIES = frozenset(
    {IntentKind.ARRIVED, IntentKind.DELIVERED, IntentKind.TRAFFIC, IntentKind.BREAKDOWN, IntentKind.ON_BREAK}
)


@dataclass(frozen=True)
class Intent:
    """A classified message: its kind, the order it names (details), and who classified it."""

    kind: IntentKind
    order_ref: str | None = None
    source: str = "rules"


def fold(text: str) -> str:
    """Return ``text`` lower-cased, without accents, punctuation turned to single spaces."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(re.sub(r"[^a-z0-9#-]+", " ", bare).split())


def _phrases(*groups: str) -> re.Pattern[str]:
    """Compile word-bounded alternatives, given as ``|``-separated groups (one group per language)."""
    return re.compile(r"\b(?:" + "|".join(groups) + r")\b")


# A number or id after an order word: "pedido 2", "order #D-1001", "detalles del pedido n 3".
_ORDER_REF = re.compile(
    r"\b(?:pedido|pedidos|order|orders|entrega|delivery|orden|encomenda)\s+"
    r"(?:(?:n|no|nr|num|numero|number|nro)\s+)?#?\s*([a-z]*-?[0-9][a-z0-9-]*)\b"
)
# Checked in this order: the first match wins (breakdown before break, quick replies before the list).
_RULES: tuple[tuple[IntentKind, re.Pattern[str]], ...] = (
    (
        IntentKind.HELP,
        _phrases("ajuda|socorro|como funciona|menu", "help|what can you do", "ayuda"),
    ),
    (
        IntentKind.BREAKDOWN,
        _phrases(
            "pane|quebrou|quebrada|moto quebrou|pneu furado|furou o pneu|acidente",
            "breakdown|broke down|broken down|flat tire|flat tyre|accident|bike broke",
            "averia|se descompuso|se rompio|pinchazo|llanta ponchada|descompuesta",
        ),
    ),
    (
        IntentKind.TRAFFIC,
        _phrases(
            "transito|engarrafamento|congestionamento|preso|parado no",
            "traffic|jam|stuck",
            "trafico|atasco|embotellamiento",
        ),
    ),
    (
        IntentKind.ON_BREAK,
        _phrases(
            "pausa|intervalo|almoco|almocando|descansando",
            "on a break|break|lunch",
            "descanso|almuerzo|almorzando|comiendo",
        ),
    ),
    (
        IntentKind.DELIVERED,
        _phrases("entregue|entreguei|pedido entregue", "delivered", "entregado|entregada|ya entregue"),
    ),
    (
        IntentKind.ARRIVED,
        _phrases(
            "cheguei|chegou|estou no local|to aqui|estou aqui",
            "arrived|i am here|im here|i m here|here now",
            "llegue|estoy aqui|ya llegue|en el lugar",
        ),
    ),
    (
        IntentKind.ORDERS_TODAY,
        _phrases(
            "pedidos|entregas|meus pedidos|minhas entregas|encomendas|corridas",
            "orders|deliveries|my orders",
            "mis pedidos|mis entregas|ordenes",
        ),
    ),
)
# Bare "no" is Portuguese for "in the" ("preso no transito"): it negates only right before the verb.
_NEGATION = re.compile(
    r"\b(?:nao|not|didn t|haven t|hasn t|isn t|todavia no|aun no|nunca)\b"
    r"|\bno (?:he |lo |la |)(?:llegue|llegado|entregue|entregado|entregada|estoy)\b"
)


def classify(text: str | None, button_payload: str | None = None) -> Intent:
    """Return the intent of a driver's message text, or of the quick-reply button they pressed."""
    if button_payload and button_payload.startswith("qr:"):
        try:
            return Intent(IntentKind(button_payload[3:]))
        except ValueError:
            pass
    folded = fold(text or "")
    if not folded:
        return Intent(IntentKind.UNKNOWN)
    ref = _ORDER_REF.search(folded)
    if ref:
        return Intent(IntentKind.ORDER_DETAILS, ref.group(1).upper())
    for kind, pattern in _RULES:
        if pattern.search(folded):
            # "ainda não entreguei" is not a delivery; a negated quick reply is left to a human.
            if kind in QUICK_REPLIES and _NEGATION.search(folded) and kind != IntentKind.BREAKDOWN:
                return Intent(IntentKind.UNKNOWN)
            return Intent(kind)
    return Intent(IntentKind.UNKNOWN)
