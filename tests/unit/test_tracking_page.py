"""The tracking page's words: the customer's language, escaped values, no ETA once it is over."""

from __future__ import annotations

import pytest

from connectors.whatsapp.optout import opt_choice
from streams.ingest.tracking import language, page

T0 = 1_763_870_000_000  # 00:53 in São Paulo


def view(**extra: object) -> dict[str, object]:
    return {"delivery_id": "D-1", "status": "en_route", "eta": T0 + 600_000, "promised_at": None,
            "updated_at": T0, "driver": "João", "position": {"lat": -23.5612, "lon": -46.6551, "ts": T0},
            "shown_at": T0, **extra}  # fmt: skip


@pytest.mark.parametrize(
    ("header", "expected"),
    [("", "pt-BR"), ("pt-BR,pt;q=0.9", "pt-BR"), ("es-AR,es;q=0.9", "es"), ("en-US,en;q=0.8", "en"),
     ("fr-FR, en;q=0.5", "en"), ("de", "pt-BR")],
)  # fmt: skip
def test_the_page_speaks_the_customers_language(header: str, expected: str) -> None:
    assert language(header) == expected


def test_the_page_shows_status_eta_driver_and_position_escaped() -> None:
    shown = page(view(), "en", -3.0)
    assert "On the way" in shown and "Expected at: <b>01:03</b>" in shown and "Driver: João" in shown
    assert "-23.5612, -46.6551" in shown and 'http-equiv="refresh"' in shown
    hostile = page(view(driver="<script>x</script>", delivery_id="D-<1>"), "pt-BR", -3.0)
    assert "<script>" not in hostile and "&lt;script&gt;" in hostile and "D-&lt;1&gt;" in hostile
    done = page(view(status="delivered", position=None, driver=None), "es", -3.0)
    assert "Entregado" in done and "Llegada prevista" not in done and "Repartidor" not in done


@pytest.mark.parametrize(
    ("text", "choice"),
    [("PARAR", "out"), ("stop", "out"), (" Stop! ", "out"), ("Sair", "out"), ("VOLTAR", "in"),
     ("start", "in"), ("volver", "in"), ("não pare de mandar", None), ("parei pro almoço", None),
     ("", None), (None, None), ("stop sending me this", None)],
)  # fmt: skip
def test_only_a_whole_stop_or_start_message_changes_anything(text: str | None, choice: str | None) -> None:
    assert opt_choice(text) == choice
