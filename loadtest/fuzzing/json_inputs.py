"""Malformed JSON bodies as hypothesis strategies: every way a client gets a body wrong.

``json_bodies(documents, limit)`` draws, from well-formed documents of an endpoint's contract, bodies that
are valid, mutated (a field of the wrong type, missing, unknown, duplicated, given a NaN, Infinity or
5,000-digit literal), or broken as bytes (truncated, bit-flipped, invalid UTF-8, lone surrogates, another
encoding), or nothing like the contract at all (empty, random bytes, another JSON type, nested 200,000
deep, one byte past the server's size limit).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

from hypothesis import strategies as st

DEEP = 200_000
# Raw tokens put where a value goes: extremes JSON allows, and what it does not.
LITERALS = (
    b"NaN", b"-NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e400", b"1" * 5000, b"-0", b"-0.0",
    b"9223372036854775808", b"-9223372036854775809", b"18446744073709551616", b"4.9e-324", b"1e-400",
    b"0x10", b"01", b"+1", b"1.", b".5", b"tru", b"nul", b"undefined", b"'single'", b'"\\ud800"',
    b'"\\udfff\\ud800"', b'"\\u0000"', b'"\\x41"', b"[", b"{", b'"', b"",
)  # fmt: skip
INVALID_UTF8 = (
    b"\xff", b"\xfe", b"\x80", b"\xc3\x28", b"\xc0\xaf", b"\xe0\x80\xaf", b"\xed\xa0\x80", b"\xed\xbf\xbf",
    b"\xf4\x90\x80\x80", b"\xf8\x88\x80\x80\x80", b"\xe2\x82", b"\xc3",
)  # fmt: skip
SURROGATES = ("\ud800", "\udfff", "a\udc80b", "\udbff\udbff")
_MARK = "\x00fuzz-mark\x00"
_MARK_JSON = json.dumps(_MARK).encode()

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([2**31, -(2**31) - 1, 2**53 + 1, 2**63, -(2**63) - 1, 2**64, 10**400]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(SURROGATES),
    st.text(alphabet=st.characters(min_codepoint=0x80), max_size=8),
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=10,
)


def dumps(document: Any, ensure_ascii: bool = True) -> bytes:
    """Serialize anything json.dumps can, NaN and lone surrogates included (escaped, or as CESU bytes)."""
    return json.dumps(document, ensure_ascii=ensure_ascii).encode("utf-8", "surrogatepass")


def _slots(document: Any) -> Iterator[tuple[Any, Any]]:
    """Yield (container, key) for every value inside ``document``, depth first."""
    items = document.items() if isinstance(document, dict) else enumerate(document)
    for key, value in list(items):
        yield document, key
        if isinstance(value, dict | list):
            yield from _slots(value)


@st.composite
def mutated(draw: st.DrawFn, documents: st.SearchStrategy[Any]) -> bytes:
    """Return a document with one value changed: another type, removed, an unknown key, a raw literal."""
    document = copy.deepcopy(draw(documents))
    slots = list(_slots(document)) if isinstance(document, dict | list) else []
    if not slots:
        return dumps(draw(json_values))
    container, key = draw(st.sampled_from(slots))
    action = draw(st.sampled_from(["wrong_type", "wrong_type", "delete", "unknown", "literal", "duplicate"]))
    if action == "delete":
        del container[key]
        return dumps(document)
    if action == "unknown" and isinstance(container, dict):
        container[draw(st.text(max_size=12))] = draw(json_values)
        return dumps(document)
    if action == "literal":
        container[key] = _MARK
        return dumps(document).replace(_MARK_JSON, draw(st.sampled_from(LITERALS)), 1)
    if action == "duplicate" and isinstance(container, dict):
        # The same key twice: json.loads keeps the last, other parsers the first.
        container[_MARK] = draw(json_values)
        return dumps(document).replace(_MARK_JSON, json.dumps(key).encode(), 1)
    container[key] = draw(json_values)
    return dumps(document, ensure_ascii=draw(st.booleans()))


@st.composite
def broken(draw: st.DrawFn, bodies: st.SearchStrategy[bytes]) -> bytes:
    """Return a body damaged as bytes: truncated, bit-flipped, invalid UTF-8, a BOM or another encoding."""
    body = draw(bodies)
    action = draw(st.sampled_from(["truncate", "flip", "utf8", "utf8", "bom", "encoding", "nul"]))
    if action == "truncate" and body:
        return body[: draw(st.integers(0, len(body) - 1))]
    if action == "flip" and body:
        data = bytearray(body)
        for _ in range(draw(st.integers(1, 8))):
            data[draw(st.integers(0, len(data) - 1))] ^= 1 << draw(st.integers(0, 7))
        return bytes(data)
    if action == "bom":
        return draw(st.sampled_from([b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff"])) + body
    if action == "encoding":
        text = body.decode("utf-8", "replace")
        return text.encode(draw(st.sampled_from(["utf-16", "utf-16-be", "utf-32", "latin-1"])), "replace")
    if action == "nul":
        at = draw(st.integers(0, len(body)))
        return body[:at] + b"\x00" + body[at:]
    at = draw(st.integers(0, len(body)))
    return body[:at] + draw(st.sampled_from(INVALID_UTF8)) + body[at:]


def deep(depth: int = DEEP) -> st.SearchStrategy[bytes]:
    """Return bodies nested up to ``depth`` levels: arrays, objects, closed or not."""
    levels = st.one_of(st.just(depth), st.integers(900, depth))
    shapes = st.sampled_from(["array", "object", "open", "in_field"])

    def build(args: tuple[int, str]) -> bytes:
        n, shape = args
        if shape == "array":
            return b"[" * n + b"]" * n
        if shape == "object":
            return b'{"a":' * n + b"1" + b"}" * n
        if shape == "open":
            return b"[" * n
        return b'{"pings": ' + b"[" * n + b"]" * n + b', "events": 1}'

    return st.tuples(levels, shapes).map(build)


def oversized(limit: int) -> st.SearchStrategy[bytes]:
    """Return bodies just past ``limit`` bytes: padding inside a string, or whitespace after valid JSON."""

    def build(args: tuple[int, bool]) -> bytes:
        extra, inside = args
        if inside:
            return b'{"pad": "' + b"a" * (limit + extra) + b'"}'
        return b"{}" + b" " * (limit + extra)

    return st.tuples(st.integers(1, 64 * 1024), st.booleans()).map(build)


def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """Draw from one of ``choices`` with the odds given by their weights."""
    table = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.integers(0, len(table) - 1).flatmap(lambda i: table[i])


def json_bodies(documents: st.SearchStrategy[Any], limit: int) -> st.SearchStrategy[bytes]:
    """Draw request bodies for an endpoint whose well-formed documents ``documents`` draws."""
    valid = documents.map(dumps)
    return weighted(
        (3, valid),
        (12, mutated(documents)),
        (4, broken(valid)),
        (2, broken(mutated(documents))),
        (1, json_values.map(dumps)),
        (1, st.sampled_from([b"", b" ", b"null", b"[]", b"{}", b"1", b'"text"', b"true", b"\x00"])),
        (1, st.binary(max_size=512)),
        (1, deep()),
        (1, weighted((1, oversized(limit)), (7, valid))),
    )


# Text a URL or a form can carry (UTF-8 encodable: no lone surrogates).
encodable = st.characters(codec="utf-8")


def text_values() -> st.SearchStrategy[str]:
    """Draw strings a form or query parameter may carry: empty, long, control characters, any script."""
    return st.one_of(
        st.text(encodable, max_size=40),
        st.sampled_from(["", " ", "0", "-1", "NaN", "Infinity", "1e400", "²", "١٢٣", "null", "%ff", "\x00"]),
        st.integers().map(str),
        st.text(alphabet="0123456789", min_size=1, max_size=5000),
        st.text(alphabet=st.characters(min_codepoint=0x80, codec="utf-8"), max_size=20),
    )
