"""The intake routes' requests (``whatsup ingest`` and the worker serve the same), mostly malformed.

Pings and delivery events carry JSON bodies from ``json_inputs``; Meta's webhook carries notifications of
its documented shape, broken, and is signed over the exact bytes sent (or not, or wrongly), so malformed
bodies reach the normalizer; Twilio's carries form posts signed for its public URL.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qsl, urlencode

from hypothesis import strategies as st

from base.tokens import issue_driver_token
from base.tracking import make_token
from connectors.whatsapp.signatures import meta_signature, twilio_signature
from loadtest.fuzzing.json_inputs import encodable, json_bodies, text_values, weighted
from loadtest.fuzzing.requests import (
    Credentials,
    Endpoint,
    Headers,
    Request,
    content_type,
    header,
    path_ids,
    query_strings,
)

META_ROUTE, TWILIO_ROUTE = "/webhooks/whatsapp", "/webhooks/twilio"


def _driver_tokens(c: Credentials) -> st.SearchStrategy[bytes]:
    ids = st.one_of(st.just(c.driver_id), st.text(encodable, min_size=1, max_size=20), st.just("é" * 128))
    return ids.map(lambda d: f"Bearer {issue_driver_token(c.token_secret, d, 3600)}".encode())


def _ping_documents() -> st.SearchStrategy[Any]:
    now = int(time.time() * 1000)
    required = {
        "ping_id": st.text(min_size=1, max_size=20),
        "ts": st.integers(now - 60_000, now),
        "lat": st.floats(-90, 90),
        "lon": st.floats(-180, 180),
    }
    optional = {
        "accuracy_m": st.floats(0, 200),
        "speed_mps": st.floats(0, 60),
        "heading": st.floats(0, 360),
        "battery": st.floats(0, 1),
        "seq": st.integers(0, 2**40),
    }
    ping = st.fixed_dictionaries(required, optional=optional)
    return st.fixed_dictionaries({"pings": st.lists(ping, max_size=4)})


def _event_documents() -> st.SearchStrategy[Any]:
    now = int(time.time() * 1000)
    types = st.sampled_from(
        ["assigned", "picked_up", "en_route", "arrived", "delivered", "failed", "cancelled"]
    )
    ids = st.text(min_size=1, max_size=12)
    required = {"event_id": ids, "delivery_id": ids, "driver_id": ids, "type": types,
                "ts": st.integers(now - 60_000, now)}  # fmt: skip
    optional = {
        "pickup_lat": st.floats(-90, 90),
        "pickup_lon": st.floats(-180, 180),
        "dropoff_lat": st.floats(-90, 90),
        "dropoff_lon": st.floats(-180, 180),
        "promised_at": st.integers(now, now + 3_600_000),
        "customer_ref": ids,
        "note": st.text(max_size=40),
    }
    event = st.fixed_dictionaries(required, optional=optional)
    return st.one_of(event, st.fixed_dictionaries({"events": st.lists(event, min_size=1, max_size=3)}))


def _meta_documents(phone: str) -> st.SearchStrategy[Any]:
    """Draw Meta notifications of the documented shape: messages of every type, and statuses."""
    senders = st.one_of(
        st.just(phone.lstrip("+")), st.text(alphabet="0123456789+ -", max_size=18), text_values()
    )
    kinds = st.sampled_from(
        ["text", "location", "button", "interactive", "reaction", "image", "unknown", "zzz"]
    )
    bodies = st.fixed_dictionaries(
        {
            "body": text_values(),
            "latitude": st.floats(-90, 90),
            "longitude": st.floats(-180, 180),
            "text": text_values(),
            "payload": text_values(),
            "type": st.sampled_from(["button_reply", "list_reply"]),
            "button_reply": st.fixed_dictionaries({"id": text_values(), "title": text_values()}),
            "emoji": text_values(),
            "message_id": text_values(),
        }
    )

    def message(args: tuple[str, str, str, Any, str]) -> dict[str, Any]:
        sender, message_id, kind, body, ts = args
        return {"from": sender, "id": message_id, "timestamp": ts, "type": kind, kind: body}

    messages = st.tuples(senders, st.text(min_size=1, max_size=16), kinds, bodies, text_values()).map(message)
    statuses = st.fixed_dictionaries(
        {"id": st.text(min_size=1, max_size=12), "recipient_id": senders, "timestamp": text_values(),
         "status": st.sampled_from(["sent", "delivered", "read", "failed", "zzz"])},
        optional={"errors": st.lists(st.fixed_dictionaries({"code": st.integers(), "title": text_values()}),
                                     max_size=2),
                  "biz_opaque_callback_data": text_values()},
    )  # fmt: skip
    value = st.fixed_dictionaries(
        {"messaging_product": st.just("whatsapp"), "metadata": st.just({"phone_number_id": "1"})},
        optional={"messages": st.lists(messages, max_size=3), "statuses": st.lists(statuses, max_size=2)},
    )
    change = st.fixed_dictionaries({"field": st.just("messages"), "value": value})
    entry = st.fixed_dictionaries({"id": st.just("1"), "changes": st.lists(change, min_size=1, max_size=2)})
    return st.fixed_dictionaries(
        {"object": st.just("whatsapp_business_account"), "entry": st.lists(entry, min_size=1, max_size=2)}
    )


def pings(c: Credentials, limit: int) -> st.SearchStrategy[Request]:
    """``POST /v1/pings``: batches of pings, mostly with a valid driver token."""
    return st.builds(
        lambda auth, ctype, body: Request("POST", "/v1/pings", auth + ctype, body),
        header("Authorization", _driver_tokens(c)),
        content_type(),
        json_bodies(_ping_documents(), limit),
    )


def delivery_events(c: Credentials, limit: int) -> st.SearchStrategy[Request]:
    """``POST /v1/deliveries/events``: one event or a batch, mostly with a key that may post."""
    keys = st.sampled_from([c.ingest_key, c.partner_key, c.internal_key, c.dispatcher_key]).map(str.encode)
    return st.builds(
        lambda key, ctype, body: Request("POST", "/v1/deliveries/events", key + ctype, body),
        header("X-API-Key", keys),
        content_type(),
        json_bodies(_event_documents(), limit),
    )


def meta_challenge(c: Credentials) -> st.SearchStrategy[Request]:
    """``GET /webhooks/whatsapp``: Meta's subscription check, its three parameters of any value."""
    names = st.sampled_from(["hub.mode", "hub.challenge", "hub.verify_token"])
    values = st.one_of(text_values(), st.sampled_from(["subscribe", c.verify_token]))
    pairs = st.lists(st.tuples(names, values), max_size=5).map(urlencode)
    query = st.one_of(
        pairs,
        query_strings(),
        st.just(f"hub.mode=subscribe&hub.challenge=%ff&hub.verify_token={c.verify_token}"),
    )
    return query.map(lambda q: Request("GET", f"{META_ROUTE}?{q}"))


def _meta_bodies(c: Credentials, limit: int) -> st.SearchStrategy[bytes]:
    return json_bodies(_meta_documents(c.driver_phone), limit)


def meta_signed(c: Credentials, limit: int) -> st.SearchStrategy[Request]:
    """``POST /webhooks/whatsapp`` correctly signed: malformed notifications reach the normalizer."""

    def signed(args: tuple[Headers, bytes]) -> Request:
        ctype, body = args
        signature = meta_signature(c.app_secret, body).encode()
        return Request("POST", META_ROUTE, (("X-Hub-Signature-256", signature), *ctype), body)

    return st.tuples(content_type(), _meta_bodies(c, limit)).map(signed)


def meta_unsigned(c: Credentials, limit: int) -> st.SearchStrategy[Request]:
    """``POST /webhooks/whatsapp`` unsigned or badly signed: no header, garbage, another body's signature."""

    def badly(args: tuple[bytes, int, Headers, bytes]) -> Request:
        other, kind, ctype, body = args
        right = meta_signature(c.app_secret, body)
        signatures: list[Headers] = [
            (), (("X-Hub-Signature-256", meta_signature(c.app_secret, other).encode()),),
            (("X-Hub-Signature-256", meta_signature("wrong-secret", body).encode()),),
            (("X-Hub-Signature-256", right.replace("sha256=", "sha1=").encode()),),
            (("X-Hub-Signature-256", right[:-1].encode()),),
            (("X-Hub-Signature-256", b"sha256=\xff" + right[8:].encode()),),
            (("X-Hub-Signature-256", b"sha256="),), (("X-Hub-Signature-256", b"="),),
        ]  # fmt: skip
        return Request("POST", META_ROUTE, signatures[kind % len(signatures)] + ctype, body)

    zeros = header("X-Hub-Signature-256", st.just(b"sha256=" + b"0" * 64), odds=1)
    garbage = st.tuples(zeros, _meta_bodies(c, limit)).map(lambda a: Request("POST", META_ROUTE, a[0], a[1]))
    return st.one_of(
        st.tuples(st.binary(max_size=16), st.integers(0, 7), content_type(), _meta_bodies(c, limit)).map(
            badly
        ),
        garbage,
    )


FORM_NAMES = (
    "MessageSid", "SmsSid", "From", "To", "Body", "MessageStatus", "SmsStatus", "ErrorCode", "Latitude",
    "Longitude", "NumMedia", "ButtonText", "ButtonPayload", "AccountSid",
)  # fmt: skip


def _twilio_forms(c: Credentials) -> st.SearchStrategy[bytes]:
    """Draw Twilio form bodies: its documented fields of odd values, unknown fields, raw broken encodings."""
    values = st.one_of(
        text_values(),
        st.sampled_from([f"whatsapp:{c.driver_phone}", c.driver_phone, "received", "delivered", "undelivered",
                         "failed", "63016", "²", "1e400", "nan", "SM" + "0" * 32]),
    )  # fmt: skip
    names = st.one_of(st.sampled_from(FORM_NAMES), st.text(encodable, max_size=10))
    form = st.lists(st.tuples(names, values), max_size=8).map(lambda pairs: urlencode(pairs).encode())
    raw = st.sampled_from(
        [b"MessageSid=%ff&From=%fe", b"MessageSid=SM1&From=\xff", b"&&&", b"=", b"MessageSid", b"%",
         b"MessageSid=SM1;From=x", b"MessageSid=SM1&MessageSid=SM2&From=whatsapp:%2B5511999990000"]
    )  # fmt: skip
    return weighted((8, form), (1, raw), (1, st.binary(max_size=256)))


def _twilioquery_strings() -> st.SearchStrategy[str]:
    # Only characters that a URL carries as they are: the server signs the query string it decoded.
    safe = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.", max_size=12)
    return st.one_of(st.just(""), safe.map(lambda key: f"message_key={key}"))


def _twilio_signed(c: Credentials, query: str, body: bytes) -> bytes:
    url = f"{c.twilio_url}?{query}" if query else c.twilio_url
    try:
        params = parse_qsl(body.decode(), keep_blank_values=True)
    except UnicodeDecodeError:
        params = []
    return twilio_signature(c.twilio_token, url, params).encode()


def twilio_signed(c: Credentials) -> st.SearchStrategy[Request]:
    """``POST /webhooks/twilio`` correctly signed for the public URL: malformed forms reach the normalizer."""
    ctype = st.sampled_from([b"application/x-www-form-urlencoded", b"application/json", b"text/plain"])

    def signed(args: tuple[str, bytes, bytes]) -> Request:
        query, kind, body = args
        headers = (("X-Twilio-Signature", _twilio_signed(c, query, body)), ("Content-Type", kind))
        return Request("POST", f"{TWILIO_ROUTE}?{query}" if query else TWILIO_ROUTE, headers, body)

    return st.tuples(_twilioquery_strings(), ctype, _twilio_forms(c)).map(signed)


def twilio_unsigned(c: Credentials) -> st.SearchStrategy[Request]:
    """``POST /webhooks/twilio`` unsigned, badly signed, or signed for another URL."""

    def badly(args: tuple[int, bytes]) -> Request:
        kind, body = args
        right = _twilio_signed(c, "", body)
        signatures: list[Headers] = [
            (), (("X-Twilio-Signature", b""),), (("X-Twilio-Signature", right[:-2]),),
            (("X-Twilio-Signature", b"\xff" + right),), (("X-Twilio-Signature", right.lower()),),
            (("X-Twilio-Signature", twilio_signature(c.twilio_token, "http://elsewhere/", []).encode()),),
        ]  # fmt: skip
        return Request("POST", TWILIO_ROUTE, signatures[kind % len(signatures)], body)

    return st.tuples(st.integers(0, 5), _twilio_forms(c)).map(badly)


def intake_endpoints(c: Credentials, limit: int) -> list[Endpoint]:
    """The intake routes (``whatsup ingest`` and the worker serve the same), named for the report."""
    return [
        ("POST /v1/pings", lambda: pings(c, limit)),
        ("POST /v1/deliveries/events", lambda: delivery_events(c, limit)),
        ("GET /webhooks/whatsapp", lambda: meta_challenge(c)),
        ("POST /webhooks/whatsapp, unsigned or badly signed", lambda: meta_unsigned(c, limit)),
        ("POST /webhooks/whatsapp, signed", lambda: meta_signed(c, limit)),
        ("POST /webhooks/twilio, unsigned or badly signed", lambda: twilio_unsigned(c)),
        ("POST /webhooks/twilio, signed", lambda: twilio_signed(c)),
    ]


def tracking_links(c: Credentials) -> st.SearchStrategy[Request]:
    """``GET /t/{token}``: any path segment, tokens signed for deliveries nobody holds, expired, tampered or
    signed with another secret, with any Accept, Accept-Language and query string."""
    now = int(time.time() * 1000)
    delivery = st.text(encodable, min_size=1, max_size=60)
    signed = st.builds(
        make_token,
        st.sampled_from([c.token_secret, "another-secret-" + "x" * 20]),
        delivery,
        st.sampled_from([now + 3_600_000, now - 1_000, 0, 2**62]),
    )
    tampered = signed.map(lambda t: t[:-3] + "AAA" if not t.endswith("AAA") else t[:-3] + "BBB")
    tokens = st.one_of(path_ids(), signed, tampered)
    accept = header(
        "Accept", st.sampled_from([b"application/json", b"text/html", b"*/*", b"application/xml"]), odds=2
    )
    languages = header("Accept-Language", st.sampled_from([b"pt-BR", b"es;q=0.9,en", b"zz", b";;;"]), odds=2)
    query = st.sampled_from(["", "?format=json", "?format=xml", "?format", "?%ff=1"])
    return st.builds(
        lambda t, a, lang, q: Request("GET", f"/t/{t}{q}", a + lang), tokens, accept, languages, query
    )


def tracking_endpoints(c: Credentials) -> list[Endpoint]:
    """The customers' tracking links, served by ``whatsup ingest`` only."""
    return [("GET /t/{token}", lambda: tracking_links(c))]
