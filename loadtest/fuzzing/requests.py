"""What a fuzzed request is, the secrets it may get right, the headers, ids and queries any endpoint takes.

Headers are right often enough for the body behind them to be read (a valid token, key or signature) and
wrong otherwise: missing, garbage, bytes that are not UTF-8. Path ids and query strings are any text,
percent-encoded, with the odd sequences routers and parsers trip on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from hypothesis import strategies as st

from loadtest.fuzzing.json_inputs import encodable, text_values, weighted

Headers = tuple[tuple[str, bytes], ...]
INGEST_LIMIT = 4 * 2**20  # whatsup ingest's client_max_size
WORKER_LIMIT = 2**20  # aiohttp's default, the worker's web server
CONSOLE_LIMIT = 64 * 1024
SINK_LIMIT = 2**20


@dataclass(frozen=True)
class Request:
    """One request: method, path (percent-encoded, with its query), headers and body; or raw bytes."""

    method: str
    path: str
    headers: Headers = ()
    body: bytes = b""
    # A whole HTTP/1.1 request sent as is: framing the server parses itself (a Content-Length that lies).
    raw: bytes | None = None

    def describe(self, width: int = 160) -> str:
        """Return a one-line account of the request, for a report of the inputs that failed."""
        headers = ", ".join(f"{k}: {v!r:.60}" for k, v in self.headers)
        data = self.raw if self.raw is not None else self.body
        return f"{self.method} {self.path[:80]} [{headers}] {len(data)} bytes {data[:width]!r}"


@dataclass(frozen=True)
class Credentials:
    """The secrets and names the processes under test were started with."""

    token_secret: str
    ingest_key: str
    dispatcher_key: str
    partner_key: str
    internal_key: str
    app_secret: str
    verify_token: str
    twilio_token: str
    twilio_url: str
    driver_phone: str
    driver_id: str = "fuzz-driver"
    dispatcher: str = "fuzzer"
    dispatcher_password: str = "fuzz correct horse battery"

    def api_keys(self) -> str:
        """Return the value of WHATSUP_API_KEYS for these keys."""
        return ",".join(
            [f"{self.ingest_key}:ingest", f"{self.dispatcher_key}:dispatcher", f"{self.partner_key}:partner",
             f"{self.internal_key}:internal"]
        )  # fmt: skip


CONTENT_TYPES: tuple[bytes | None, ...] = (
    None, b"application/json", b"application/json; charset=utf-8", b"text/plain", b"",
    b"application/x-www-form-urlencoded", b"multipart/form-data; boundary=x",
    b"application/json; charset=latin-1", b"application/json; charset=bogus",
    b"application/json; charset=utf-16", b"application/xml", b"*/*",
    b"application/json; charset=\xff", b"\xff\xfe",
)  # fmt: skip
# Header values no client should send: empty, control-free garbage, bytes that are not UTF-8, very long.
BAD_HEADER_VALUES: tuple[bytes, ...] = (
    b"", b"null", b"Bearer", b"Basic dXNlcjpwYXNz", b"\xff\xfe", b"\xc3\x28",
    b"Bearer \xff.a.AAAA", b"Bearer a.b", b"Bearer ...", b"Bearer a.b.c.d", b"x" * 4000, b"\xed\xa0\x80",
)  # fmt: skip


# Bytes a header value may hold and HTTP parsers let through: visible ASCII and obs-text (0x80-0xff), no
# control characters (those are the HTTP parser's to refuse, before any handler of the project runs).
header_bytes = st.lists(st.integers(0x21, 0x7E) | st.integers(0x80, 0xFF), max_size=40).map(bytes)


def header(name: str, good: st.SearchStrategy[bytes], odds: int = 6) -> st.SearchStrategy[Headers]:
    """Draw the header ``name``: ``good`` ``odds`` times in ``odds + 2``, else missing or a bad value."""
    bad = st.one_of(st.sampled_from(BAD_HEADER_VALUES), header_bytes)
    return weighted(
        (odds, good.map(lambda v: ((name, v),))),
        (1, st.just(())),
        (1, bad.map(lambda v: ((name, v),))),
    )


def content_type() -> st.SearchStrategy[Headers]:
    return weighted(
        (3, st.just((("Content-Type", b"application/json"),))),
        (2, st.sampled_from(CONTENT_TYPES).map(lambda v: () if v is None else (("Content-Type", v),))),
    )


def path_ids() -> st.SearchStrategy[str]:
    """Draw one path segment: any text (percent-encoded), encodings of invalid UTF-8, braces, long ids.

    Never a "/" (``%2F`` too: the router decodes it), "." or "..": those address another path, not this
    endpoint with an odd id.
    """
    segment = st.text(encodable, min_size=1, max_size=40).filter(
        lambda t: "/" not in t and t not in (".", "..")
    )
    return st.one_of(
        segment.map(lambda t: quote(t, safe="")),
        st.sampled_from(["%ff", "%00", "%c3%28", "%ed%a0%80", "%", "%zz", "a%20b", "{", "}", "%7B%7D",
                         "fuzz-driver", "fuzz-delivery", "NaN", "-1", "%F0%9F%9A%80"]),
        st.integers(1, 4000).map(lambda n: "a" * n),
    )  # fmt: skip


def query_strings() -> st.SearchStrategy[str]:
    """Draw a query string: known and unknown names, odd values, raw percent sequences."""
    names = st.one_of(
        st.sampled_from(
            ["status", "cell", "q", "limit", "cursor", "late", "driver", "state", "kind", "since"]
        ),
        st.text(encodable, max_size=8),
    )
    pairs = st.lists(st.tuples(names, text_values()), max_size=4).map(lambda p: urlencode(p))
    raw = st.sampled_from(["limit=%ff", "cursor=%00", "a=%", "limit=%C2%B2", "&&&", "=", "limit=1&limit=2"])
    return st.one_of(pairs, raw)


Endpoint = tuple[str, Callable[[], st.SearchStrategy[Request]]]
