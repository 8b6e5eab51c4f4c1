"""The console page in a real headless Chromium, on a real worker fed by simulated phones: a dispatcher signs
in with a TOTP code, sees the drivers on the map, sees a new stall alert arrive within 2 s, acknowledges it,
and the acknowledgement shows on the API. A wrong code is refused."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pyotp
import pytest
from confluent_kafka import Producer
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from base import topics
from base.settings import Settings
from demos.console import chromium
from schemas.codecs import codec
from simulator.model import SimConfig, simulate
from simulator.run import post_through_api
from tests.integration.console_stack import DISPATCH_KEY, PASSWORD, ConsoleProcess, add_dispatcher
from tests.integration.sink_stack import SinkProcess, wait_for
from tests.integration.stack import WorkerProcess, free_port

DRIVERS = 24


@pytest.fixture()
def console_env(stack_env: dict[str, str], stack_settings: Settings, tmp_path: Path) -> dict[str, str]:
    return {
        **stack_env,
        "WHATSUP_CONSOLE_PORT": str(free_port()),
        "WHATSUP_SINK_PORT": str(free_port()),
        "WHATSUP_CLICKHOUSE_URL": f"chdb://{tmp_path / 'clickhouse'}",
        "WHATSUP_API_KEYS": f"{DISPATCH_KEY}:dispatcher",
    }


@pytest.fixture()
def fleet_console(console_env: dict[str, str], tmp_path: Path) -> Iterator[ConsoleProcess]:
    """A worker and a sink that took a simulated fleet's pings, and a console reading them."""
    worker = WorkerProcess(console_env, tmp_path / "worker.log")
    sink = SinkProcess(console_env, tmp_path / "sink.log")
    console = ConsoleProcess(console_env, tmp_path / "console.log")
    try:  # every process started is stopped, whichever start fails
        worker.start()
        sink.start_supervised()
        runs = simulate(
            SimConfig(drivers=DRIVERS, minutes=4, end_ms=int(time.time() * 1000), seed=5, driver_prefix="pg")
        )
        secret = console_env["WHATSUP_TOKEN_SECRET"]
        asyncio.run(post_through_api(runs, f"http://127.0.0.1:{console_env['WHATSUP_WEB_PORT']}", secret))
        console.start()
        hot = f"{console.url}/v1/cells/hot"
        wait_for(
            lambda: bool(httpx.get(hot, headers={"X-API-Key": DISPATCH_KEY}, timeout=10).json().get("cells")),
            90,
            "the fleet's pings in ClickHouse",
        )
        yield console
    finally:
        console.stop()
        sink.stop()
        worker.stop()


@pytest.fixture()
def browser() -> Iterator[WebDriver]:
    driver = chromium()
    try:
        yield driver
    finally:
        driver.quit()


def a_driver_with_a_trail(url: str) -> str:
    """Return a driver whose fixes of the last 15 minutes are in ClickHouse (a phone whose clock is right)."""
    headers = {"X-API-Key": DISPATCH_KEY}
    rows = httpx.get(f"{url}/v1/drivers", params={"limit": "500"}, headers=headers, timeout=10).json()[
        "drivers"
    ]
    recent = [
        r["driver_id"] for r in rows if r["last_fix"] and r["last_fix"]["ts"] > (time.time() - 600) * 1000
    ]
    found: list[str] = []

    def trail() -> bool:
        for driver in recent:
            fixes = httpx.get(f"{url}/v1/drivers/{driver}/trail", headers=headers, timeout=10).json()
            if fixes.get("fixes"):
                found.append(driver)
                return True
        return False

    wait_for(trail, 60, "a driver's trail in ClickHouse")
    return found[0]


def sign_in(browser: WebDriver, url: str, name: str, code: str) -> None:
    browser.get(f"{url}/console/login")
    browser.find_element(By.ID, "name").send_keys(name)
    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    browser.find_element(By.ID, "code").send_keys(code)
    browser.find_element(By.ID, "submit").click()


def test_a_dispatcher_signs_in_sees_the_fleet_and_acknowledges_a_new_stall(
    fleet_console: ConsoleProcess, console_env: dict[str, str], browser: WebDriver, tmp_path: Path
) -> None:
    totp = pyotp.TOTP(add_dispatcher(console_env, "bia"))
    url = fleet_console.url
    wait = WebDriverWait(browser, 20, poll_frequency=0.05)

    sign_in(browser, url, "bia", f"{(int(totp.now()) + 500_000) % 1_000_000:06d}")
    wait.until(lambda b: b.find_element(By.ID, "error").text)
    assert browser.find_element(By.ID, "error").get_attribute("data-reason") == "bad_credentials"
    assert browser.current_url.endswith("/console/login")

    sign_in(browser, url, "bia", totp.now())
    wait.until(lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true")
    drawn = browser.find_element(By.ID, "map").get_attribute("data-drivers")
    assert drawn is not None and int(drawn) >= DRIVERS - 2  # every phone with an accepted fix is on the map
    shown = sum(int(e.text) for e in browser.find_elements(By.CSS_SELECTOR, "#counts li[class] span"))
    assert shown == int(drawn)
    cookie = browser.get_cookie("whatsup_console")
    assert cookie is not None and cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
    assert browser.execute_script("return document.cookie") == ""  # the page cannot read its session

    settings = Settings.from_env(console_env)
    driver = a_driver_with_a_trail(url)
    now = int(time.time() * 1000)
    stall = {
        "alert_id": f"stall-{driver}-{now}",
        "kind": "stall",
        "driver_id": driver,
        "delivery_id": None,
        "started_at": now - 300_000,
        "detected_at": now,
        "lat": -23.55,  # where it is does not matter here
        "lon": -46.63,
        "h3_r9": 0,
        "severity": "warning",
        "detail": "",
    }
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap})
    producer.produce(
        topics.qualified(topics.ALERTS, settings.topic_prefix), codec("Alert").encode(stall), driver.encode()
    )
    producer.flush(10)
    sent = time.monotonic()
    selector = f'#incidents li[data-alert-id="{stall["alert_id"]}"]'
    WebDriverWait(browser, 2.0, poll_frequency=0.05).until(
        lambda b: b.find_elements(By.CSS_SELECTOR, selector)
    )
    shown_after = time.monotonic() - sent
    assert shown_after < 2.0
    browser.save_screenshot(str(tmp_path / "console.png"))

    browser.find_element(By.CSS_SELECTOR, f'{selector} button[data-action="ack"]').click()
    wait.until(
        lambda b: b.find_element(By.CSS_SELECTOR, selector).get_attribute("data-state") == "acknowledged"
    )
    seen = httpx.get(
        f"{url}/v1/alerts", params={"state": "acknowledged"}, headers={"X-API-Key": DISPATCH_KEY}, timeout=10
    ).json()["alerts"]
    assert [(a["alert_id"], a["acknowledged"]["by"]) for a in seen] == [(stall["alert_id"], "bia")]

    # The driver's panel and trail (ClickHouse, through the sink), and the hot cells layer.
    browser.find_element(By.CSS_SELECTOR, f"{selector} button.link").click()
    wait.until(lambda b: b.find_element(By.ID, "driver-id").text == driver)
    wait.until(lambda b: b.find_element(By.ID, "map").get_attribute("data-trail") is not None)
    assert int(browser.find_element(By.ID, "map").get_attribute("data-trail") or "-1") > 0
    assert browser.find_element(By.ID, "driver-status").text in ("moving", "idle", "stalled", "offline")
    browser.refresh()  # the hot cells are drawn at load, from what the sink has written by then
    wait.until(lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true")
    assert int(browser.find_element(By.ID, "map").get_attribute("data-cells") or 0) > 0
