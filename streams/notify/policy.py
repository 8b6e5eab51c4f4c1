"""When to tell whom what: alerts, ETA updates and deliveries become WhatsApp messages. Pure: no I/O.

- A customer hears of a new ETA only when it moved by at least ``eta_threshold_ms`` from what they were
  last told (or, before any message, from the promised time), and at most once per ``customer_interval_ms``.
- A ``late_risk`` alert tells the customer their order is delayed; a ``stall`` alert sends the driver a
  check-in with quick-reply buttons. Other alerts (and drivers' annotations of them) send nothing.
- A delivered delivery tells its customer, once; so do a pickup, the first time it is on its way (with the
  ETA), its arrival near the door (once, when an ETA update finds it within ``arriving_m``; ETA messages stop
  there) and a failure (with its reason and what happens next). Every customer message carries the
  delivery's tracking link (``base/tracking.py``), and nothing goes to a number that wrote STOP.
- An assignment offers the delivery to its driver (pickup, the customer's first name, drop-off, promised
  time) with Accept and Decline buttons whose payloads name the delivery.
- Inside the recipient's 24-hour window (since their last message to us) a message carries free text (and
  the template as the sender's fallback); outside it, only the approved template.
Each message's ``message_key`` derives from its cause (delivery and ETA computation, alert id, delivery), and
"now" is the cause's own time, so replaying a cause yields the same decision and the same key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from base.tracking import tracking_url
from connectors.whatsapp.catalogue import Catalogue, local_clock, meta_language

DAY_MS = 86_400_000


@dataclass(frozen=True)
class NotifyConfig:
    """The notification policy's knobs."""

    eta_threshold_ms: int = 300_000
    customer_interval_ms: int = 900_000
    window_ms: int = DAY_MS
    utc_offset_h: float = -3.0
    # Customers' tracking links: the public base URL of GET /t/{token}, the signing secret, the lifetime.
    tracking_base_url: str = "http://127.0.0.1:6065"
    tracking_secret: str = ""
    tracking_ttl_ms: int = DAY_MS
    # An ETA update this close to the drop-off (metres) tells the customer the driver is arriving.
    arriving_m: float = 400.0


@dataclass(frozen=True)
class Recipient:
    """Who gets a message: clear phone (for the sender only), its hash, and their language."""

    phone: str
    phone_hash: str
    language: str


@dataclass(frozen=True)
class CustomerMemory:
    """What a delivery's customer was last told, and when."""

    last_eta: int | None = None
    last_sent_at: int | None = None
    arriving: bool = False  # told the driver is arriving: ETA messages stop


@dataclass(frozen=True)
class Decision:
    """A message to send (or None, with the reason it was held back) and the customer memory to keep."""

    message: dict[str, Any] | None
    reason: str
    memory: CustomerMemory | None = None


def window_open(last_inbound_ms: int | None, now_ms: int, config: NotifyConfig) -> bool:
    """Tell whether the recipient wrote to us within the last 24 hours (free-form messages allowed)."""
    return last_inbound_ms is not None and 0 <= now_ms - last_inbound_ms < config.window_ms


def compose(
    catalogue: Catalogue,
    template: str,
    recipient: Recipient,
    params: dict[str, Any],
    *,
    key: str,
    reason: str,
    now_ms: int,
    window_is_open: bool,
    driver_id: str | None = None,
    delivery_id: str | None = None,
    button_ids: list[str] | None = None,
) -> dict[str, Any]:
    """Return the OutboundMessage for ``template``: free text inside the window, the template always."""
    return {
        "message_key": key,
        "to": recipient.phone,
        "to_hash": recipient.phone_hash,
        "template": template,
        "language": meta_language(recipient.language),
        "params": catalogue.template_params(template, **params),
        "text": catalogue.render(template, recipient.language, **params) if window_is_open else None,
        "buttons": catalogue.buttons(template, recipient.language),
        "button_ids": button_ids or [],
        "reason": reason,
        "driver_id": driver_id,
        "delivery_id": delivery_id,
        "created_at": now_ms,
    }


def _eta_text(catalogue: Catalogue, eta: int | None, recipient: Recipient, config: NotifyConfig) -> str:
    if eta is None:
        return catalogue.render("no_eta", recipient.language)
    return local_clock(eta, config.utc_offset_h)


def link(config: NotifyConfig, delivery_id: str, now_ms: int) -> str:
    """The delivery's tracking link; its expiry counts from the cause's time, so a replay renders it again."""
    if not config.tracking_secret:
        return config.tracking_base_url
    expires = now_ms + config.tracking_ttl_ms
    return tracking_url(config.tracking_base_url, config.tracking_secret, delivery_id, expires)


def decide_eta(
    update: dict[str, Any],
    customer: Recipient | None,
    memory: CustomerMemory,
    last_inbound_ms: int | None,
    catalogue: Catalogue,
    config: NotifyConfig,
    driver_name: str = "",
) -> Decision:
    """Decide whether an EtaUpdate is worth a message to the delivery's customer: arriving near the door,
    or a real shift of the ETA."""
    if customer is None:
        return Decision(None, "no_customer")
    now, eta = update["computed_at"], update["eta"]
    if memory.arriving:
        return Decision(None, "arriving_told")
    if 0 <= float(update.get("remaining_m") or 0.0) <= config.arriving_m and update.get("method") != "actual":
        params = {"delivery_id": update["delivery_id"], "driver": driver_name or
                  catalogue.render("your_driver", customer.language),
                  "link": link(config, update["delivery_id"], now)}  # fmt: skip
        message = compose(
            catalogue, "delivery_arriving", customer, params,
            key=f"arriving:{update['delivery_id']}", reason="delivery_arriving", now_ms=now,
            window_is_open=window_open(last_inbound_ms, now, config),
            driver_id=update["driver_id"], delivery_id=update["delivery_id"],
        )  # fmt: skip
        return Decision(message, "sent", CustomerMemory(eta, now, arriving=True))
    baseline = memory.last_eta if memory.last_eta is not None else update.get("promised_at")
    if baseline is None:
        return Decision(None, "baseline", CustomerMemory(eta, memory.last_sent_at))
    if abs(eta - baseline) < config.eta_threshold_ms:
        return Decision(None, "small_shift")
    if memory.last_sent_at is not None and now - memory.last_sent_at < config.customer_interval_ms:
        return Decision(None, "customer_interval")
    params = {"delivery_id": update["delivery_id"], "eta": _eta_text(catalogue, eta, customer, config),
              "link": link(config, update["delivery_id"], now)}  # fmt: skip
    message = compose(
        catalogue, "eta_update", customer, params,
        key=f"eta:{update['delivery_id']}:{now}", reason="eta_update", now_ms=now,
        window_is_open=window_open(last_inbound_ms, now, config),
        driver_id=update["driver_id"], delivery_id=update["delivery_id"],
    )  # fmt: skip
    return Decision(message, "sent", CustomerMemory(eta, now))


def decide_alert(
    alert: dict[str, Any],
    driver: Recipient | None,
    customer: Recipient | None,
    memory: CustomerMemory,
    last_inbound: dict[str, int | None],
    catalogue: Catalogue,
    config: NotifyConfig,
) -> Decision:
    """Decide what an Alert sends: a stall check-in to the driver, a delay notice to the customer, or nothing.

    ``last_inbound`` maps a recipient's phone hash to the time of their last message to us.
    """
    now, kind = alert["detected_at"], alert["kind"]
    if str(alert.get("detail", "")).startswith("driver_reply:"):
        return Decision(None, "annotation")
    if kind == "stall":
        if driver is None:
            return Decision(None, "no_driver")
        message = compose(
            catalogue, "stall_check", driver, {},
            key=f"stall_check:{alert['alert_id']}", reason="stall_check", now_ms=now,
            window_is_open=window_open(last_inbound.get(driver.phone_hash), now, config),
            driver_id=alert["driver_id"], delivery_id=alert.get("delivery_id"),
        )  # fmt: skip
        return Decision(message, "sent")
    if kind != "late_risk":
        return Decision(None, "not_notified")
    if customer is None:
        return Decision(None, "no_customer")
    if memory.last_sent_at is not None and now - memory.last_sent_at < config.customer_interval_ms:
        return Decision(None, "customer_interval")
    params = {
        "delivery_id": alert["delivery_id"],
        "eta": _eta_text(catalogue, memory.last_eta, customer, config),
        "link": link(config, alert["delivery_id"], now),
    }
    message = compose(
        catalogue, "delivery_delayed", customer, params,
        key=f"delayed:{alert['alert_id']}", reason="delivery_delayed", now_ms=now,
        window_is_open=window_open(last_inbound.get(customer.phone_hash), now, config),
        driver_id=alert["driver_id"], delivery_id=alert["delivery_id"],
    )  # fmt: skip
    return Decision(message, "sent", CustomerMemory(memory.last_eta, now, memory.arriving))


def decide_delivered(
    event: dict[str, Any],
    customer: Recipient | None,
    last_inbound_ms: int | None,
    catalogue: Catalogue,
    config: NotifyConfig,
) -> Decision:
    """Decide the delivered message of a DeliveryEvent (one per delivery, whichever source reported it)."""
    if event["type"] != "delivered":
        return Decision(None, "not_notified")
    if customer is None:
        return Decision(None, "no_customer")
    now = event["ts"]
    params = {"delivery_id": event["delivery_id"], "link": link(config, event["delivery_id"], now)}
    message = compose(
        catalogue, "delivery_delivered", customer, params,
        key=f"delivered:{event['delivery_id']}", reason="delivery_delivered", now_ms=now,
        window_is_open=window_open(last_inbound_ms, now, config),
        driver_id=event["driver_id"], delivery_id=event["delivery_id"],
    )  # fmt: skip
    return Decision(message, "sent")


def _place(event: dict[str, Any], kind: str) -> str:
    address = event.get(f"{kind}_address")
    if address:
        return str(address)
    lat, lon = event.get(f"{kind}_lat"), event.get(f"{kind}_lon")
    return "?" if lat is None or lon is None else f"{lat:.5f},{lon:.5f}"


def offer_buttons(delivery_id: str) -> list[str]:
    """The payloads of an offer's Accept and Decline buttons, in the template's button order."""
    return [f"acc:{delivery_id}", f"dec:{delivery_id}"]


def decide_offer(
    event: dict[str, Any],
    driver: Recipient | None,
    last_inbound_ms: int | None,
    catalogue: Catalogue,
    config: NotifyConfig,
) -> Decision:
    """Decide the offer an applied assignment sends its driver: the delivery in words, Accept or Decline."""
    if event["type"] != "assigned":
        return Decision(None, "not_notified")
    if driver is None:
        return Decision(None, "no_driver")
    now, language = event["ts"], driver.language
    names = str(event.get("customer_name") or "").split()
    promised = event.get("promised_at")
    params = {
        "delivery_id": event["delivery_id"],
        "pickup": _place(event, "pickup"),
        "customer": names[0] if names else catalogue.render("someone", language),
        "dropoff": _place(event, "dropoff"),
        "promised": catalogue.render("promised_at", language, time=local_clock(promised, config.utc_offset_h))
        if promised is not None
        else catalogue.render("no_promise", language),
    }
    message = compose(
        catalogue, "delivery_offer", driver, params,
        key=f"offer:{event['delivery_id']}:{event['event_id']}", reason="delivery_offer", now_ms=now,
        window_is_open=window_open(last_inbound_ms, now, config),
        driver_id=event["driver_id"], delivery_id=event["delivery_id"],
        button_ids=offer_buttons(event["delivery_id"]),
    )  # fmt: skip
    return Decision(message, "sent")


STEP_TEMPLATES = {
    "picked_up": "delivery_picked_up",
    "en_route": "delivery_on_the_way",
    "failed": "delivery_failed",
}


def decide_step(
    event: dict[str, Any],
    customer: Recipient | None,
    driver_name: str,
    memory: CustomerMemory,
    last_inbound_ms: int | None,
    catalogue: Catalogue,
    config: NotifyConfig,
) -> Decision:
    """Decide what an applied pickup, departure or failure tells the customer (one message each per
    delivery, under a key of the delivery and the step)."""
    template = STEP_TEMPLATES.get(event["type"])
    if template is None:
        return Decision(None, "not_notified")
    if customer is None:
        return Decision(None, "no_customer")
    now, delivery_id, language = event["ts"], event["delivery_id"], customer.language
    params: dict[str, Any] = {"delivery_id": delivery_id, "link": link(config, delivery_id, now),
                              "driver": driver_name or catalogue.render("your_driver", language)}  # fmt: skip
    kept = memory
    if event["type"] == "en_route":
        eta = event.get("eta")
        params["eta"] = (
            catalogue.render("eta_around", language, time=local_clock(eta, config.utc_offset_h))
            if isinstance(eta, int)
            else catalogue.render("no_eta", language)
        )
        kept = CustomerMemory(eta if isinstance(eta, int) else memory.last_eta, now, memory.arriving)
    if event["type"] == "failed":
        reason = event.get("failure_reason") or "other"
        name = f"customer_reason_{reason}"
        params["reason"] = catalogue.render(
            name if name in catalogue.replies else "customer_reason_other", language
        )
    message = compose(
        catalogue, template, customer, params,
        key=f"{event['type']}:{delivery_id}", reason=template, now_ms=now,
        window_is_open=window_open(last_inbound_ms, now, config),
        driver_id=event["driver_id"], delivery_id=delivery_id,
    )  # fmt: skip
    return Decision(message, "sent", kept)
