"""Run the sandboxes (Meta, Twilio, PagerDuty): ``whatsup sandbox`` in the foreground, or in-process for
tests and benchmarks."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

from aiohttp import web

from base.exceptions import SettingsError
from base.logs import configure_logging
from base.settings import Settings
from connectors.sandbox.llm import LlmSandbox
from connectors.sandbox.meta import MetaSandbox, MetaSandboxConfig
from connectors.sandbox.pagerduty import PagerDutySandbox
from connectors.sandbox.twilio import TwilioSandbox, TwilioSandboxConfig


@dataclass
class Sandboxes:
    """The running sandboxes and their base URLs."""

    meta: MetaSandbox
    twilio: TwilioSandbox
    pagerduty: PagerDutySandbox
    meta_url: str
    twilio_url: str
    pagerduty_url: str
    llm: LlmSandbox
    llm_url: str


def configs(settings: Settings) -> tuple[MetaSandboxConfig, TwilioSandboxConfig]:
    """Build the sandboxes' configuration from the same settings the sender reads."""
    s = settings
    if not (s.whatsapp_token and s.whatsapp_phone_number_id and s.whatsapp_app_secret):
        raise SettingsError(
            "the Meta sandbox needs WHATSUP_WHATSAPP_TOKEN, WHATSUP_WHATSAPP_PHONE_NUMBER_ID and "
            "WHATSUP_WHATSAPP_APP_SECRET (deploy/demo.sh makes throw-away ones)"
        )
    callback: str | None = s.sandbox_callback_url or f"http://127.0.0.1:{s.web_port}/webhooks/whatsapp"
    if not s.sandbox_callbacks:
        callback = None
    meta = MetaSandboxConfig(
        token=s.whatsapp_token,
        phone_number_id=s.whatsapp_phone_number_id,
        app_secret=s.whatsapp_app_secret,
        callback_url=callback,
        rate_per_s=s.sandbox_rate_per_s,
    )
    twilio = TwilioSandboxConfig(
        account_sid=s.twilio_account_sid or "AC" + "0" * 32,
        auth_token=s.twilio_auth_token or "sandbox-twilio-token",
        rate_per_s=s.sandbox_rate_per_s,
    )
    return meta, twilio


@contextlib.asynccontextmanager
async def running_sandboxes(
    meta_config: MetaSandboxConfig,
    twilio_config: TwilioSandboxConfig,
    *,
    host: str = "127.0.0.1",
    meta_port: int = 0,
    twilio_port: int = 0,
    pagerduty_port: int = 0,
    llm_port: int = 0,
    llm_key: str | None = None,
) -> AsyncIterator[Sandboxes]:
    """Serve the sandboxes on ``host`` (port 0: any free port) for the duration of the block."""
    meta, twilio, pagerduty = MetaSandbox(meta_config), TwilioSandbox(twilio_config), PagerDutySandbox()
    llm = LlmSandbox(api_key=llm_key) if llm_key else LlmSandbox()
    runners = [web.AppRunner(box.app(), access_log=None) for box in (meta, twilio, pagerduty, llm)]
    urls = []
    try:
        ports = (meta_port, twilio_port, pagerduty_port, llm_port)
        for runner, port in zip(runners, ports, strict=True):
            await runner.setup()
            site = web.TCPSite(runner, host, port)
            await site.start()
            bound = runner.addresses[0][1]
            urls.append(f"http://{host}:{bound}")
        yield Sandboxes(meta, twilio, pagerduty, urls[0], urls[1], urls[2], llm, urls[3])
    finally:
        for runner in runners:
            await runner.cleanup()


@contextlib.contextmanager
def serve_in_thread(app: web.Application, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve an aiohttp application from a thread of this process on a free port; yield its base URL."""
    urls: list[str] = []
    ready, stop = threading.Event(), threading.Event()

    async def serve() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host, 0).start()
        urls.append(f"http://{host}:{runner.addresses[0][1]}")
        ready.set()
        while not stop.is_set():
            await asyncio.sleep(0.05)
        await runner.cleanup()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    if not ready.wait(10):
        raise RuntimeError("the server did not start within 10 s")
    try:
        yield urls[0]
    finally:
        stop.set()
        thread.join(10)


@contextlib.contextmanager
def llm_in_thread(
    api_key: str = "sandbox-llm-key", host: str = "127.0.0.1"
) -> Iterator[tuple[LlmSandbox, str]]:
    """Serve an OpenAI-compatible chat-completions sandbox from a thread; yield it and its API base URL."""
    box = LlmSandbox(api_key=api_key)
    with serve_in_thread(box.app(), host) as url:
        yield box, f"{url}/api/v1"


@contextlib.contextmanager
def pagerduty_in_thread(host: str = "127.0.0.1") -> Iterator[tuple[PagerDutySandbox, str]]:
    """Serve a PagerDuty Events API sandbox from a thread of this process; yield it and its base URL."""
    box = PagerDutySandbox()
    with serve_in_thread(box.app(), host) as url:
        yield box, url


def run_sandboxes(settings: Settings) -> int:
    """Serve both sandboxes on their configured ports until SIGTERM or SIGINT."""
    configure_logging(settings)
    meta_config, twilio_config = configs(settings)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with running_sandboxes(
            meta_config,
            twilio_config,
            host=settings.sandbox_host,
            meta_port=settings.sandbox_meta_port,
            twilio_port=settings.sandbox_twilio_port,
            pagerduty_port=settings.sandbox_pagerduty_port,
            llm_port=settings.sandbox_llm_port,
            llm_key=settings.llm_api_key,
        ) as boxes:
            print(
                f"Meta Cloud API sandbox on {boxes.meta_url}, callbacks to {meta_config.callback_url}",
                flush=True,
            )
            print(f"Twilio sandbox on {boxes.twilio_url}", flush=True)
            print(f"PagerDuty Events API sandbox on {boxes.pagerduty_url}/v2/enqueue", flush=True)
            print(f"LLM chat-completions sandbox on {boxes.llm_url}/api/v1", flush=True)
            await stop.wait()

    asyncio.run(main())
    return 0
