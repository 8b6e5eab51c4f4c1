"""The Meta WhatsApp Cloud API client: ``POST {api}/{version}/{phone_number_id}/messages``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from connectors.whatsapp.errors import SendError, TransientSendError, make_error
from connectors.whatsapp.outbound import Outbound


def meta_payload(message: Outbound, *, as_template: bool) -> dict[str, Any]:
    """Return the Cloud API request body for ``message`` (its text, or its template)."""
    body: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": message.to,
        # Echoed in every status webhook: lets a callback confirm a send whose answer was lost.
        "biz_opaque_callback_data": message.message_key,
    }
    if as_template:
        template: dict[str, Any] = {"name": message.template, "language": {"code": message.language}}
        components: list[dict[str, Any]] = []
        if message.params:
            parameters = [{"type": "text", "text": p} for p in message.params]
            components.append({"type": "body", "parameters": parameters})
        for index, payload in enumerate(message.button_ids):
            # A template's quick-reply button sends back the payload given here when pressed.
            button = {"type": "button", "sub_type": "quick_reply", "index": str(index)}
            components.append({**button, "parameters": [{"type": "payload", "payload": payload}]})
        if components:
            template["components"] = components
        body.update(type="template", template=template)
    elif message.buttons:
        pairs = zip(message.button_payloads(), message.buttons, strict=True)
        buttons = [{"type": "reply", "reply": {"id": payload, "title": title}} for payload, title in pairs]
        body.update(
            type="interactive",
            interactive={"type": "button", "body": {"text": message.text}, "action": {"buttons": buttons}},
        )
    else:
        body.update(type="text", text={"preview_url": False, "body": message.text})
    return body


def maybe_sent(exc: httpx.TimeoutException) -> bool:
    """Tell whether a timed-out request may have reached the provider (it was at least connected)."""
    return not isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout)


def retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers["Retry-After"])
    except (KeyError, ValueError):
        return None


def error_from_answer(
    provider: str, response: httpx.Response, read: Callable[[Any], tuple[int, str]]
) -> SendError:
    """Turn an error answer into the classified exception; ``read`` takes (code, title) from its JSON."""
    code: int | None = None
    try:
        code, title = read(response.json())
    except (ValueError, KeyError, TypeError):
        title = response.text[:200]
    return make_error(provider, response.status_code, code, title or None, retry_after(response))


def _read_graph_error(body: Any) -> tuple[int, str]:
    error = body["error"]
    details = (error.get("error_data") or {}).get("details")
    return int(error["code"]), str(error.get("message") or "") + (f" ({details})" if details else "")


def parse_meta_error(response: httpx.Response) -> SendError:
    """Turn a Cloud API error answer (a Graph error object) into the classified exception."""
    return error_from_answer("meta", response, _read_graph_error)


class HttpProviderClient:
    """What both provider clients share: a borrowed httpx client, start()/stop(), transport errors."""

    provider = ""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self._http = http
        self.started = False

    async def start(self) -> None:
        """Check the borrowed HTTP client is usable (its owner opens and closes it)."""
        if self._http.is_closed:
            raise TransientSendError(f"{self.provider}: the HTTP client is closed", provider=self.provider)
        self.started = True

    async def stop(self) -> None:
        """Stop using the HTTP client; its owner closes it."""
        self.started = False

    async def _post(self, url: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._http.post(url, **kwargs)
        except httpx.TimeoutException as exc:
            # The request may have reached the provider: the caller must confirm before sending again.
            raise TransientSendError(
                f"{self.provider} timed out: {type(exc).__name__}",
                title="timeout",
                provider=self.provider,
                maybe_sent=maybe_sent(exc),
            ) from exc
        except httpx.TransportError as exc:
            raise TransientSendError(
                f"{self.provider} unreachable: {type(exc).__name__}",
                title="unreachable",
                provider=self.provider,
            ) from exc

    def _answer_error(self, what: str) -> TransientSendError:
        return TransientSendError(
            f"{self.provider} answered without {what}", title="bad_answer", provider=self.provider
        )


class WhatsAppCloudClient(HttpProviderClient):
    """Send messages through one Cloud API phone number; the caller owns ``http`` and closes it."""

    provider = "meta"

    def __init__(
        self, http: httpx.AsyncClient, *, api_url: str, version: str, phone_number_id: str, token: str
    ) -> None:
        super().__init__(http)
        self._url = f"{api_url.rstrip('/')}/{version}/{phone_number_id}/messages"
        self._headers = {"Authorization": f"Bearer {token}"}

    async def send(self, message: Outbound, *, as_template: bool) -> str:
        """Send ``message``; return the provider's message id (``wamid.*``) or raise a SendError."""
        payload = meta_payload(message, as_template=as_template)
        response = await self._post(self._url, json=payload, headers=self._headers)
        if response.status_code == 200:
            try:
                return str(response.json()["messages"][0]["id"])
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                raise self._answer_error("a message id") from exc
        raise parse_meta_error(response)
