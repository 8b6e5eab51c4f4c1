"""Who is writing: the driver registry and the customer directory, kept in Redis, loaded from a file.

Why Redis and not a Faust GlobalTable: the webhook view must know, within its request, whether a number is a
driver in good standing (to answer a refusal while it still has the clear number), and ``whatsup registry
load`` must work with no worker running; every worker reads the same answer at once. Entries are keyed by
the phone's keyed hash, so the store holds the clear number only inside the entry the sender will need.

Files: CSV with a header, or JSON (a list of objects, or ``{"drivers": [...], "customers": [...]}``). A row
with ``driver_id`` is a driver (``phone``, ``status`` active|inactive|suspended, ``language``, and optionally
``zone``, the IANA time zone its messages show times in, and ``name``, whose first word customers are told);
a row with
``customer_ref`` is a customer (``phone``, ``language``). Loading upserts; to retire a driver, load the row
with status ``inactive``.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from connectors.whatsapp.phones import PhoneError, hash_phone, normalize_phone

STATUSES = ("active", "inactive", "suspended")
LANGUAGES = {"pt-br": "pt-BR", "pt_br": "pt-BR", "pt": "pt-BR", "en": "en", "en-us": "en", "es": "es"}
REFUSAL_TTL_S = 2 * 86_400  # a refusal claim outlives its UTC day, then goes


class RegistryError(ValueError):
    """A registry file row that cannot be loaded; the message names the row."""


@dataclass(frozen=True)
class Driver:
    """A driver's WhatsApp identity."""

    driver_id: str
    phone: str
    status: str
    language: str
    zone: str = ""  # IANA time zone of the driver's messages; empty: the deployment's display offset
    name: str = ""  # as customers are told it: only its first word is ever shown

    @property
    def first_name(self) -> str:
        """The first word of the driver's name, or "" when none was loaded."""
        words = self.name.split()
        return words[0] if words else ""


@dataclass(frozen=True)
class Customer:
    """A customer's WhatsApp identity, named by the ``customer_ref`` delivery events carry."""

    customer_ref: str
    phone: str
    language: str


def canonical_language(raw: str) -> str:
    """Return pt-BR, en or es for a language tag, or raise ValueError."""
    try:
        return LANGUAGES[raw.strip().lower()]
    except KeyError:
        raise ValueError(f"language {raw!r} is not one of pt-BR, en, es") from None


def parse_row(row: Mapping[str, Any], where: str) -> Driver | Customer:
    """Return the driver or customer a file row describes, or raise RegistryError naming ``where``."""
    try:
        phone = normalize_phone(str(row.get("phone") or ""))
        language = canonical_language(str(row.get("language") or "pt-BR"))
    except (PhoneError, ValueError) as exc:
        raise RegistryError(f"{where}: {exc}") from None
    if row.get("driver_id"):
        status = str(row.get("status") or "active").strip().lower()
        if status not in STATUSES:
            raise RegistryError(f"{where}: status {status!r} is not one of {', '.join(STATUSES)}")
        zone = str(row.get("zone") or "").strip()
        if zone:
            try:
                ZoneInfo(zone)
            except (ZoneInfoNotFoundError, ValueError):
                raise RegistryError(f"{where}: zone {zone!r} is not an IANA time zone") from None
        name = " ".join(str(row.get("name") or "").split())[:100]
        return Driver(str(row["driver_id"]).strip(), phone, status, language, zone, name)
    if row.get("customer_ref"):
        return Customer(str(row["customer_ref"]).strip(), phone, language)
    raise RegistryError(f"{where}: a row needs driver_id or customer_ref")


def parse_file(text: str, name: str) -> list[Driver | Customer]:
    """Parse a registry file's text (JSON if ``name`` ends in .json, else CSV)."""
    rows: Iterable[Any]
    if name.endswith(".json"):
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RegistryError(f"{name}: not JSON ({exc})") from None
        rows = doc if isinstance(doc, list) else [*doc.get("drivers", []), *doc.get("customers", [])]
    else:
        rows = csv.DictReader(io.StringIO(text))
    entries = []
    for index, row in enumerate(rows, start=1):
        if not isinstance(row, Mapping):
            raise RegistryError(f"{name} row {index}: expected an object")
        entries.append(parse_row(row, f"{name} row {index}"))
    return entries


def load_file(path: Path) -> list[Driver | Customer]:
    """Read and parse a registry file."""
    return parse_file(path.read_text(encoding="utf-8"), path.name)


def admission(driver: Driver | None) -> str:
    """Return ``admit`` for an active driver, else the refusal reason: unknown, inactive or suspended."""
    if driver is None:
        return "unknown"
    return "admit" if driver.status == "active" else driver.status


class Registry:
    """Drivers by phone hash and by id, customers by reference, and the once-a-day refusal claims.

    ``client`` is a ``redis.asyncio.Redis`` (or anything with its get, set and pipeline).
    """

    def __init__(self, client: Any, hash_key: str, namespace: str = "") -> None:
        self.client = client
        self.hash_key = hash_key
        self.prefix = f"{namespace}whatsup:registry:"

    async def load(self, entries: Iterable[Driver | Customer]) -> tuple[int, int]:
        """Upsert every entry; return (drivers, customers) written."""
        drivers = customers = 0
        pipe = self.client.pipeline(transaction=False)
        for entry in entries:
            phone_hash = hash_phone(self.hash_key, entry.phone)
            if isinstance(entry, Driver):
                pipe.set(f"{self.prefix}driver:{phone_hash}", json.dumps(asdict(entry)))
                pipe.set(f"{self.prefix}driver_id:{entry.driver_id}", phone_hash)
                drivers += 1
            else:
                pipe.set(f"{self.prefix}customer:{entry.customer_ref}", json.dumps(asdict(entry)))
                customers += 1
        await pipe.execute()
        return drivers, customers

    def queue_driver_lookup(self, pipe: Any, phone_hash: str) -> None:
        """Add the lookup of a driver by phone hash to a Redis pipeline; read its reply with ``as_driver``."""
        pipe.get(f"{self.prefix}driver:{phone_hash}")

    @staticmethod
    def as_driver(raw: Any) -> Driver | None:
        """Return the driver a lookup's reply holds."""
        return Driver(**json.loads(raw)) if raw else None

    async def driver_by_hash(self, phone_hash: str) -> Driver | None:
        """Return the driver whose phone hashes to ``phone_hash``."""
        return self.as_driver(await self.client.get(f"{self.prefix}driver:{phone_hash}"))

    async def drivers_by_hash(self, phone_hashes: list[str]) -> list[Driver | None]:
        """Return the driver of each phone hash, in one command (MGET)."""
        if not phone_hashes:
            return []
        raws = await self.client.mget([f"{self.prefix}driver:{phone_hash}" for phone_hash in phone_hashes])
        return [self.as_driver(raw) for raw in raws]

    async def driver_by_id(self, driver_id: str) -> Driver | None:
        """Return the driver ``driver_id``."""
        phone_hash = await self.client.get(f"{self.prefix}driver_id:{driver_id}")
        if not phone_hash:
            return None
        key = phone_hash.decode() if isinstance(phone_hash, bytes) else str(phone_hash)
        return await self.driver_by_hash(key)

    async def customer(self, customer_ref: str) -> Customer | None:
        """Return the customer ``customer_ref``."""
        raw = await self.client.get(f"{self.prefix}customer:{customer_ref}")
        return Customer(**json.loads(raw)) if raw else None

    async def opt_out(self, phone_hash: str, at_ms: int) -> None:
        """Stop every customer message to a number (it wrote STOP); kept until it writes START."""
        await self.client.set(f"{self.prefix}optout:{phone_hash}", str(at_ms))

    async def opt_in(self, phone_hash: str) -> None:
        """Send a number customer messages again."""
        await self.client.delete(f"{self.prefix}optout:{phone_hash}")

    async def opted_out(self, phone_hash: str) -> bool:
        """Tell whether a number asked for no more customer messages."""
        return bool(await self.client.exists(f"{self.prefix}optout:{phone_hash}"))

    async def claim_refusal(self, phone_hash: str, day: str) -> bool:
        """Return True the first time a number is refused on UTC ``day`` (YYYY-MM-DD), False after."""
        key = f"{self.prefix}refused:{day}:{phone_hash}"
        return bool(await self.client.set(key, b"1", ex=REFUSAL_TTL_S, nx=True))

    async def customers_with_phone(self, phone: str) -> list[Customer]:
        """Return every customer entry holding ``phone`` (a scan: for erasure, not for traffic)."""
        wanted = normalize_phone(phone)
        found = []
        async for key in self.client.scan_iter(match=f"{self.prefix}customer:*", count=1000):
            raw = await self.client.get(key)
            if raw and json.loads(raw).get("phone") == wanted:
                found.append(Customer(**json.loads(raw)))
        return found

    async def forget(
        self, driver: Driver | None, customers: Iterable[Customer], phone_hashes: Iterable[str]
    ) -> int:
        """Delete a person's entries (as driver, as customers), refusal claims and opt-out; return the keys
        deleted. (An erased number that writes again is a stranger: a STOP would be taken anew.)"""
        keys = [f"{self.prefix}customer:{customer.customer_ref}" for customer in customers]
        if driver is not None:
            keys.append(f"{self.prefix}driver_id:{driver.driver_id}")
        for phone_hash in phone_hashes:
            keys += [f"{self.prefix}driver:{phone_hash}", f"{self.prefix}optout:{phone_hash}"]
            keys += [key async for key in self.client.scan_iter(match=f"{self.prefix}refused:*:{phone_hash}")]
        return int(await self.client.delete(*keys)) if keys else 0
