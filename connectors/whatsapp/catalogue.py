"""The one catalogue of outbound wording: approved templates and free-form replies, per language.

``templates.json`` is the single source; ``load_catalogue`` checks it whole at start-up (every language
present, placeholders consistent, buttons within WhatsApp's limits), so a bad edit fails fast, not at send.
The sender and the Meta sandbox read the same file: a template it does not name is not sent (the Cloud API
refuses a template it has not approved, with 132001), and the sender's fallback template must be in it.
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from functools import cache
from pathlib import Path
from typing import Any

CATALOGUE_PATH = Path(__file__).with_name("templates.json")
LANGUAGES = ("pt-BR", "en", "es")
MAX_BUTTONS = 3
MAX_BUTTON_CHARS = 20


class CatalogueError(ValueError):
    """The catalogue file breaks a rule; the message names the entry."""


def meta_language(language: str) -> str:
    """Return the WhatsApp template language code of pt-BR, en or es (pt_BR, en, es)."""
    return language.replace("-", "_")


def local_clock(ms: int, utc_offset_h: float) -> str:
    """Return epoch milliseconds ``ms`` as HH:MM at a fixed offset from UTC (what recipients read)."""
    zone = timezone(timedelta(hours=utc_offset_h))
    return datetime.fromtimestamp(ms / 1000, UTC).astimezone(zone).strftime("%H:%M")


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


@dataclass(frozen=True)
class Catalogue:
    """Templates (name -> params, text and buttons per language) and replies (name -> text per language)."""

    templates: dict[str, dict[str, Any]]
    replies: dict[str, dict[str, str]]

    def _text(self, name: str) -> dict[str, str]:
        if name in self.templates:
            return dict(self.templates[name]["text"])
        if name in self.replies:
            return self.replies[name]
        raise CatalogueError(f"no template or reply named {name!r}")

    def render(self, name: str, language: str, **params: Any) -> str:
        """Return the text of ``name`` in ``language`` (pt-BR if not offered) with ``params`` filled in."""
        texts = self._text(name)
        return texts.get(language, texts["pt-BR"]).format(**params)

    def template_params(self, name: str, **params: Any) -> list[str]:
        """Return the template's positional parameters, in the order the approved template numbers them."""
        return [str(params[key]) for key in self.templates[name]["params"]]

    def template_problem(self, name: str, language: str, params: int) -> str | None:
        """Return why template ``name`` cannot go out in Meta ``language`` with ``params`` params, or None."""
        template = self.templates.get(name)
        if template is None:
            return "unknown_template"
        if language not in {meta_language(code) for code in template["text"]}:
            return "template_language"
        if params != len(template["params"]):
            return "template_params"
        return None

    def buttons(self, name: str, language: str) -> list[str]:
        """Return the quick-reply button titles of template ``name`` in ``language``."""
        buttons = self.templates[name].get("buttons", {})
        return list(buttons.get(language, buttons.get("pt-BR", [])))


def check(doc: dict[str, Any]) -> Catalogue:
    """Return the catalogue in ``doc`` or raise CatalogueError at its first broken rule."""
    for name, template in doc["templates"].items():
        texts = template.get("text", {})
        if set(texts) != set(LANGUAGES):
            raise CatalogueError(f"template {name}: needs text in exactly {', '.join(LANGUAGES)}")
        for language, text in texts.items():
            if _fields(text) != set(template["params"]):
                raise CatalogueError(f"template {name} ({language}): placeholders differ from params")
        for language, titles in template.get("buttons", {}).items():
            if len(titles) > MAX_BUTTONS or any(len(t) > MAX_BUTTON_CHARS or not t for t in titles):
                raise CatalogueError(f"template {name} ({language}): at most 3 buttons of 1..20 characters")
    for name, texts in doc["replies"].items():
        if set(texts) != set(LANGUAGES):
            raise CatalogueError(f"reply {name}: needs text in exactly {', '.join(LANGUAGES)}")
        if len({frozenset(_fields(t)) for t in texts.values()}) != 1:
            raise CatalogueError(f"reply {name}: languages use different placeholders")
    return Catalogue(doc["templates"], doc["replies"])


@cache
def load_catalogue(path: Path = CATALOGUE_PATH) -> Catalogue:
    """Load and check the catalogue file."""
    return check(json.loads(path.read_text(encoding="utf-8")))
