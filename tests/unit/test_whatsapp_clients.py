"""WhatsAppCloudClient and TwilioClient against the local sandboxes: success, every error class, callbacks."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest

from connectors.sandbox.common import meta_signature, twilio_signature
from connectors.sandbox.run import Sandboxes
from connectors.whatsapp.cloud import WhatsAppCloudClient
from connectors.whatsapp.errors import (
    PermanentSendError,
    RateLimited,
    SendError,
    TransientSendError,
    WindowClosed,
)
from connectors.whatsapp.twilio import TwilioClient
from tests.unit.sandbox_helpers import (
    APP_SECRET,
    AUTH,
    NUMBER_ID,
    SID,
    TOKEN,
    callback_receiver,
    message,
    sandboxes,
    wait_for,
)

Test = Callable[[Sandboxes, httpx.AsyncClient], Awaitable[None]]


def run(test: Test, callback_url: str | None = None, timeout_s: float = 5.0, **kwargs: Any) -> None:
    async def main() -> None:
        async with sandboxes(callback_url, **kwargs) as boxes, httpx.AsyncClient(timeout=timeout_s) as http:
            await test(boxes, http)

    asyncio.run(main())


def meta_client(boxes: Sandboxes, http: httpx.AsyncClient, token: str = TOKEN) -> WhatsAppCloudClient:
    return WhatsAppCloudClient(
        http, api_url=boxes.meta_url, version="v21.0", phone_number_id=NUMBER_ID, token=token
    )


def twilio_client(boxes: Sandboxes, http: httpx.AsyncClient, callback: str | None = None) -> TwilioClient:
    return TwilioClient(
        http,
        api_url=boxes.twilio_url,
        account_sid=SID,
        auth_token=AUTH,
        from_number="+15550001111",
        content_sids={"whatsup_update": "HX" + "a" * 32},
        status_callback=callback,
    )


async def inject(boxes: Sandboxes, base: str, **fault: Any) -> None:
    async with httpx.AsyncClient() as control:
        answer = await control.post(f"{base}/_sandbox/faults", json=fault)
        answer.raise_for_status()


async def recipient(base: str, to: str, **flags: bool) -> None:
    async with httpx.AsyncClient() as control:
        (await control.post(f"{base}/_sandbox/recipients", json={"to": to, **flags})).raise_for_status()


def test_meta_sends_text_buttons_and_templates_and_logs_them() -> None:
    async def test(boxes: Sandboxes, http: httpx.AsyncClient) -> None:
        client = meta_client(boxes, http)
        await client.start()
        ids = [
            await client.send(message("t"), as_template=False),
            await client.send(message("b", buttons=["Arrived", "Stuck in traffic"]), as_template=False),
            await client.send(
                message("p", template="eta_update", params=["D-1", "12:30", "https://track.example/t/x"]),
                as_template=True,
            ),
        ]
        await client.stop()
        assert all(i.startswith("wamid.") for i in ids) and len(set(ids)) == 3
        log = boxes.meta.state.messages
        assert [m["type"] for m in log] == ["text", "interactive", "template"]
        assert [m["biz_opaque_callback_data"] for m in log] == ["t", "b", "p"]
        assert log[2]["payload"]["template"]["components"][0]["parameters"] == [
            {"type": "text", "text": "D-1"},
            {"type": "text", "text": "12:30"},
            {"type": "text", "text": "https://track.example/t/x"},
        ]
        async with httpx.AsyncClient() as control:
            listed = (await control.get(f"{boxes.meta_url}/_sandbox/messages")).json()["messages"]
        assert [m["id"] for m in listed] == ids

    run(test)


def test_meta_refuses_a_bad_token_with_the_graph_error_and_the_client_retries_it() -> None:
    async def test(boxes: Sandboxes, http: httpx.AsyncClient) -> None:
        raw = await http.post(f"{boxes.meta_url}/v21.0/{NUMBER_ID}/messages", json={})
        assert raw.status_code == 401 and raw.json()["error"]["code"] == 190
        assert raw.json()["error"]["type"] == "OAuthException"
        with pytest.raises(TransientSendError) as caught:
            await meta_client(boxes, http, token="wrong").send(message(), as_template=False)
        assert caught.value.code == 190 and caught.value.http_status == 401

    run(test)


@pytest.mark.parametrize(
    ("code", "http_status", "expected"),
    [
        (131000, None, TransientSendError),
        (None, 503, TransientSendError),
        (130429, None, RateLimited),
        (131056, None, RateLimited),
        (131047, None, WindowClosed),
        (131026, None, PermanentSendError),
        (131051, None, PermanentSendError),
        (100, None, PermanentSendError),
    ],
)
def test_meta_injected_errors_are_classified(
    code: int | None, http_status: int | None, expected: type
) -> None:
    async def test(boxes: Sandboxes, http: httpx.AsyncClient) -> None:
        await inject(boxes, boxes.meta_url, code=code, http_status=http_status)
        with pytest.raises(SendError) as caught:
            await meta_client(boxes, http).send(message(), as_template=False)
        assert type(caught.value) is expected
        assert caught.value.retriable == (expected in (TransientSendError, RateLimited))
        if code is not None:
            assert caught.value.code == code
        # The fault was used up: the next send goes through.
        assert (await meta_client(boxes, http).send(message(), as_template=False)).startswith("wamid.")

    run(test)


def test_meta_slow_answer_times_out_as_maybe_sent() -> None:
    async def test(boxes: Sandboxes, http: httpx.AsyncClient) -> None:
        await inject(boxes, boxes.meta_url, delay_s=1.0)
        with pytest.raises(TransientSendError) as caught:
            await meta_client(boxes, http).send(message(), as_template=False)
        assert caught.value.title == "timeout" and caught.value.maybe_sent

    run(test, timeout_s=0.3)


def test_an_unreachable_provider_is_transient_and_not_maybe_sent() -> None:
    async def main() -> None:
        async with httpx.AsyncClient(timeout=1) as http:
            client = WhatsAppCloudClient(
                http, api_url="http://127.0.0.1:9", version="v21.0", phone_number_id=NUMBER_ID, token=TOKEN
            )
            with pytest.raises(TransientSendError) as caught:
                await client.send(message(), as_template=False)
            assert not caught.value.maybe_sent

    asyncio.run(main())


def test_meta_closed_window_refuses_text_but_takes_the_template() -> None:
    async def test(boxes: Sandboxes, http: httpx.AsyncClient) -> None:
        to = "+5511900000001"
        await recipient(boxes.meta_url, to, window_open=False)
        client = meta_client(boxes, http)
        with pytest.raises(WindowClosed) as caught:
            await client.send(message(to=to), as_template=False)
        assert caught.value.code == 131047
        assert (await client.send(message(to=to), as_template=True)).startswith("wamid.")
        await recipient(boxes.meta_url, to, deliverable=False)
        with pytest.raises(PermanentSendError) as undeliverable:
            await client.send(message(to=to), as_template=True)
        assert undeliverable.value.code == 131026

    run(test)


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda b: b.update(type="poll", poll={}), 131051),
        (
            lambda b: b["interactive"]["action"]["buttons"].append(
                dict(b["interactive"]["action"]["buttons"][0])
            ),
            131009,
        ),
        (lambda b: b["interactive"]["action"]["buttons"][0]["reply"].update(title="x" * 21), 131009),
        (lambda b: b["interactive"]["action"].update(buttons=[]), 100),
        (lambda b: b.pop("messaging_product"), 100),
        (lambda b: b.update(to="not-a-number"), 100),
        (
            lambda b: b.update(type="template", template={"name": "Bad Name", "language": {"code": "en"}}),
            131009,
        ),
        (lambda b: b.update(type="template", template={"name": "ok"}), 100),
        # Only templates of the one catalogue are approved, in its languages, with its number of params.
        (
            lambda b: b.update(
                type="template", template={"name": "not_approved", "language": {"code": "en"}}
            ),
            132001,
        ),
        (
            lambda b: b.update(
                type="template", template={"name": "whatsup_update", "language": {"code": "fr"}}
            ),
            132001,
        ),
        (
            lambda b: b.update(
                type="template",
                template={
                    "name": "eta_update",
                    "language": {"code": "es"},
                    "components": [{"type": "body", "parameters": [{"type": "text", "text": "12:40"}]}],
                },
            ),
            132000,
        ),
        (lambda b: b.update(type="text", text={"body": ""}), 131009),
    ],
)
def test_meta_validates_payloads_as_documented(mutate: Callable[[dict[str, Any]], Any], code: int) -> None:
    async def test(boxes: Sandboxes, http: httpx.AsyncClient) -> None:
        body: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "to": "+5511987654321",
            "type": "interactive",
            "interactive": {
                "type": "button",
                "body": {"text": "Are you stuck?"},
                "action": {
                    "buttons": [
                        {"type": "reply", "reply": {"id": f"b{i}", "title": f"Option {i}"}} for i in range(3)
                    ]
                },
            },
        }
        mutate(body)
        answer = await http.post(
            f"{boxes.meta_url}/v21.0/{NUMBER_ID}/messages",
            json=body,
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert answer.status_code == 400
        assert answer.json()["error"]["code"] == code
        assert answer.json()["error"]["message"].startswith(f"(#{code})")

    run(test)


def test_meta_throughput_limit_answers_130429_beyond_the_rate() -> None:
    async def test(boxes: Sandboxes, http: httpx.AsyncClient) -> None:
        client = meta_client(boxes, http)
        outcomes: list[str] = []
        for i in range(30):
            try:
                await client.send(message(f"k{i}", to=f"+55119{i:08d}"), as_template=False)
                outcomes.append("ok")
            except RateLimited as exc:
                outcomes.append(str(exc.code))
        # A 20 msg/s number takes its one-second burst, then refuses until tokens come back.
        assert 20 <= outcomes.count("ok") < 30 and outcomes.count("130429") >= 1

    run(test, rate_per_s=20)


def test_meta_pair_limit_answers_131056_for_one_recipient() -> None:
    async def test(boxes: Sandboxes, http: httpx.AsyncClient) -> None:
        async with httpx.AsyncClient() as control:
            await control.post(
                f"{boxes.meta_url}/_sandbox/limits", json={"pair_burst": 2, "pair_rate_per_s": 0.01}
            )
        client = meta_client(boxes, http)
        for key in ("a", "b"):
            await client.send(message(key), as_template=False)
        with pytest.raises(RateLimited) as caught:
            await client.send(message("c"), as_template=False)
        assert caught.value.code == 131056
        assert (await client.send(message("d", to="+5511900000009"), as_template=False)).startswith("wamid.")

    run(test)


def test_meta_posts_signed_status_callbacks_with_the_message_key() -> None:
    async def main() -> None:
        async with callback_receiver() as (url, received), sandboxes(url + "/webhooks/whatsapp") as boxes:
            async with httpx.AsyncClient() as http:
                wamid = await meta_client(boxes, http).send(message("key-42"), as_template=False)
            await wait_for(lambda: len(received.posts) == 3)
        statuses = []
        for body, headers, _ in received.posts:
            assert headers["X-Hub-Signature-256"] == meta_signature(APP_SECRET, body)
            payload = json.loads(body)
            assert payload["object"] == "whatsapp_business_account"
            status = payload["entry"][0]["changes"][0]["value"]["statuses"][0]
            assert status["id"] == wamid and status["biz_opaque_callback_data"] == "key-42"
            statuses.append(status["status"])
        assert statuses == ["sent", "delivered", "read"]

    asyncio.run(main())


def test_meta_posts_a_refused_callback_again_as_meta_does() -> None:
    async def main() -> None:
        async with callback_receiver(refuse_first=2) as (url, received), sandboxes(url + "/hook") as boxes:
            async with httpx.AsyncClient() as http:
                await meta_client(boxes, http).send(message("key-43"), as_template=False)
            await wait_for(lambda: len(received.posts) == 3, timeout_s=10)
            assert boxes.meta.state.callbacks == {"503": 2, "200": 3}
        sent = [
            json.loads(b)["entry"][0]["changes"][0]["value"]["statuses"][0]["status"]
            for b, _, _ in received.posts
        ]
        assert sent == ["sent", "delivered", "read"]  # in order, none lost

    asyncio.run(main())


def test_twilio_sends_text_and_content_templates_with_signed_callbacks() -> None:
    async def main() -> None:
        async with callback_receiver() as (url, received), sandboxes() as boxes:
            async with httpx.AsyncClient() as http:
                client = twilio_client(boxes, http, callback=url + "/webhooks/twilio")
                sid = await client.send(message("tw-1", buttons=["Arrived"]), as_template=False)
                await client.send(message("tw-2", template="whatsup_update", params=["a"]), as_template=True)
            await wait_for(lambda: len(received.posts) == 6)
        assert sid.startswith("SM") and len(sid) == 34
        forms = [m["form"] for m in boxes.twilio.state.messages]
        assert forms[0]["Body"].endswith("1. Arrived") and forms[0]["To"] == "whatsapp:+5511987654321"
        assert forms[1]["ContentSid"].startswith("HX") and json.loads(forms[1]["ContentVariables"]) == {
            "1": "a"
        }
        for body, headers, full_url in received.posts:
            params = dict(parse_qsl(body.decode()))
            assert headers["X-Twilio-Signature"] == twilio_signature(AUTH, full_url, params)
            assert "message_key=tw-" in full_url
        assert [
            dict(parse_qsl(b.decode()))["MessageStatus"] for b, _, u in received.posts if "tw-1" in u
        ] == [
            "sent",
            "delivered",
            "read",
        ]

    asyncio.run(main())


@pytest.mark.parametrize(
    ("setup", "expected", "code"),
    [
        ({"code": 20500}, TransientSendError, 20500),
        ({"code": 20429}, RateLimited, 20429),
        ({"window_open": False}, WindowClosed, 63016),
        ({"deliverable": False}, PermanentSendError, 63003),
    ],
)
def test_twilio_errors_are_classified(setup: dict[str, Any], expected: type, code: int) -> None:
    async def test(boxes: Sandboxes, http: httpx.AsyncClient) -> None:
        to = "+5511987654321"
        if "code" in setup:
            await inject(boxes, boxes.twilio_url, **setup)
        else:
            await recipient(boxes.twilio_url, to, **setup)
        with pytest.raises(SendError) as caught:
            await twilio_client(boxes, http).send(message(to=to), as_template=False)
        assert type(caught.value) is expected and caught.value.code == code
        assert caught.value.provider == "twilio"

    run(test)


def test_twilio_refuses_bad_credentials_and_bad_numbers() -> None:
    async def test(boxes: Sandboxes, http: httpx.AsyncClient) -> None:
        url = f"{boxes.twilio_url}/2010-04-01/Accounts/{SID}/Messages.json"
        denied = await http.post(url, data={"To": "whatsapp:+5511987654321"}, auth=(SID, "wrong"))
        assert denied.status_code == 401 and denied.json()["code"] == 20003
        bad = await http.post(
            url, data={"To": "+123", "From": "whatsapp:+15550001111", "Body": "x"}, auth=(SID, AUTH)
        )
        assert bad.status_code == 400 and bad.json()["code"] == 21211
        with pytest.raises(PermanentSendError) as caught:
            await twilio_client(boxes, http).send(message(template="unknown_template"), as_template=True)
        assert caught.value.title == "no_twilio_template"

    run(test)
