"""``GET /t/{token}``: a customer's tracking link, answered with a small page or JSON.

The token (``base/tracking.py``) names one delivery until it expires; anything else, and a delivery no
worker holds any more, is a 404 with no hint of why. The delivery's status and ETA are the worker's own,
read through the dispatcher API (``GET /v1/deliveries/{id}`` with the internal key, routed to the worker that
holds it), so the page shows the same ETA the customer's messages were built from. The driver is shown by
first name only, never by phone, and their position only while the order is on its way and within
``WHATSUP_TRACKING_NEAR_M`` of the drop-off. JSON for ``Accept: application/json`` or ``?format=json``, else
the page, in pt-BR, en or es by ``Accept-Language``.
"""

from __future__ import annotations

import html
import math
import time
from typing import Any
from urllib.parse import quote

import httpx

from base import tls
from base.settings import Settings
from base.tracking import read_token
from connectors.whatsapp.catalogue import local_clock
from connectors.whatsapp.redis_pool import shared_redis
from connectors.whatsapp.registry import Registry
from streams.conversations.dispatcher import internal_api_key
from streams.ingest.reply import Reply, error

ROUTE = "/t/{token}"
MOVING = ("picked_up", "en_route")
NOT_FOUND = "no delivery behind this link"
WORDS = {
    "pt-BR": {"title": "Sua entrega", "assigned": "Pedido recebido",
              "accepted": "Entregador a caminho da coleta", "picked_up": "Coletado", "en_route": "A caminho",
              "arrived": "O entregador chegou",
              "delivered": "Entregue", "failed": "Não entregue", "cancelled": "Cancelado",
              "declined": "Aguardando entregador", "eta": "Previsão", "driver": "Entregador",
              "updated": "Atualizado às", "where": "Onde está"},
    "en": {"title": "Your delivery", "assigned": "Order received", "accepted": "Driver heading to the pickup",
           "picked_up": "Picked up", "en_route": "On the way", "arrived": "The driver is at the door",
           "delivered": "Delivered", "failed": "Not delivered", "cancelled": "Cancelled",
           "declined": "Waiting for a driver", "eta": "Expected at", "driver": "Driver",
           "updated": "Updated at", "where": "Where it is"},
    "es": {"title": "Tu entrega", "assigned": "Pedido recibido", "accepted": "Repartidor yendo a recoger",
           "picked_up": "Recogido", "en_route": "En camino", "arrived": "El repartidor llegó",
           "delivered": "Entregado", "failed": "No entregado", "cancelled": "Cancelado",
           "declined": "Esperando repartidor", "eta": "Llegada prevista", "driver": "Repartidor",
           "updated": "Actualizado a las", "where": "Dónde está"},
}  # fmt: skip


def _metres(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance in metres."""
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * 6_371_000 * math.asin(math.sqrt(h))


def language(accept_language: str) -> str:
    """pt-BR, en or es from an Accept-Language header (pt-BR when none matches)."""
    for part in accept_language.lower().split(","):
        tag = part.split(";")[0].strip()
        if tag.startswith("pt"):
            return "pt-BR"
        if tag.startswith("es"):
            return "es"
        if tag.startswith("en"):
            return "en"
    return "pt-BR"


def page(view: dict[str, Any], lang: str, utc_offset_h: float) -> str:
    """The tracking page: the status, the ETA, the driver's first name, where they are when near."""
    words = WORDS[lang]
    rows = [f"<h1>{words['title']} {html.escape(view['delivery_id'])}</h1>",
            f"<p class=status>{html.escape(words.get(view['status'], view['status']))}</p>"]  # fmt: skip
    if view["eta"] is not None and view["status"] not in ("delivered", "failed", "cancelled"):
        rows.append(f"<p>{words['eta']}: <b>{local_clock(view['eta'], utc_offset_h)}</b></p>")
    if view["driver"]:
        rows.append(f"<p>{words['driver']}: {html.escape(view['driver'])}</p>")
    if view["position"] is not None:
        lat, lon = view["position"]["lat"], view["position"]["lon"]
        rows.append(f"<p>{words['where']}: {lat:.4f}, {lon:.4f}</p>")
    rows.append(f"<p class=muted>{words['updated']} {local_clock(view['shown_at'], utc_offset_h)}</p>")
    return (
        f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta http-equiv="refresh" content="30"><meta name="robots" content="noindex">'
        f"<title>{words['title']}</title><style>body{{font-family:sans-serif;max-width:30em;margin:2em auto;"
        "padding:0 1em}.status{font-size:1.4em}.muted{color:#777}</style></head><body>"
        + "".join(rows)
        + "</body></html>"
    )


class Tracking:
    """Answer tracking links from the workers' view of the delivery, through the dispatcher API."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.secrets = tuple(s for s in (settings.token_secret, *settings.token_secrets_accepted) if s)
        self.key = internal_api_key(settings.api_keys)
        self.base = (
            settings.dispatcher_api_url or f"{tls.scheme(settings)}://127.0.0.1:{settings.web_port}"
        ).rstrip("/")
        self._http: httpx.AsyncClient | None = None
        self._registry: Registry | None = None

    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(verify=tls.client_verify(self.settings), timeout=5.0)
        return self._http

    def registry(self) -> Registry | None:
        if self._registry is None and self.settings.phone_hash_key:
            client = shared_redis(self.settings.redis_url)
            self._registry = Registry(client, self.settings.phone_hash_key, self.settings.topic_prefix)
        return self._registry

    async def _get(self, path: str) -> dict[str, Any] | None:
        """The dispatcher API's JSON for ``path``; None when it has nothing (any 4xx: an id it cannot even
        read names no delivery either); raises for anything else."""
        assert self.key is not None
        answer = await self.http().get(f"{self.base}{path}", headers={"X-API-Key": self.key})
        if 400 <= answer.status_code < 500:
            return None
        answer.raise_for_status()
        body = answer.json()
        return body if isinstance(body, dict) else None

    async def view(self, token: str, now_ms: int) -> dict[str, Any] | None:
        """What the customer may see of the delivery a token names; None when there is nothing to show."""
        delivery_id = read_token(self.secrets, token, now_ms)
        if delivery_id is None:
            return None
        delivery = await self._get(f"/v1/deliveries/{quote(delivery_id, safe='')}")
        if delivery is None:
            return None
        driver_id, status = str(delivery["driver_id"]), str(delivery["status"])
        position = None
        if status in MOVING:
            state = await self._get(f"/v1/drivers/{quote(driver_id, safe='')}") or {}
            position = self._near(state, delivery_id)
        registry = self.registry()
        driver = await registry.driver_by_id(driver_id) if registry is not None else None
        return {
            "delivery_id": delivery_id,
            "status": status,
            "eta": delivery.get("eta"),
            "promised_at": delivery.get("promised_at"),
            "updated_at": delivery.get("updated_at"),
            "driver": (driver.first_name or None) if driver is not None else None,
            "position": position,
            "shown_at": now_ms,
        }

    def _near(self, state: dict[str, Any], delivery_id: str) -> dict[str, Any] | None:
        fix = state.get("last_fix")
        mine = [d for d in state.get("active_deliveries") or [] if d.get("delivery_id") == delivery_id]
        if not isinstance(fix, dict) or not mine or not isinstance(mine[0].get("dropoff"), dict):
            return None
        dropoff = (float(mine[0]["dropoff"]["lat"]), float(mine[0]["dropoff"]["lon"]))
        where = (float(fix["lat"]), float(fix["lon"]))
        if _metres(where, dropoff) > self.settings.tracking_near_m:
            return None
        return {"lat": round(where[0], 5), "lon": round(where[1], 5), "ts": fix.get("ts")}

    async def answer(self, token: str, accept: str, accept_language: str, wants_json: bool) -> Reply:
        """Answer one tracking request: the page or JSON, 404 for a link that names nothing."""
        if not self.secrets or self.key is None:
            return error(
                503, "tracking_disabled", "tracking links need WHATSUP_TOKEN_SECRET and an internal key"
            )
        try:
            view = await self.view(token, int(time.time() * 1000))
        except (httpx.HTTPError, httpx.InvalidURL, ValueError, KeyError, TypeError) as exc:
            return error(503, "unavailable", f"the delivery could not be read: {type(exc).__name__}")
        if view is None:
            return error(404, "not_found", NOT_FOUND)
        if wants_json or "application/json" in accept:
            return Reply(200, view, {"Cache-Control": "no-store"})
        body = page(view, language(accept_language), self.settings.display_utc_offset_h)
        return Reply(200, body, {"Cache-Control": "no-store", "Content-Type": "text/html; charset=utf-8"})
