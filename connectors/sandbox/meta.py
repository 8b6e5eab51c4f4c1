"""A local Meta WhatsApp Cloud API: auth, payload validation, error codes, throughput, signed callbacks.

``POST /{version}/{phone_number_id}/messages`` answers like the Cloud API (``wamid.*`` ids, Graph error
objects). Control routes under ``/_sandbox/`` let tests and the demo inject faults, close a recipient's
24-hour window, change limits and read every accepted message back.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from connectors.sandbox.common import ProviderError, SandboxServer, SandboxState, meta_signature
from connectors.whatsapp.catalogue import load_catalogue

# code -> (HTTP status, title); titles as the Cloud API's error codes page names them.
ERRORS: dict[int, tuple[int, str]] = {
    2: (503, "Service temporarily unavailable"),
    100: (400, "Invalid parameter"),
    190: (401, "Invalid OAuth access token - Cannot parse access token"),
    130429: (429, "Rate limit hit"),
    131000: (500, "Something went wrong"),
    131009: (400, "Parameter value is not valid"),
    131026: (400, "Message Undeliverable"),
    131047: (400, "Re-engagement message"),
    131051: (400, "Unsupported message type"),
    131056: (400, "(Business Account, Consumer Account) pair rate limit hit"),
    132000: (400, "Number of parameters does not match the expected number of params"),
    132001: (400, "Template name does not exist in the translation"),
}
SUPPORTED_TYPES = frozenset(
    {"text", "template", "interactive", "image", "audio", "document", "video", "sticker", "location",
     "contacts", "reaction"}
)  # fmt: skip
TEMPLATE_NAME = re.compile(r"^[a-z0-9_]{1,512}$")
PHONE = re.compile(r"^\+?[1-9]\d{6,14}$")


class MetaError(ProviderError):
    """An answer the Cloud API gives as a Graph error object."""

    def __init__(self, code: int, details: str | None = None, http_status: int | None = None) -> None:
        super().__init__(details)
        self.code, self.details = code, details
        self.http_status = http_status or ERRORS.get(code, (400, ""))[0]

    def response(self) -> web.Response:
        title = ERRORS.get(self.code, (400, "Error"))[1]
        error: dict[str, Any] = {
            "message": f"(#{self.code}) {title}",
            "type": "OAuthException",
            "code": self.code,
            "fbtrace_id": secrets.token_urlsafe(12),
        }
        if self.details:
            error["error_data"] = {"messaging_product": "whatsapp", "details": self.details}
        return web.json_response({"error": error}, status=self.http_status)


@dataclass(frozen=True)
class MetaSandboxConfig:
    """Credentials the sandbox expects and where it posts status callbacks."""

    token: str
    phone_number_id: str
    app_secret: str
    callback_url: str | None
    rate_per_s: float = 80.0
    pair_rate_per_s: float = 1 / 6
    pair_burst: float = 45.0
    waba_id: str = "100000000000000"


def _require(condition: bool, details: str, code: int = 100) -> None:
    if not condition:
        raise MetaError(code, details)


def _check_text(body: dict[str, Any]) -> None:
    text: Any = body.get("text")
    _require(isinstance(text, dict) and isinstance(text.get("body"), str), "text.body is required")
    _require(0 < len(text["body"]) <= 4096, "text.body must be 1 to 4096 characters", 131009)


def _check_template(body: dict[str, Any]) -> None:
    template: Any = body.get("template")
    _require(isinstance(template, dict), "template is required")
    _require(isinstance(template.get("name"), str), "template.name is required")
    _require(bool(TEMPLATE_NAME.match(template["name"])), "template.name is not a valid name", 131009)
    language: Any = template.get("language")
    _require(isinstance(language, dict) and isinstance(language.get("code"), str), "template.language.code")
    for component in template.get("components", []):
        _require(isinstance(component, dict), "template.components must be objects")
        _require(component.get("type") in ("header", "body", "button", "footer"), "component type", 131009)
        if component["type"] == "button":
            _require(component.get("sub_type") in ("quick_reply", "url"), "button sub_type", 131009)
            index = component.get("index")
            _require(isinstance(index, str) and index.isdigit() and int(index) < 10, "button index", 131009)
        for parameter in component.get("parameters", []):
            _require(isinstance(parameter, dict) and "type" in parameter, "parameter type is required")
            if parameter["type"] == "text":
                _require(isinstance(parameter.get("text"), str), "text parameter needs text")
            if parameter["type"] == "payload":
                payload = parameter.get("payload")
                _require(
                    isinstance(payload, str) and 0 < len(payload) <= 256,
                    "payload must be 1 to 256 characters",
                )


def _check_interactive(body: dict[str, Any]) -> None:
    interactive: Any = body.get("interactive")
    _require(isinstance(interactive, dict), "interactive is required")
    _require(interactive.get("type") in ("button", "list", "cta_url"), "interactive.type", 131009)
    text: Any = (interactive.get("body") or {}).get("text")
    _require(isinstance(text, str) and 0 < len(text) <= 1024, "interactive.body.text is required")
    if interactive["type"] != "button":
        return
    buttons: Any = (interactive.get("action") or {}).get("buttons")
    _require(isinstance(buttons, list) and len(buttons) > 0, "interactive.action.buttons is required")
    _require(len(buttons) <= 3, "at most 3 buttons", 131009)
    titles, ids = set(), set()
    for button in buttons:
        reply: Any = button.get("reply") if isinstance(button, dict) else None
        _require(isinstance(reply, dict) and button.get("type") == "reply", "buttons must be reply buttons")
        title, button_id = reply.get("title"), reply.get("id")
        _require(
            isinstance(title, str) and 0 < len(title) <= 20, "button title must be 1 to 20 characters", 131009
        )
        _require(
            isinstance(button_id, str) and 0 < len(button_id) <= 256, "button id must be 1 to 256 characters"
        )
        _require(title not in titles and button_id not in ids, "button titles and ids must be unique", 131009)
        titles.add(title)
        ids.add(button_id)


CHECKS = {"text": _check_text, "template": _check_template, "interactive": _check_interactive}


def validate(body: Any) -> dict[str, Any]:
    """Check a send request as the Cloud API does; return it or raise MetaError."""
    _require(isinstance(body, dict), "request body must be a JSON object")
    _require(body.get("messaging_product") == "whatsapp", "messaging_product must be whatsapp")
    _require(isinstance(body.get("to"), str) and bool(PHONE.match(body["to"])), "to is not a phone number")
    kind = body.get("type", "text")
    _require(kind in SUPPORTED_TYPES, f"message type {kind!r} is not supported", 131051)
    _require(len(str(body.get("biz_opaque_callback_data", ""))) <= 512, "biz_opaque_callback_data > 512")
    check = CHECKS.get(kind)
    if check is not None:
        check(body)
    else:
        _require(isinstance(body.get(kind), dict), f"{kind} object is required")
    return body


def check_approved(template: dict[str, Any]) -> None:
    """Refuse a template the business has not approved (the one catalogue), in its languages and params."""
    params = sum(len(c.get("parameters", [])) for c in template.get("components", []) if c["type"] == "body")
    problem = load_catalogue().template_problem(template["name"], template["language"]["code"], params)
    if problem == "template_params":
        raise MetaError(132000, f"template {template['name']} takes a different number of params")
    if problem is not None:
        language = template["language"]["code"]
        raise MetaError(132001, f"template {template['name']} does not exist in {language}")


def new_wamid() -> str:
    """Return a fresh Cloud API message id."""
    return "wamid." + base64.b64encode(secrets.token_bytes(27)).decode()


class MetaSandbox(SandboxServer):
    """The Cloud API's send route."""

    send_path = "/{version}/{phone_number_id}/messages"

    def __init__(self, config: MetaSandboxConfig) -> None:
        super().__init__(SandboxState(config.rate_per_s, config.pair_rate_per_s, config.pair_burst))
        self.config = config

    async def accept(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization", "") != f"Bearer {self.config.token}":
            raise MetaError(190)
        if request.match_info["phone_number_id"] != self.config.phone_number_id:
            raise MetaError(100, "Unsupported post request: unknown phone number id")
        try:
            body = json.loads(await request.read())
        except ValueError:
            raise MetaError(100, "request body is not JSON") from None
        to = str(body.get("to", "")) if isinstance(body, dict) else ""
        fault = self.state.next_fault(to)
        if fault is not None:
            await asyncio.sleep(fault.delay_s)
            if fault.code is not None or fault.http_status is not None:
                raise MetaError(fault.code or 2, "injected", fault.http_status)
        if not self.state.throughput_ok():
            raise MetaError(130429, f"more than {self.state.rate_per_s:g} messages/s for this number")
        validate(body)
        if body.get("type") == "template":
            check_approved(body["template"])
        if not self.state.pair_ok(to):
            raise MetaError(131056, "too many messages to this recipient in a short time")
        window_closed = body.get("type", "text") != "template" and to in self.state.closed_windows
        # The Cloud API may accept the message and report the closed window later, in a failed status.
        late_failure = window_closed and to in self.state.late_window_checks
        if window_closed and not late_failure:
            raise MetaError(131047, "more than 24 hours have passed since the customer last replied")
        if to in self.state.undeliverable:
            raise MetaError(131026, "the recipient cannot receive this message")
        wamid = new_wamid()
        self.state.messages.append(
            {
                "id": wamid,
                "to": to,
                "type": body.get("type", "text"),
                "payload": body,
                "biz_opaque_callback_data": body.get("biz_opaque_callback_data"),
                "received_at": int(time.time() * 1000),
            }
        )
        if late_failure:
            self.state.count("late_131047")
        statuses = ("failed",) if late_failure else ("sent", "delivered", "read")
        self.callbacks.post(self.config.callback_url, self._statuses(wamid, body, statuses))
        return web.json_response(
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": to, "wa_id": to.lstrip("+")}],
                "messages": [{"id": wamid, "message_status": "accepted"}],
            }
        )

    def _statuses(
        self, wamid: str, body: dict[str, Any], statuses: tuple[str, ...]
    ) -> list[tuple[bytes, dict[str, str]]]:
        out = []
        for status in statuses:
            entry: dict[str, Any] = {
                "id": wamid,
                "status": status,
                "timestamp": str(int(time.time())),
                "recipient_id": str(body["to"]).lstrip("+"),
            }
            if status == "failed":  # as the Cloud API reports it: no conversation or pricing, an error
                title = ERRORS[131047][1]
                details = "Message failed to send because more than 24 hours have passed"
                entry["errors"] = [
                    {"code": 131047, "title": title, "message": title, "error_data": {"details": details}}
                ]
            else:
                entry["conversation"] = {"id": wamid[6:22], "origin": {"type": "utility"}}
                entry["pricing"] = {"billable": True, "pricing_model": "PMP", "category": "utility"}
            if body.get("biz_opaque_callback_data"):
                entry["biz_opaque_callback_data"] = body["biz_opaque_callback_data"]
            value = {
                "messaging_product": "whatsapp",
                "metadata": {
                    "display_phone_number": "15550000000",
                    "phone_number_id": self.config.phone_number_id,
                },
                "statuses": [entry],
            }
            envelope = {
                "object": "whatsapp_business_account",
                "entry": [{"id": self.config.waba_id, "changes": [{"value": value, "field": "messages"}]}],
            }
            raw = json.dumps(envelope).encode()
            headers = {
                "Content-Type": "application/json",
                "X-Hub-Signature-256": meta_signature(self.config.app_secret, raw),
            }
            out.append((raw, headers))
        return out
