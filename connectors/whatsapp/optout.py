"""A number that writes STOP gets no more customer messages; START undoes it. Pure: the words only.

The customer's words are folded (lower case, no accents, no punctuation) and must be the whole message, so
"não pare de mandar" or a driver's "parei pro almoço" never opts anyone out.
"""

from __future__ import annotations

import re
import unicodedata

STOP_WORDS = frozenset({"parar", "pare", "stop", "sair", "cancelar", "descadastrar", "unsubscribe", "baja"})
START_WORDS = frozenset({"voltar", "start", "volver", "reativar", "resume", "alta"})


def _fold(text: str) -> str:
    bare = "".join(c for c in unicodedata.normalize("NFKD", text.lower()) if not unicodedata.combining(c))
    return " ".join(re.sub(r"[^a-z0-9]+", " ", bare).split())


def opt_choice(text: str | None) -> str | None:
    """Return ``out`` for a stop message, ``in`` for a start message, None for anything else."""
    folded = _fold(text or "")
    if folded in STOP_WORDS:
        return "out"
    if folded in START_WORDS:
        return "in"
    return None
