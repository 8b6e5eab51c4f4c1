"""A local OpenAI-compatible chat-completions API (as OpenRouter serves it), with a small model of its own.

``POST /api/v1/chat/completions`` (also ``/v1/chat/completions``) checks the bearer key (401), the body
(400: a model, a non-empty list of messages with roles, well-formed tools), and a per-key rate limit (429
with ``Retry-After``), then answers like the real API: ``choices[0].message`` with ``tool_calls`` (the
arguments a JSON string) and ``finish_reason`` ``tool_calls``, or with ``content`` and ``stop``, and a
``usage`` block. Its "model" reads colloquial driver phrases in pt-BR, en and es that the pipeline's rules
do not know, and answers anything else with a short line in the language the system prompt names.

Control routes: ``/_sandbox/faults`` answers the next requests with an HTTP error (500, 502, 503, 429) or
only late (``delay_s``); ``/_sandbox/script`` queues exact answers (a function call or a reply) for the
next requests; ``/_sandbox/requests`` lists what arrived; ``/_sandbox/reset`` forgets it all.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import unicodedata
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from connectors.sandbox.common import Bucket, read_json

_ERROR_TEXT = {
    400: "Bad Request",
    401: "No auth credentials found",
    429: "Rate limit exceeded: too many requests",
    500: "Internal Server Error",
    502: "Provider returned error",
    503: "Service Unavailable: no provider available",
}
# (function, the phrases that mean it, folded) -- what the rules leave to the model.
PHRASEBOOK: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("failed", ("interfone", "cliente sumiu", "ninguem desceu", "nobody came down", "no one showed",
                "no bajo nadie", "nadie bajo")),
    ("breakdown", ("pneu furou", "moto morreu", "moto apagou", "flat tyre", "flat tire", "bike died",
                   "se me pincho", "la moto murio")),
    ("traffic", ("ta tudo parado", "transito travado", "bumper to bumper", "todo parado")),
    ("delivered", ("ja entreguei", "deixei com", "ta na mao do cliente", "handed it over", "left it with",
                   "se lo di", "lo deje con")),
    ("arrived", ("to na porta", "to no portao", "outside the building", "estoy afuera", "estoy abajo")),
    ("on_the_way", ("partiu cliente", "saindo pro cliente", "heading over", "voy para alla")),
    ("picked_up", ("ja to com", "pizza ta comigo", "got the food", "got the order", "ya lo tengo")),
    ("accept", ("pode mandar", "manda pra mim", "i'll take it", "ill take it", "la tomo", "me la quedo")),
    ("decline", ("nao vou conseguir pegar", "passa pra outro", "can't take it", "cant take it",
                 "no puedo tomarla")),
    ("orders_today", ("o que tem pra mim", "what's on my list", "whats on my list", "que tengo hoy")),
)  # fmt: skip
_REASONS = (
    ("not_home", ("interfone", "sumiu", "ninguem desceu", "nobody came", "no one showed", "nadie bajo",
                  "no bajo nadie")),
)  # fmt: skip
_REF = re.compile(r"\b([a-z]{1,4}-\d{1,8})\b")
SMALL_TALK = {
    "Brazilian Portuguese": "Sou o assistente de entregas: mostro seus pedidos e registro cada etapa.",
    "English": "I am the delivery assistant: I can show your orders and record each step.",
    "Spanish": "Soy el asistente de entregas: puedo mostrar tus pedidos y registrar cada paso.",
}


def fold(text: str) -> str:
    bare = unicodedata.normalize("NFKD", text.lower())
    return " ".join("".join(c for c in bare if not unicodedata.combining(c)).split())


@dataclass
class LlmSandbox:
    """The API's state: keys, rate, faults, scripted answers, requests seen."""

    api_key: str = "sandbox-llm-key"
    rate_per_s: float = 20.0
    burst: float = 40.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    faults: deque[dict[str, Any]] = field(default_factory=deque)
    script: deque[dict[str, Any]] = field(default_factory=deque)
    answered: dict[str, int] = field(default_factory=dict)
    _buckets: dict[str, Bucket] = field(default_factory=dict)
    # Bumped by clear(): a slow answer begun before it is not counted after it.
    _generation: int = 0

    def clear(self) -> None:
        """Forget every request, fault, scripted answer, count and rate bucket."""
        for kept in (self.requests, self.faults, self.script, self.answered, self._buckets):
            kept.clear()
        self._generation += 1

    def app(self) -> web.Application:
        """Build the aiohttp application."""
        app = web.Application()
        app.add_routes(
            [
                web.post("/api/v1/chat/completions", self.complete),
                web.post("/v1/chat/completions", self.complete),
                web.post("/_sandbox/faults", self.add_faults),
                web.post("/_sandbox/script", self.add_script),
                web.get("/_sandbox/requests", self.list_requests),
                web.post("/_sandbox/reset", self.reset),
                web.get("/health", self.health),
            ]
        )
        return app

    async def complete(self, request: web.Request) -> web.Response:
        """Answer one chat completion the way the API does."""
        key = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if key != self.api_key:
            return self._error(401)
        try:
            body = await request.json()
        except ValueError:
            return self._error(400, "Invalid JSON body")
        problem = validate(body)
        if problem:
            return self._error(400, problem)
        self.requests.append({"body": body, "at": time.time()})
        generation = self._generation
        if self.faults:
            fault = self.faults.popleft()
            if fault.get("delay_s"):
                await asyncio.sleep(float(fault["delay_s"]))
                if generation != self._generation:  # cleared while it slept: its caller is long gone
                    return web.json_response({"error": {"code": 504, "message": "Abandoned"}}, status=504)
            if fault.get("http_status"):
                return self._error(int(fault["http_status"]), retry_after=fault.get("retry_after"))
        bucket = self._buckets.setdefault(key, Bucket(self.rate_per_s, self.burst))
        if not bucket.take(time.monotonic()):
            return self._error(429, retry_after=1)
        answer = self.script.popleft() if self.script else think(body)
        return self._answer(200, completion(body, answer))

    def _error(self, status: int, message: str | None = None, retry_after: Any = None) -> web.Response:
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
        body = {"error": {"code": status, "message": message or _ERROR_TEXT.get(status, "Error")}}
        return self._answer(status, body, headers)

    def _answer(
        self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> web.Response:
        self.answered[str(status)] = self.answered.get(str(status), 0) + 1
        return web.json_response(body, status=status, headers=headers)

    async def add_faults(self, request: web.Request) -> web.Response:
        body = await read_json(request)
        fault = {k: body.get(k) for k in ("http_status", "delay_s", "retry_after")}
        self.faults.extend([fault] * int(body.get("times", 1)))
        return web.json_response({"faults": len(self.faults)})

    async def add_script(self, request: web.Request) -> web.Response:
        body = await read_json(request)
        self.script.extend(body.get("answers", []))
        return web.json_response({"script": len(self.script)})

    async def list_requests(self, request: web.Request) -> web.Response:
        return web.json_response({"requests": self.requests, "answered": self.answered})

    async def reset(self, request: web.Request) -> web.Response:
        self.clear()
        return web.json_response({"reset": True})

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})


def validate(body: Any) -> str | None:
    """Return what is wrong with a chat-completions request, or None."""
    if not isinstance(body, dict):
        return "Request body must be a JSON object"
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "model is required"
    chat = body.get("messages")
    if not isinstance(chat, list) or not chat:
        return "messages must be a non-empty array"
    for message in chat:
        if not isinstance(message, dict) or message.get("role") not in (
            "system",
            "user",
            "assistant",
            "tool",
        ):
            return "each message needs a role of system, user, assistant or tool"
        if not isinstance(message.get("content"), str | None):
            return "message content must be a string"
    for tool in body.get("tools") or []:
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            return "each tool needs a function with a name"
    return None


def think(body: dict[str, Any]) -> dict[str, Any]:
    """The sandbox model: a function call for a phrase it knows (among the tools offered), else a line."""
    offered = {t["function"]["name"] for t in body.get("tools") or []}
    said = fold(next((m["content"] or "" for m in reversed(body["messages"]) if m["role"] == "user"), ""))
    for function, phrases in PHRASEBOOK:
        if function in offered and any(p in said for p in phrases):
            arguments: dict[str, Any] = {}
            ref = _REF.search(said)
            if ref:
                arguments["order_ref"] = ref.group(1).upper()
            if function == "failed":
                reason = next((r for r, words in _REASONS if any(w in said for w in words)), None)
                if reason:
                    arguments["reason"] = reason
            return {"function": function, "arguments": arguments}
    system = next((m["content"] or "" for m in body["messages"] if m["role"] == "system"), "")
    spoken = next((name for name in SMALL_TALK if name in system), "English")
    return {"content": SMALL_TALK[spoken]}


def completion(body: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
    """Wrap an answer the way the API returns it."""
    prompt_tokens = sum(len(str(m.get("content") or "").split()) for m in body["messages"]) + 150
    message: dict[str, Any] = {"role": "assistant", "content": None}
    if "function" in answer:
        arguments = answer.get("arguments", {})
        message["tool_calls"] = [
            {
                "id": f"call_{uuid.uuid4().hex[:24]}",
                "type": "function",
                "function": {
                    "name": answer["function"],
                    "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments),
                },
            }
        ]
        finish, completion_tokens = "tool_calls", 20
    else:
        message["content"] = answer.get("content")
        finish, completion_tokens = "stop", len(str(answer.get("content") or "").split())
    return {
        "id": f"gen-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body["model"],
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }
