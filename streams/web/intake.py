"""The worker's own process serves the intake routes too, through the same handlers as ``whatsup ingest``.

One librdkafka producer per process (``AsyncProducer``, acks=all, idempotent) carries pings, delivery
events, webhooks and the dispatcher API's audit records; it is stopped with the worker, so queued records
are delivered first. A single-process deployment (the demo, the tests) needs nothing else; at fleet size
the intake runs in ``whatsup ingest`` processes and the worker's event loop is left to its agents.
"""

from __future__ import annotations

import asyncio
from typing import Any

from faust.web import Request, Response, View
from mode import Service

from connectors.whatsapp.producer import AsyncProducer
from streams.app import app, settings
from streams.ingest.counted import answered, answered_now
from streams.ingest.events import ROUTE as EVENTS_ROUTE
from streams.ingest.events import EventIntake
from streams.ingest.pings import ROUTE as PINGS_ROUTE
from streams.ingest.pings import PingIntake
from streams.ingest.reply import Reply
from streams.ingest.webhooks import META_ROUTE, TWILIO_ROUTE, Webhooks

producer = AsyncProducer(settings)
pings = PingIntake(settings, producer.send_all)
events = EventIntake(settings, producer.send_all)
webhooks = Webhooks(settings, producer.send_all)


@app.service
class IntakeProducerService(Service):
    """Tie the intake producer's life to the worker's: queued records are delivered on shutdown."""

    async def on_stop(self) -> None:
        await asyncio.to_thread(producer.stop)


def respond(view: View, reply: Reply) -> Response:
    """Turn a handler's reply into a Faust (aiohttp) response."""
    headers: Any = reply.headers or None
    if isinstance(reply.body, str):
        return view.text(reply.body, status=reply.status, headers=headers)
    return view.json(reply.body, status=reply.status, headers=headers)


@app.page(PINGS_ROUTE)
class PingsView(View):
    """Accept a batch of a driver's pings."""

    async def post(self, request: Request) -> Response:
        return respond(self, await answered(PINGS_ROUTE, pings.handle(request.headers, request.read)))


@app.page(EVENTS_ROUTE)
class DeliveryEventsView(View):
    """Accept delivery events from the order system and partners."""

    async def post(self, request: Request) -> Response:
        return respond(self, await answered(EVENTS_ROUTE, events.handle(request.headers, request.read)))


@app.page(META_ROUTE)
class MetaWebhookView(View):
    """Meta's webhook: the subscription check and signed notifications."""

    async def get(self, request: Request) -> Response:
        return respond(self, answered_now(META_ROUTE, webhooks.challenge(request.query)))

    async def post(self, request: Request) -> Response:
        return respond(self, await answered(META_ROUTE, self.take(request)))

    async def take(self, request: Request) -> Reply:
        # The body is read inside ``answered``, which answers one over the size limit with its reason code.
        return await webhooks.meta(await request.read(), request.headers.get("X-Hub-Signature-256"))


@app.page(TWILIO_ROUTE)
class TwilioWebhookView(View):
    """Twilio's WhatsApp webhook: inbound messages and status callbacks, as signed form posts."""

    async def post(self, request: Request) -> Response:
        return respond(self, await answered(TWILIO_ROUTE, self.take(request)))

    async def take(self, request: Request) -> Reply:
        body, signature = await request.read(), request.headers.get("X-Twilio-Signature")
        return await webhooks.twilio(str(request.url), request.query_string, body, signature)
