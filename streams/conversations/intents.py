"""Rule-based, multilingual (pt-BR, en, es) intents of a driver's WhatsApp message. Pure: no I/O.

Text is folded (lower case, accents stripped, punctuation to spaces) and matched against word-bounded
phrases of all three languages at once: a driver registered as pt-BR who writes "my orders" is understood.
Buttons carry payloads matched exactly before any text rule: ``qr:<intent>`` (quick replies),
``acc:<delivery>`` and ``dec:<delivery>`` (accept or decline an assignment), ``det:<delivery>`` (its
details), ``do:<intent>:<delivery>`` (a step for one delivery), ``fail:<reason>:<delivery>`` and
``fr:<reason>`` (a failure and its reason). A payload of that ``prefix:value`` form that names nothing
known is ``UNKNOWN_BUTTON``: refused, never guessed; a payload of no such form (a template's button whose
payload is its title) is classified by its text. A bare number ("2") answers the list the conversation last
showed: what it stands for is the conversation context's to say (``context.py``).
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
    ACCEPT = "accept"
    DECLINE = "decline"
    PICKED_UP = "picked_up"
    ON_THE_WAY = "on_the_way"
    ARRIVED = "arrived"
    DELIVERED = "delivered"
    FAILED = "failed"
    TRAFFIC = "traffic"
    BREAKDOWN = "breakdown"
    ON_BREAK = "on_break"
    LOCATION = "location"
    PHOTO = "photo"
    CHOICE = "choice"
    UNKNOWN_BUTTON = "unknown_button"
    UNKNOWN = "unknown"


QUICK_REPLIES = frozenset(
    {IntentKind.ARRIVED, IntentKind.DELIVERED, IntentKind.TRAFFIC, IntentKind.BREAKDOWN, IntentKind.ON_BREAK,
     IntentKind.ACCEPT, IntentKind.DECLINE, IntentKind.PICKED_UP, IntentKind.ON_THE_WAY, IntentKind.FAILED}
)  # fmt: skip
FAILURE_REASONS = ("not_home", "wrong_address", "refused", "damaged")


@dataclass(frozen=True)
class Intent:
    """A classified message: its kind, the order it names, and who classified it; a failure's reason, a
    list entry's number (1-based)."""

    kind: IntentKind
    order_ref: str | None = None
    source: str = "rules"
    failure_reason: str | None = None
    choice: int | None = None


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
# Why a delivery failed, when the driver's words say it: "cliente ausente", "wrong address".
_FAILURE_WORDS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "not_home",
        _phrases(
            "cliente ausente|ninguem em casa|nao tem ninguem|ninguem atende|nao atende|ausente",
            "not home|nobody home|no one home|no one answered|nobody answered",
            "nadie en casa|no hay nadie|no contesta|no estaba",
        ),
    ),
    (
        "wrong_address",
        _phrases(
            "endereco errado|endereco nao existe|endereco incorreto|nao achei o endereco",
            "wrong address|address does not exist|address not found|cannot find the address",
            "direccion equivocada|direccion incorrecta|direccion no existe",
        ),
    ),
    (
        "refused",
        _phrases(
            "recusou|recusado|nao quis|devolveu", "refused|rejected it|did not want", "rechazo|no lo quiso"
        ),
    ),
    (
        "damaged",
        _phrases(
            "danificado|avariado|estragado|quebrado|amassado|derramou",
            "damaged|broken|spilled|crushed",
            "danado|roto|derramado|aplastado",
        ),
    ),
)
# Checked in this order: the first match wins (breakdown before break, quick replies before the list).
_RULES: tuple[tuple[IntentKind, re.Pattern[str]], ...] = (
    (
        IntentKind.HELP,
        _phrases("ajuda|socorro|como funciona|menu", "help|what can you do", "ayuda"),
    ),
    (
        IntentKind.FAILED,
        _phrases(
            "nao consegui entregar|nao deu para entregar|nao foi possivel entregar|entrega falhou|falhou",
            "could not deliver|couldn t deliver|cannot deliver|can t deliver|delivery failed|failed",
            "no pude entregar|no se pudo entregar|entrega fallida|fallo la entrega",
        ),
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
        IntentKind.DECLINE,
        _phrases(
            "recuso|recusar|nao aceito|nao posso pegar|nao vou pegar|rejeito",
            "decline|declined|reject|i can t take it|cannot take it",
            "rechazo|rechazar|no acepto|no puedo tomarlo",
        ),
    ),
    (
        IntentKind.ACCEPT,
        _phrases(
            "aceito|aceitar|aceitei|pode mandar|bora",
            "accept|accepted|i ll take it",
            "acepto|aceptar|aceptado",
        ),
    ),
    (
        IntentKind.PICKED_UP,
        _phrases(
            "coletei|peguei o pedido|peguei a encomenda|retirei|pedido coletado|coletado|ja peguei",
            "picked up|got the order|collected|pickup done",
            "recogi|ya recogi|pedido recogido|lo tengo",
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
        IntentKind.ON_THE_WAY,
        _phrases(
            "a caminho|indo entregar|saindo para entrega|saindo agora|em rota",
            "on my way|on the way|heading out|en route",
            "en camino|voy para alla|saliendo",
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
_CHOICE = re.compile(r"^(?:n|no|numero|number|opcao|option|opcion|#)?\s*([1-9][0-9]?)$")
# Bare "no" is Portuguese for "in the" ("preso no transito"): it negates only right before the verb.
_NEGATION = re.compile(
    r"\b(?:nao|not|didn t|haven t|hasn t|isn t|todavia no|aun no|nunca)\b"
    r"|\bno (?:he |lo |la |)(?:llegue|llegado|entregue|entregado|entregada|estoy)\b"
)


def failure_reason(folded: str) -> str | None:
    """Return the failure reason a folded text names, if any."""
    return next((reason for reason, pattern in _FAILURE_WORDS if pattern.search(folded)), None)


_NOT_PRESSABLE = frozenset(
    {IntentKind.CHOICE, IntentKind.UNKNOWN, IntentKind.UNKNOWN_BUTTON, IntentKind.LOCATION, IntentKind.PHOTO}
)
_PAYLOAD = re.compile(r"^([a-z]{2,4}):(\S.{0,200})$", re.DOTALL)
_CHOSEN_STEPS = frozenset(
    {IntentKind.ACCEPT, IntentKind.DECLINE, IntentKind.PICKED_UP, IntentKind.ON_THE_WAY, IntentKind.ARRIVED,
     IntentKind.DELIVERED, IntentKind.FAILED}
)  # fmt: skip


def _button(payload: str) -> Intent | None:
    """Return the intent a button's payload stands for: None when the payload is not of the ``prefix:value``
    form, ``UNKNOWN_BUTTON`` when it is but names nothing known."""
    form = _PAYLOAD.match(payload)
    if form is None:
        return None
    kind, value = form.groups()
    unknown = Intent(IntentKind.UNKNOWN_BUTTON)
    if kind == "qr":
        try:
            found = IntentKind(value)
        except ValueError:
            return unknown
        return unknown if found in _NOT_PRESSABLE else Intent(found)
    if kind in ("acc", "dec", "det"):
        named = {"acc": IntentKind.ACCEPT, "dec": IntentKind.DECLINE, "det": IntentKind.ORDER_DETAILS}[kind]
        return Intent(named, order_ref=value)
    if kind == "fr":
        return (
            Intent(IntentKind.FAILED, failure_reason=value)
            if value in (*FAILURE_REASONS, "other")
            else unknown
        )
    step, _, delivery_id = value.partition(":")
    if kind == "do" and delivery_id and step in _CHOSEN_STEPS:
        return Intent(IntentKind(step), order_ref=delivery_id)
    if kind == "fail" and delivery_id and step in (*FAILURE_REASONS, "other"):
        return Intent(IntentKind.FAILED, order_ref=delivery_id, failure_reason=step)
    return unknown


def classify(text: str | None, button_payload: str | None = None) -> Intent:
    """Return the intent of a driver's message text, or of the button they pressed."""
    if button_payload:
        pressed = _button(button_payload)
        if pressed is not None:
            return pressed
    folded = fold(text or "")
    if not folded:
        return Intent(IntentKind.UNKNOWN)
    choice = _CHOICE.match(folded)
    if choice:
        return Intent(IntentKind.CHOICE, choice=int(choice.group(1)))
    ref = _ORDER_REF.search(folded)
    reason = failure_reason(folded)
    for kind, pattern in _RULES:
        if pattern.search(folded):
            # "ainda não entreguei" is not a delivery; a negated quick reply is left to a human, except
            # where the negation is the words themselves ("não consegui entregar", "não aceito").
            negation_is_the_words = kind in (IntentKind.BREAKDOWN, IntentKind.FAILED, IntentKind.DECLINE)
            if kind in QUICK_REPLIES and _NEGATION.search(folded) and not negation_is_the_words:
                if kind == IntentKind.DELIVERED and reason is not None:
                    return Intent(IntentKind.FAILED, failure_reason=reason)
                return Intent(IntentKind.UNKNOWN)
            if kind == IntentKind.ORDERS_TODAY and ref:
                break
            order = ref.group(1).upper() if ref else None
            return Intent(kind, order, failure_reason=reason if kind == IntentKind.FAILED else None)
    if ref:
        return Intent(IntentKind.ORDER_DETAILS, ref.group(1).upper())
    if reason is not None:  # "cliente ausente" alone says the delivery failed, and why
        return Intent(IntentKind.FAILED, failure_reason=reason)
    return Intent(IntentKind.UNKNOWN)
