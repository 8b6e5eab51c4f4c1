"""The Twilio fallback: WhatsApp through ``POST {api}/2010-04-01/Accounts/{sid}/Messages.json``."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import httpx

from connectors.whatsapp.cloud import HttpProviderClient, error_from_answer
from connectors.whatsapp.errors import PermanentSendError, SendError
from connectors.whatsapp.outbound import Outbound


def twilio_form(
    message: Outbound,
    *,
    as_template: bool,
    from_number: str,
    content_sids: dict[str, str],
    status_callback: str | None,
) -> dict[str, str]:
    """Return the form fields Twilio takes for ``message`` (Body, or an approved ContentSid)."""
    form = {"To": f"whatsapp:{message.to}", "From": from_number}
    if as_template:
        sid = content_sids.get(f"{message.template}:{message.language}") or content_sids.get(
            message.template or ""
        )
        if sid is None:
            raise PermanentSendError(
                f"no Twilio content sid for template {message.template!r}",
                title="no_twilio_template",
                provider="twilio",
            )
        form["ContentSid"] = sid
        form["ContentVariables"] = json.dumps({str(i): p for i, p in enumerate(message.params, 1)})
    else:
        # Twilio's quick-reply buttons need an approved content template: free-form text lists the options.
        options = "".join(f"\n{i}. {title}" for i, title in enumerate(message.buttons, 1))
        form["Body"] = f"{message.text}{options}"
    if status_callback:
        # Twilio has no opaque callback field: the key rides in the callback URL instead.
        form["StatusCallback"] = f"{status_callback}?{urlencode({'message_key': message.message_key})}"
    return form


def parse_twilio_error(response: httpx.Response) -> SendError:
    """Turn a Twilio error answer (``{"code", "message", "status"}``) into the classified exception."""
    return error_from_answer(
        "twilio", response, lambda body: (int(body["code"]), str(body.get("message") or ""))
    )


class TwilioClient(HttpProviderClient):
    """Send WhatsApp messages through a Twilio account; the caller owns ``http`` and closes it."""

    provider = "twilio"

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        api_url: str,
        account_sid: str,
        auth_token: str,
        from_number: str,
        content_sids: dict[str, str] | None = None,
        status_callback: str | None = None,
    ) -> None:
        super().__init__(http)
        self._url = f"{api_url.rstrip('/')}/2010-04-01/Accounts/{account_sid}/Messages.json"
        self._auth = httpx.BasicAuth(account_sid, auth_token)
        self._from = from_number if from_number.startswith("whatsapp:") else f"whatsapp:{from_number}"
        self._content_sids = content_sids or {}
        self._status_callback = status_callback

    async def send(self, message: Outbound, *, as_template: bool) -> str:
        """Send ``message``; return Twilio's message sid (``SM...``) or raise a SendError."""
        form = twilio_form(
            message,
            as_template=as_template,
            from_number=self._from,
            content_sids=self._content_sids,
            status_callback=self._status_callback,
        )
        response = await self._post(self._url, data=form, auth=self._auth)
        if response.status_code in (200, 201):
            try:
                return str(response.json()["sid"])
            except (ValueError, KeyError, TypeError) as exc:
                raise self._answer_error("a sid") from exc
        raise parse_twilio_error(response)
