"""A local Twilio Messages API for WhatsApp: basic auth, its error codes, signed status callbacks."""

from __future__ import annotations

import asyncio
import base64
import re
import secrets
import time
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from connectors.sandbox.common import ProviderError, SandboxServer, SandboxState, twilio_signature

# code -> (HTTP status, message), from Twilio's error dictionary.
ERRORS: dict[int, tuple[int, str]] = {
    20003: (401, "Authenticate"),
    20429: (429, "Too Many Requests"),
    20500: (500, "Internal Server Error"),
    21211: (400, "The 'To' number is not a valid phone number."),
    21603: (400, "The 'From' phone number is required."),
    21619: (400, "A text message body, media URL or content SID must be specified."),
    63003: (400, "Channel could not find To address"),
    63016: (400, "Failed to send freeform message because you are outside the allowed window."),
}
WHATSAPP_NUMBER = re.compile(r"^whatsapp:\+[1-9]\d{6,14}$")


class TwilioError(ProviderError):
    """An answer Twilio gives as ``{"code", "message", "more_info", "status"}``."""

    def __init__(self, code: int, http_status: int | None = None) -> None:
        super().__init__(code)
        self.code = code
        self.http_status = http_status or ERRORS.get(code, (400, ""))[0]

    def response(self) -> web.Response:
        body = {
            "code": self.code,
            "message": ERRORS.get(self.code, (400, "Error"))[1],
            "more_info": f"https://www.twilio.com/docs/errors/{self.code}",
            "status": self.http_status,
        }
        return web.json_response(body, status=self.http_status)


@dataclass(frozen=True)
class TwilioSandboxConfig:
    """The account the sandbox expects."""

    account_sid: str
    auth_token: str
    rate_per_s: float = 80.0


def new_sid() -> str:
    """Return a fresh Twilio message sid."""
    return "SM" + secrets.token_hex(16)


class TwilioSandbox(SandboxServer):
    """Twilio's Messages create route."""

    send_path = "/2010-04-01/Accounts/{sid}/Messages.json"

    def __init__(self, config: TwilioSandboxConfig) -> None:
        super().__init__(SandboxState(config.rate_per_s, pair_rate_per_s=1 / 6, pair_burst=45))
        self.config = config
        self._basic = (
            "Basic " + base64.b64encode(f"{config.account_sid}:{config.auth_token}".encode()).decode()
        )

    async def accept(self, request: web.Request) -> web.Response:
        if (
            request.headers.get("Authorization") != self._basic
            or request.match_info["sid"] != self.config.account_sid
        ):
            raise TwilioError(20003)
        form = {k: str(v) for k, v in (await request.post()).items()}
        to = form.get("To", "")
        fault = self.state.next_fault(to.removeprefix("whatsapp:"))
        if fault is not None:
            await asyncio.sleep(fault.delay_s)
            if fault.code is not None or fault.http_status is not None:
                raise TwilioError(fault.code or 20500, fault.http_status)
        if not self.state.throughput_ok():
            raise TwilioError(20429)
        if not WHATSAPP_NUMBER.match(to):
            raise TwilioError(21211)
        if not WHATSAPP_NUMBER.match(form.get("From", "")):
            raise TwilioError(21603)
        if not form.get("Body") and not form.get("ContentSid"):
            raise TwilioError(21619)
        phone = to.removeprefix("whatsapp:")
        if form.get("Body") and phone in self.state.closed_windows:
            raise TwilioError(63016)
        if phone in self.state.undeliverable:
            raise TwilioError(63003)
        sid = new_sid()
        self.state.messages.append(
            {"id": sid, "to": phone, "form": form, "received_at": int(time.time() * 1000)}
        )
        self.callbacks.post(form.get("StatusCallback"), self._statuses(sid, form))
        return web.json_response(self._resource(sid, form), status=201)

    def _resource(self, sid: str, form: dict[str, str]) -> dict[str, Any]:
        return {
            "account_sid": self.config.account_sid,
            "api_version": "2010-04-01",
            "body": form.get("Body", ""),
            "date_created": formatdate(usegmt=True),
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": form["From"],
            "num_segments": "1",
            "sid": sid,
            "status": "queued",
            "to": form["To"],
            "uri": f"/2010-04-01/Accounts/{self.config.account_sid}/Messages/{sid}.json",
        }

    def _statuses(self, sid: str, form: dict[str, str]) -> list[tuple[bytes, dict[str, str]]]:
        url = form.get("StatusCallback", "")
        out = []
        for status in ("sent", "delivered", "read"):
            params = {
                "AccountSid": self.config.account_sid,
                "ApiVersion": "2010-04-01",
                "ChannelPrefix": "whatsapp",
                "From": form["From"],
                "MessageSid": sid,
                "MessageStatus": status,
                "SmsSid": sid,
                "SmsStatus": status,
                "To": form["To"],
            }
            headers = {
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Twilio-Signature": twilio_signature(self.config.auth_token, url, params),
            }
            out.append((urlencode(params).encode(), headers))
        return out
