"""An OpenAI-compatible chat-completions client with function calling (OpenRouter by default).

One call answers one driver message within a deadline that covers every attempt: a 429 is retried after
its ``Retry-After`` (or a short backoff) and a 5xx or a dropped connection after a backoff, while the
deadline allows; a 400, 401, 403 or 404 is not retried (the request or the key is wrong, and will stay
wrong). Every failure is an ``LlmError`` with a reason code the caller counts and records.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import httpx

from connectors.llm.tools import Answer, BadAnswer, messages, parse_completion, tools

log = logging.getLogger(__name__)

BACKOFF_S = 0.25
# OpenRouter's optional attribution headers; other providers ignore them.
ATTRIBUTION = {
    "HTTP-Referer": "https://github.com/whatsup-logistics/pipeline",
    "X-Title": "WhatsUp Logistics",
}


class LlmError(Exception):
    """The model gave no usable answer. ``reason``: timeout, rate_limited, server_error, refused (4xx),
    bad_answer, unreachable."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class ChatClient:
    """Calls ``{base_url}/chat/completions`` with the intents as tools."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        api_key: str,
        model: str,
        *,
        timeout_s: float = 4.0,
        max_attempts: int = 3,
    ) -> None:
        self.http, self.url, self.model = http, base_url.rstrip("/") + "/chat/completions", model
        self.headers = {"Authorization": f"Bearer {api_key}", **ATTRIBUTION}
        self.timeout_s, self.max_attempts = timeout_s, max_attempts

    async def interpret(self, text: str, language: str) -> Answer:
        """Return the model's Answer to one driver message, or raise LlmError."""
        body = {
            "model": self.model,
            "messages": messages(text, language),
            "tools": tools(),
            "tool_choice": "auto",
            "temperature": 0,
            "max_tokens": 200,
        }
        deadline = time.monotonic() + self.timeout_s
        try:
            async with asyncio.timeout(self.timeout_s):
                return await self._attempts(body, deadline)
        except TimeoutError:
            raise LlmError("timeout", f"no answer within {self.timeout_s:g}s") from None

    async def _attempts(self, body: dict[str, Any], deadline: float) -> Answer:
        last: LlmError | None = None
        for attempt in range(self.max_attempts):
            try:
                response = await self.http.post(self.url, json=body, headers=self.headers)
            except httpx.TimeoutException:
                raise LlmError("timeout", "the request timed out") from None
            except httpx.HTTPError as exc:
                last, wait = LlmError("unreachable", type(exc).__name__), BACKOFF_S * 2**attempt
            else:
                if response.status_code == 200:
                    try:
                        return parse_completion(response.json())
                    except (ValueError, BadAnswer) as exc:
                        raise LlmError("bad_answer", str(exc)[:200]) from None
                last, wait = _classified(response), _wait(response, attempt)
                if last.reason == "refused":
                    raise last
            if attempt + 1 == self.max_attempts or time.monotonic() + wait >= deadline:
                break
            log.info("llm: %s, attempt %d, retrying in %.2fs", last, attempt + 1, wait)
            await asyncio.sleep(wait)
        assert last is not None
        raise last


def _classified(response: httpx.Response) -> LlmError:
    try:
        error = response.json().get("error", {})
        detail = str(error.get("message", ""))[:200] if isinstance(error, dict) else str(error)[:200]
    except (ValueError, AttributeError):
        detail = response.text[:200]
    status = response.status_code
    if status == 429:
        return LlmError("rate_limited", detail)
    if status >= 500:
        return LlmError("server_error", f"{status} {detail}")
    return LlmError("refused", f"{status} {detail}")


def _wait(response: httpx.Response, attempt: int) -> float:
    try:
        return max(0.0, float(response.headers["Retry-After"]))
    except (KeyError, ValueError):
        return BACKOFF_S * 2**attempt
