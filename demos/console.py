"""The console's step of the demo: a throw-away dispatcher signs in with a TOTP code in a headless Chromium,
and the page, with the demo's fleet on the map and its incidents beside it, is saved as a screenshot."""

from __future__ import annotations

import asyncio
import os
import secrets
import time

import httpx
import pyotp
import redis.asyncio as aioredis
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from base.settings import Settings
from streams.console.accounts import Accounts

SCREENSHOT = "console.png"


async def _add_dispatcher(settings: Settings, name: str, password: str) -> str:
    client = aioredis.from_url(settings.redis_url)
    try:
        accounts = Accounts(
            client, settings.topic_prefix, settings.console_session_idle_s, settings.console_login_failures
        )
        return (await accounts.add(name, password)).otpauth_url
    finally:
        await client.aclose()


def chromium() -> webdriver.Chrome:
    """Start Debian's Chromium headless through its chromedriver (never a downloaded browser)."""
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,900"):
        options.add_argument(argument)
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must not try to fetch a driver
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def show(settings: Settings) -> bool:
    """Sign a throw-away dispatcher in, save the page as var/demo/console.png; True if it shows the fleet."""
    url = f"http://127.0.0.1:{settings.console_port}"
    name, password = f"demo{secrets.token_hex(2)}", secrets.token_urlsafe(12)
    otpauth = asyncio.run(_add_dispatcher(settings, name, password))
    secret = otpauth.split("secret=")[1].split("&")[0]
    print(f"\nthe dispatcher console at {url}/console")
    print(f"  throw-away dispatcher {name!r}, password {password!r}; its authenticator URL:\n  {otpauth}")
    summary = httpx.get(f"{url}/v1/summary", headers=_key_header(settings), timeout=10).json()
    print(f"  at a glance: {summary['drivers']}, {summary['alerts_open']} alerts open,")
    print(f"  {summary['deliveries_late']} deliveries late, {summary['deliveries_at_risk']} at risk")
    browser = chromium()
    try:
        browser.get(f"{url}/console/login")
        browser.find_element(By.ID, "name").send_keys(name)
        browser.find_element(By.ID, "password").send_keys(password)
        browser.find_element(By.ID, "code").send_keys(pyotp.TOTP(secret).now())
        browser.find_element(By.ID, "submit").click()
        WebDriverWait(browser, 30).until(
            lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-ready")
        )
        time.sleep(1.0)  # let the map draw its markers and cells
        drawn = int(browser.find_element(By.ID, "map").get_attribute("data-drivers") or 0)
        listed = len(browser.find_elements(By.CSS_SELECTOR, "#incidents li"))
        path = settings.data_dir / "demo" / SCREENSHOT
        path.parent.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(path))
    finally:
        browser.quit()
    print(f"  signed in with a TOTP code: {drawn} drivers on the map, {listed} incidents listed")
    print(f"  screenshot: {path}")
    return drawn > 0


def _key_header(settings: Settings) -> dict[str, str]:
    key = next((k for k, roles in settings.api_keys.items() if "dispatcher" in roles), "")
    return {"X-API-Key": key}
