"""Each bug the fuzzing found (benches/fuzz.py, loadtest/fuzzing), as the input that found it.

Every test here failed before its fix: an exception escaping a handler (a 500), an agent or a decoder, or a
refusal without a reason code.
"""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import REGISTRY

from base.exceptions import SchemaError
from base.settings import Settings
from base.tokens import TokenError, VerifiedTokens
from connectors.whatsapp.normalize import Normalized, PayloadError, normalize_meta, normalize_twilio
from connectors.whatsapp.signatures import SignatureError, verify_meta, verify_twilio
from schemas.codecs import SCHEMA_NAMES, codec
from streams.console.accounts import _digest, _matching_step
from streams.console.api import Refused, _json_body
from streams.console.feed import ConsoleFeed, changelog_topic
from streams.console.fleet import Fleet, QueryError, parse_limit
from streams.console.incidents import IncidentQuery
from streams.deliveries.state import DriverState, LastFix
from streams.ingest.counted import answered
from streams.ingest.reply import Reply, error
from streams.pings.state import DriverPingState, Seen

T0 = 1_790_000_000_000
KEY = "k" * 32
PHONE = "5511987650000"


def test_seqs_far_apart_are_remembered_without_a_bitmap_of_the_gap() -> None:
    # A GpsPing with seq 2**62 after seq 0 (the API takes any seq below 2**63) built a 2**62-bit bitmap to
    # try a merge: MemoryError in clean_pings, the worker down, and down again on every replay.
    state = DriverPingState()
    assert state.remember("a", 0, T0, T0 - 86_400_000) is Seen.NEW
    assert state.remember("b", 2**62, T0, T0 - 86_400_000) is Seen.NEW
    assert state.remember("b", 2**62, T0, T0 - 86_400_000) is Seen.DUPLICATE
    assert DriverPingState.unpack(state.pack()).seq_blocks == state.seq_blocks


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_a_record_without_a_value_is_a_schema_error(name: str) -> None:
    # A tombstone (a Kafka record whose value is null) raised TypeError out of decode: track_drivers (on
    # gps.pings.clean), the conversation agent and erase_driver_states catch SchemaError only, and died.
    with pytest.raises(SchemaError):
        codec(name).decode(None)  # type: ignore[arg-type]


@pytest.mark.parametrize("header", ["sha256=\udcff" + "0" * 63, "sha256=\udcffabc", "\udcff"])
def test_a_meta_signature_that_is_not_ascii_is_refused(header: str) -> None:
    # aiohttp hands header bytes that are not UTF-8 over as surrogates; encoding them raised (a 500).
    with pytest.raises(SignatureError):
        verify_meta("secret", b"{}", header)


def test_a_twilio_signature_that_is_not_ascii_is_refused() -> None:
    with pytest.raises(SignatureError):
        verify_twilio("token", "https://x/webhooks/twilio", [], "\udcff9IEZps2dB7OiEPkztrMtk1kH5Ik=")


def test_a_token_that_is_not_ascii_is_malformed() -> None:
    # "Authorization: Bearer \xff.a.AAAA": the signing input held a surrogate and HMAC-ing it raised (a 500).
    with pytest.raises(TokenError) as refused:
        VerifiedTokens("s" * 32).driver_of("\udcff.a.AAAA")
    assert refused.value.reason == "malformed_token"


def _meta(message: dict[str, Any] | None = None, **value: Any) -> bytes:
    value = value or {"messages": [message]}
    changes = [{"value": value}]
    return json.dumps({"object": "whatsapp_business_account", "entry": [{"changes": changes}]}).encode()


def _encodes(normalized: Normalized) -> None:
    """Every record normalize returns must encode: the webhook writes them to Kafka before its 200."""
    for inbound in normalized.inbound:
        codec("WhatsAppEvent").encode(inbound.record)
    for update in normalized.statuses:
        codec("WhatsAppEvent").encode(update.record)
        codec("MessageStatus").encode(update.status)


@pytest.mark.parametrize(
    "body",
    [
        _meta(messages=5),  # TypeError: 'int' object is not iterable
        _meta(statuses=True),
        _meta({"id": "w1", "from": PHONE, "type": "zzz", "errors": [1]}),  # AttributeError on errors[0].get
        _meta({"id": "w2", "from": PHONE, "type": "text", "text": {"body": "oi"}, "timestamp": "9" * 20}),
        _meta({"id": "w3", "from": PHONE, "type": "location", "location": {"latitude": 10**400}}),
        _meta(
            statuses=[{"id": "s1", "recipient_id": PHONE, "status": "failed", "errors": [{"code": 2**40}]}]
        ),
        _meta(statuses=[{"id": "s2", "recipient_id": PHONE, "errors": [{"code": True}]}]),
    ],
)
def test_signed_meta_bodies_of_the_wrong_shape_normalize_to_records_that_encode(body: bytes) -> None:
    _encodes(normalize_meta(body, KEY, T0))


@pytest.mark.parametrize(
    "body",
    [
        b'{"entry": [' + b"1" * 5000 + b"]}",  # int() digit limit: ValueError, not a JSONDecodeError
        _meta({"id": "\ud800", "from": PHONE, "type": "text", "text": {"body": "oi"}}),  # Avro: not UTF-8
        _meta({"id": "w4", "from": PHONE, "type": "text", "text": {"body": "a\udfffb"}}),
        # The same surrogate as raw bytes: json.loads decodes bytes with errors="surrogatepass".
        b'{"entry": [{"changes": [{"value": {"messages": [{"id": "\xed\xbf\xbf", "from": "1"}]}}]}]}',
    ],
)
def test_signed_meta_bodies_that_are_not_valid_json_text_are_malformed(body: bytes) -> None:
    with pytest.raises(PayloadError) as refused:
        normalize_meta(body, KEY, T0)
    assert refused.value.reason == "malformed_json"


@pytest.mark.parametrize("code", ["²", "\u0661\u0662", "9" * 5000, "99999999999"])
def test_a_twilio_error_code_that_is_not_a_small_number_is_dropped(code: str) -> None:
    # "²".isdigit() is True and int("²") raises; a code past 2**31 does not fit MessageStatus.error_code.
    params = {"MessageSid": "SM1", "MessageStatus": "failed", "To": f"whatsapp:+{PHONE}", "ErrorCode": code}
    normalized = normalize_twilio(params, KEY, T0)
    _encodes(normalized)
    assert normalized.statuses[0].status["error_code"] is None


def test_an_error_header_holds_no_control_character() -> None:
    # {"pings": [], "/\x1b": {}}: the unknown field's name went into X-Bad-Field as it was, aiohttp refused
    # to write the header, and the client's connection was dropped without an answer.
    for field in ("/\x1b\r\nSet-Cookie: x=1 é", "pings[0].\ud800"):
        value = error(400, "bad_request", "unknown field", **{"X-Bad-Field": field}).headers["X-Bad-Field"]
        assert value.isascii() and value.isprintable() and "\r" not in value
    assert error(400, "bad_request", "", **{"X-Bad-Field": "pings[0].ping_id"}).headers == {
        "X-Bad-Field": "pings[0].ping_id"
    }


def test_an_error_message_naming_a_lone_surrogate_can_be_written_as_json() -> None:
    # {"pings": [], "\ud800": 1}: the worker's JSON writer (orjson) refused the message naming the field.
    reply = error(400, "bad_request", "pings[0].\ud800: unknown field")
    assert orjson.loads(orjson.dumps(reply.body))["message"] == "pings[0].\\ud800: unknown field"


def test_a_body_over_the_size_limit_is_a_reasoned_413() -> None:
    # POST /v1/pings with 4 MiB + 3 bytes: aiohttp raised HTTPRequestEntityTooLarge while the handler read
    # the body, and `answered` turned it into a 500.
    async def too_large() -> Reply:
        raise web.HTTPRequestEntityTooLarge(max_size=10, actual_size=11)

    reply = asyncio.run(answered("/v1/pings", too_large()))
    assert reply.status == 413 and isinstance(reply.body, dict) and reply.body["error"] == "body_too_large"


def test_a_totp_code_of_other_digits_matches_no_step() -> None:
    # Arabic-Indic digits matched \d{6}; hmac.compare_digest refuses non-ASCII str: a 500 on sign-in.
    assert _matching_step("JBSWY3DPEHPK3PXP", "\u0661\u0662\u0663\u0664\u0665\u0666", 59_000_000) is None


def test_a_session_cookie_that_is_not_utf8_is_no_session() -> None:
    # Cookie: whatsup_console=\xff\xfe reached sha256(token.encode()) as surrogates: a 500 on every route.
    assert len(_digest("\udcff\udcfe")) == 64


@pytest.mark.parametrize("raw", ["²", "\u0661", "9" * 5000])
def test_a_limit_of_other_digits_is_a_bad_parameter(raw: str) -> None:
    with pytest.raises(QueryError):
        parse_limit(raw)


@pytest.mark.parametrize("since", ["²", "9" * 5000])
def test_a_since_of_other_digits_is_a_bad_parameter(since: str) -> None:
    with pytest.raises(QueryError):
        IncidentQuery.parse({"since": since})


@pytest.mark.parametrize(
    ("content_type", "body", "status", "reason"),
    [
        # JSON is UTF-8 (RFC 8259), whatever the charset says; aiohttp looked "bogus" up: LookupError, a 500.
        ("application/json; charset=bogus", b'{"error": "none"}', 200, "none"),
        ("application/json", b"[" * 70_000, 413, "body_too_large"),  # aiohttp's own text 413
        ("application/json", b"[" * 60_000 + b"]" * 60_000, 413, "body_too_large"),
        ("application/json", b"[" * 20_000 + b"]" * 20_000, 400, "malformed_json"),  # RecursionError: 500
    ],
)
def test_the_consoles_json_bodies_are_read_or_refused_with_a_reason(
    content_type: str, body: bytes, status: int, reason: str
) -> None:
    async def echo(request: web.Request) -> web.Response:
        try:
            return web.json_response(await _json_body(request))
        except Refused as refused:
            return web.json_response(refused.body(), status=refused.status)

    async def run() -> tuple[int, Any]:
        app = web.Application(client_max_size=64 * 1024)  # the console's limit
        app.router.add_post("/", echo)
        async with TestClient(TestServer(app)) as client:
            answer = await client.post("/", data=body, headers={"Content-Type": content_type})
            return answer.status, (await answer.json())["error"]

    assert asyncio.run(run()) == (status, reason)


def test_an_undecodable_alert_is_skipped_and_counted_by_the_console_feed() -> None:
    # Bad bytes on alerts raised SchemaError out of ConsoleFeed.run: the feed task ended, and the console
    # went on answering from a fleet and incidents that never changed again.
    settings = Settings.from_env({"WHATSUP_TOPIC_PREFIX": "t."})
    feed = ConsoleFeed(settings)
    labels = {"topic": "alerts", "reason": "malformed"}
    before = REGISTRY.get_sample_value("whatsup_console_records_skipped_total", labels) or 0.0
    for value in (b"\xc3\x01 not avro", None):
        feed._apply(SimpleNamespace(topic="t.alerts", key=b"drv", value=value))
    assert REGISTRY.get_sample_value("whatsup_console_records_skipped_total", labels) == before + 2


@pytest.mark.parametrize("h3_r9", [0, -1, 2**63 - 1, 0x8075FFFFFFFFFFF])  # the last: a valid cell of res 0
def test_a_driver_state_with_no_res9_cell_is_listed_without_a_cell(h3_r9: int) -> None:
    # A CleanPing with h3_r9 = 0 on gps.pings.clean reached the changelog through track_drivers; the
    # console's feed raised H3CellInvalidError applying it and never read another record (nor after a
    # restart: the changelog is read from its start).
    fleet = Fleet()
    fleet.apply("drv", DriverState(last_fix=LastFix(T0, -23.55, -46.63, h3_r9, None, None), last_update=T0))
    assert fleet.rows["drv"].cell is None and fleet.rows["drv"].public()["driver_id"] == "drv"


def test_an_unreadable_driver_state_is_skipped_and_counted_by_the_console_feed() -> None:
    settings = Settings.from_env({"WHATSUP_TOPIC_PREFIX": "t.", "WHATSUP_APP_ID": "a"})
    feed = ConsoleFeed(settings)
    labels = {"topic": changelog_topic(settings), "reason": "unreadable"}
    before = REGISTRY.get_sample_value("whatsup_console_records_skipped_total", labels) or 0.0
    feed._apply(SimpleNamespace(topic=changelog_topic(settings), key=b"drv", value=b"\x02garbage"))
    assert REGISTRY.get_sample_value("whatsup_console_records_skipped_total", labels) == before + 1


@pytest.mark.parametrize("field", ["type", "failure_reason"])
@pytest.mark.parametrize("value", [[-4.66e-85, -4.66e-85], {"a": 1}])
def test_an_event_type_or_failure_reason_that_is_a_list_or_object_is_a_bad_request(
    field: str, value: Any
) -> None:
    from streams.deliveries.intake import parse_events
    from streams.pings.intake import BadRequest

    event = {"event_id": "¡", "delivery_id": "Ø", "driver_id": "d", "type": "failed", "ts": 1_796_656_050_000}
    with pytest.raises(BadRequest) as refused:
        parse_events(json.dumps({**event, field: value}).encode(), "key:x", 10)
    assert refused.value.field == f"event.{field}"


def test_a_rejected_ping_that_does_not_fit_its_schema_again_is_dead_lettered_without_it() -> None:
    from streams.pings.agents import encode_rejected

    ping = {"schema_version": 6_442_450_943, "ping_id": "p", "driver_id": "d", "device_ts": -8, "lat": 0.0,
            "lon": 51.0, "accuracy_m": None, "speed_mps": None, "heading": None, "battery": None, "seq": None,
            "source": "app", "received_ts": 1}  # fmt: skip
    record = {"reason": "too_old", "detail": "older than the horizon", "driver_id": "d", "ping_id": "p",
              "ping": ping, "raw_payload": None, "source_topic": "gps.pings.raw", "source_partition": 3,
              "source_offset": 41, "rejected_ts": 1}  # fmt: skip
    with pytest.raises(SchemaError):
        codec("RejectedPing").encode(record)
    letter = codec("RejectedPing").decode(encode_rejected(record))
    assert letter["ping"] is None and letter["reason"] == "too_old" and letter["source_offset"] == 41
    assert letter["detail"].startswith("older than the horizon; the ping is left out")
