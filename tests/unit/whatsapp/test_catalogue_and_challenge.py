"""The wording catalogue is whole and within WhatsApp's limits; Meta's verify challenge answers right."""

from __future__ import annotations

import copy

import pytest

from base.settings import Settings
from connectors.whatsapp.catalogue import LANGUAGES, CatalogueError, check, load_catalogue, meta_language
from connectors.whatsapp.webhook import IntakeConfig, verify_challenge


def test_every_template_and_reply_exists_in_every_language() -> None:
    catalogue = load_catalogue()
    for name, template in catalogue.templates.items():
        assert set(template["text"]) == set(LANGUAGES), name
        params = {p: "x" for p in template["params"]}
        for language in LANGUAGES:
            assert catalogue.render(name, language, **params)
    for name in catalogue.replies:
        assert set(catalogue.replies[name]) == set(LANGUAGES)


def test_the_catalogue_approves_templates_by_name_language_and_params() -> None:
    catalogue = load_catalogue()
    # The sender's default fallback template lives in the same catalogue as the notify agent's.
    assert catalogue.template_problem(Settings().sender_fallback_template or "", "pt_BR", 0) is None
    assert catalogue.template_problem("eta_update", "es", 3) is None
    assert catalogue.template_problem("eta_update", "es", 2) == "template_params"
    assert catalogue.template_problem("eta_update", "fr", 3) == "template_language"
    assert catalogue.template_problem("eta_changed", "en", 1) == "unknown_template"


def test_stall_check_buttons_fit_whatsapp_quick_replies() -> None:
    catalogue = load_catalogue()
    for language in LANGUAGES:
        buttons = catalogue.buttons("stall_check", language)
        assert 1 <= len(buttons) <= 3 and all(len(b) <= 20 for b in buttons)


def test_template_params_follow_the_approved_order() -> None:
    assert load_catalogue().template_params("eta_update", eta="12:40", delivery_id="D1", link="L") == [
        "D1",
        "12:40",
        "L",
    ]
    assert meta_language("pt-BR") == "pt_BR"


def _doc() -> dict:  # type: ignore[type-arg]
    catalogue = load_catalogue()
    return copy.deepcopy({"templates": catalogue.templates, "replies": catalogue.replies})


@pytest.mark.parametrize(
    "breakage",
    [
        lambda d: d["templates"]["stall_check"]["buttons"]["en"].append("Four"),
        lambda d: d["templates"]["stall_check"]["buttons"]["es"].__setitem__(0, "x" * 21),
        lambda d: d["templates"]["eta_update"]["text"].pop("es"),
        lambda d: d["templates"]["eta_update"]["text"].__setitem__("en", "Order {delivery_id}"),
        lambda d: d["replies"]["help"].pop("en"),
        lambda d: d["replies"]["order_line"].__setitem__("es", "{index}"),
    ],
)
def test_a_broken_catalogue_fails_at_load(breakage) -> None:  # type: ignore[no-untyped-def]
    doc = _doc()
    breakage(doc)
    with pytest.raises(CatalogueError):
        check(doc)


CONFIG = IntakeConfig(phone_hash_key="k", app_secret="s", verify_token="the-token", twilio_auth_token=None)


def test_verify_challenge_echoes_the_challenge_for_the_right_token_only() -> None:
    ok = verify_challenge(
        CONFIG, {"hub.mode": "subscribe", "hub.verify_token": "the-token", "hub.challenge": "99"}
    )
    assert (ok.status, ok.body) == (200, {"challenge": "99"})
    wrong = verify_challenge(
        CONFIG, {"hub.mode": "subscribe", "hub.verify_token": "x", "hub.challenge": "99"}
    )
    assert (wrong.status, wrong.reason) == (403, "bad_verify_token")
    refused = verify_challenge(CONFIG, {"hub.mode": "unsubscribe", "hub.challenge": "1"})
    assert (refused.status, refused.reason) == (400, "bad_request")  # counted as a refusal, not as "ok"
    off = IntakeConfig(phone_hash_key="k", app_secret="s", verify_token=None, twilio_auth_token=None)
    assert verify_challenge(off, {"hub.mode": "subscribe"}).status == 503
