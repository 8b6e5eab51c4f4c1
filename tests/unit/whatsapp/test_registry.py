"""Registry files: drivers and customers from CSV or JSON, every bad row named; who is admitted."""

from __future__ import annotations

import json

import pytest

from connectors.whatsapp.registry import Customer, Driver, RegistryError, admission, parse_file

CSV = """driver_id,phone,status,language
d1,+55 11 98765-4321,active,pt-BR
d2,5491123456789,suspended,es
d3,+14155550123,inactive,EN
"""


def test_csv_rows_become_drivers_with_normalized_phone_and_language() -> None:
    assert parse_file(CSV, "drivers.csv") == [
        Driver("d1", "+5511987654321", "active", "pt-BR"),
        Driver("d2", "+5491123456789", "suspended", "es"),
        Driver("d3", "+14155550123", "inactive", "en"),
    ]


def test_json_holds_drivers_and_customers() -> None:
    doc = {
        "drivers": [{"driver_id": "d1", "phone": "+5511987654321"}],
        "customers": [{"customer_ref": "c-9", "phone": "+5511912345678", "language": "pt_BR"}],
    }
    assert parse_file(json.dumps(doc), "registry.json") == [
        Driver("d1", "+5511987654321", "active", "pt-BR"),
        Customer("c-9", "+5511912345678", "pt-BR"),
    ]
    assert parse_file(json.dumps(doc["customers"]), "c.json") == [Customer("c-9", "+5511912345678", "pt-BR")]


@pytest.mark.parametrize(
    ("text", "name", "where"),
    [
        ("driver_id,phone\nd1,123\n", "a.csv", "a.csv row 1"),
        ("driver_id,phone,status\nd1,+5511987654321,fired\n", "a.csv", "a.csv row 1"),
        ("driver_id,phone,language\nd1,+5511987654321,fr\n", "a.csv", "a.csv row 1"),
        ("phone\n+5511987654321\n", "a.csv", "a.csv row 1"),
        ('[{"driver_id": "d1", "phone": "+5511987654321"}, 3]', "a.json", "a.json row 2"),
        ("{not json", "a.json", "a.json"),
    ],
)
def test_bad_rows_are_refused_naming_the_row(text: str, name: str, where: str) -> None:
    with pytest.raises(RegistryError, match=where):
        parse_file(text, name)


@pytest.mark.parametrize(
    ("driver", "verdict"),
    [
        (None, "unknown"),
        (Driver("d", "+5511987654321", "active", "pt-BR"), "admit"),
        (Driver("d", "+5511987654321", "inactive", "pt-BR"), "inactive"),
        (Driver("d", "+5511987654321", "suspended", "pt-BR"), "suspended"),
    ],
)
def test_only_active_drivers_are_admitted(driver: Driver | None, verdict: str) -> None:
    assert admission(driver) == verdict
