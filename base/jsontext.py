"""JSON request bodies read as text: refused, as ValueError, whenever no encoder downstream could write them.

``json.loads`` accepts a ``\\ud800`` escape with no partner, and decodes bytes with
``errors="surrogatepass"`` (so ``ED BF BF`` passes too): the lone surrogate it makes cannot be encoded as
UTF-8 (by Avro, Redis, a password hash). It raises RecursionError, not ValueError, on deep nesting, and a
plain ValueError, not JSONDecodeError, on an integer of more than 4,300 digits.
"""

from __future__ import annotations

import json
import re
from typing import Any

# A \ud800-\udfff escape: the only way a lone surrogate gets into an ASCII body. ASCII bodies without one
# (Meta escapes all non-ASCII text) skip the costlier encoding test.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def loads(body: bytes) -> Any:
    """Parse a JSON body; raise ValueError if it is not JSON, nested too deep, or holds a lone surrogate."""
    try:
        document = json.loads(body)
    except RecursionError:
        raise ValueError("nested too deep") from None
    if not body.isascii() or _SURROGATE_ESCAPE.search(body):
        try:
            json.dumps(document, ensure_ascii=False).encode()
        except (UnicodeEncodeError, RecursionError):
            raise ValueError("a lone surrogate (\\ud800-\\udfff) is not text") from None
    return document
