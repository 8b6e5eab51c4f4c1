"""The requests of every HTTP endpoint the project serves, as hypothesis strategies, mostly malformed.

The intake routes are drawn in ``intake.py``; here the worker's dispatcher API (any path id, any key), the
sink's read-only SQL endpoint (any SQL, bodies of any kind, a Content-Length that lies) and the console's
sign-in, reads and actions (any name, password, code, cookie, query string or note). The ``*_endpoints``
lists name each endpoint for the report.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from loadtest.fuzzing.intake import META_ROUTE as META_ROUTE
from loadtest.fuzzing.intake import intake_endpoints as intake_endpoints
from loadtest.fuzzing.intake import tracking_endpoints as tracking_endpoints
from loadtest.fuzzing.json_inputs import json_bodies, json_values, text_values, weighted
from loadtest.fuzzing.requests import CONSOLE_LIMIT as CONSOLE_LIMIT
from loadtest.fuzzing.requests import INGEST_LIMIT as INGEST_LIMIT
from loadtest.fuzzing.requests import SINK_LIMIT as SINK_LIMIT
from loadtest.fuzzing.requests import WORKER_LIMIT as WORKER_LIMIT
from loadtest.fuzzing.requests import Credentials as Credentials
from loadtest.fuzzing.requests import Endpoint as Endpoint
from loadtest.fuzzing.requests import (
    Headers,
    Request,
    content_type,
    header,
    header_bytes,
    path_ids,
    query_strings,
)


def dispatcher_keys(c: Credentials) -> st.SearchStrategy[Headers]:
    keys = st.sampled_from([c.dispatcher_key, c.internal_key, c.partner_key, c.ingest_key]).map(str.encode)
    return header("X-API-Key", keys)


def dispatcher_read(c: Credentials, route: str) -> st.SearchStrategy[Request]:
    """``GET`` of a dispatcher route (``{id}`` in ``route``): any path id, any key, sometimes routed."""
    routed = st.sampled_from([(), (), (), (("X-Whatsup-Routed", b"1"),)])
    return st.builds(
        lambda id_, key, hop: Request("GET", route.format(id=id_), key + hop),
        path_ids(),
        dispatcher_keys(c),
        routed,
    )


SQL = (
    "SELECT 1", "SELECT count() FROM gps_pings", "SELECT {x:String}", "SELECT {x:Int64} + 1",
    "SELECT * FROM delivery_events LIMIT 3", "SELECT nan, inf, -inf", "SELECT toDateTime64(0, 3)",
    "INSERT INTO gps_pings VALUES (1)", "DROP TABLE gps_pings", "CREATE TABLE x (a Int8) ENGINE = Memory",
    "SELECT * FROM no_such_table", "SELECT", "", "SELECT 'é', '\\xff'", "SELECT {x:Array(String)}",
    "SELECT sleep(0.001)", "SET readonly = 0", "SELECT * FROM system.numbers LIMIT 2",
)  # fmt: skip


def _sink_documents() -> st.SearchStrategy[Any]:
    sql = st.one_of(st.sampled_from(SQL), st.text(max_size=60))
    params = st.dictionaries(st.sampled_from(["x", "y", "driver_id"]), json_values, max_size=2)
    return st.fixed_dictionaries({"sql": sql}, optional={"params": params})


def _sink_raw() -> st.SearchStrategy[Request]:
    """Draw requests whose Content-Length the sink's server parses itself: not a number, negative, a lie."""
    lengths = st.sampled_from([b"abc", b"-1", b"1e3", b"", b" 5", b"0x10", b"99999999999999999999", b"64"])

    def build(length: bytes) -> Request:
        body = b'{"sql": "SELECT 1"}'
        head = (
            b"POST /query HTTP/1.1\r\nHost: fuzz\r\nContent-Type: application/json\r\nContent-Length: "
            + length
        )
        return Request("POST", "/query", (), body, raw=head + b"\r\nConnection: close\r\n\r\n" + body)

    return lengths.map(build)


def sinkquery_strings(limit: int) -> st.SearchStrategy[Request]:
    """``POST /query`` on the sink: read-only SQL of any kind, malformed bodies, lying Content-Lengths."""
    posted = st.builds(
        lambda ctype, body: Request("POST", "/query", ctype, body),
        content_type(),
        json_bodies(_sink_documents(), limit),
    )
    return weighted((19, posted), (1, _sink_raw()))


def cookies(c: Credentials) -> st.SearchStrategy[Headers]:
    values = st.one_of(
        header_bytes.map(lambda v: b"whatsup_console=" + v),
        st.sampled_from([b"whatsup_console=\xff\xfe", b"whatsup_console=", b"whatsup_console", b"=;=;",
                         b"whatsup_console=a; whatsup_console=b", b'whatsup_console="x', b"\xc3\x28"]),
    )  # fmt: skip
    return weighted((2, st.just(())), (1, values.map(lambda v: (("Cookie", v),))))


def console_login(c: Credentials, limit: int) -> st.SearchStrategy[Request]:
    """``POST /auth/login``: names, passwords and codes of every type, the real dispatcher's among them."""
    codes = st.one_of(
        st.text(alphabet="0123456789", min_size=6, max_size=6),
        st.sampled_from(["١٢٣٤٥٦", "²²²²²²"]),
        text_values(),
    )
    documents = st.fixed_dictionaries(
        {
            "name": st.one_of(st.just(c.dispatcher), text_values()),
            "password": st.one_of(st.just(c.dispatcher_password), text_values()),
            "code": codes,
        }
    )
    return st.builds(
        lambda ctype, cookie, body: Request("POST", "/auth/login", ctype + cookie, body),
        content_type(),
        cookies(c),
        json_bodies(documents, limit),
    )


def console_session(c: Credentials) -> st.SearchStrategy[Request]:
    """``GET /auth/session`` and ``POST /auth/logout`` with any cookie."""
    routes = st.sampled_from([("GET", "/auth/session"), ("POST", "/auth/logout")])
    return st.builds(lambda route, cookie: Request(route[0], route[1], cookie), routes, cookies(c))


CONSOLE_READS = (
    "/v1/drivers", "/v1/drivers/{id}", "/v1/drivers/{id}/trail", "/v1/alerts", "/v1/deliveries",
    "/v1/cells/hot", "/v1/summary",
)  # fmt: skip


def console_reads(c: Credentials) -> st.SearchStrategy[Request]:
    """The console's ``GET /v1/...`` routes: any query string, any path id, a key or a cookie."""
    keys = st.one_of(dispatcher_keys(c), cookies(c))

    def build(args: tuple[str, str, str, Headers]) -> Request:
        route, id_, query, key = args
        return Request("GET", f"{route.format(id=id_)}?{query}", key)

    return st.tuples(st.sampled_from(CONSOLE_READS), path_ids(), query_strings(), keys).map(build)


def console_actions(c: Credentials, limit: int) -> st.SearchStrategy[Request]:
    """The console's ``POST`` actions: acknowledge, resolve, message a driver; bodies of any kind."""
    actions = st.sampled_from(["ack", "resolve", "ack", "zzz", "%ff"])
    paths = st.one_of(
        st.tuples(path_ids(), actions).map(lambda a: f"/v1/alerts/{a[0]}/{a[1]}"),
        st.one_of(st.just(c.driver_id), path_ids()).map(lambda d: f"/v1/drivers/{d}/message"),
    )
    documents = st.fixed_dictionaries({}, optional={"note": text_values(), "text": text_values()})
    return st.builds(
        lambda path, key, ctype, body: Request("POST", path, key + ctype, body),
        paths,
        dispatcher_keys(c),
        content_type(),
        json_bodies(documents, limit),
    )


def dispatcher_endpoints(c: Credentials) -> list[Endpoint]:
    """The worker's dispatcher API."""
    return [
        ("GET /v1/drivers/{id}", lambda: dispatcher_read(c, "/v1/drivers/{id}")),
        ("GET /v1/deliveries/{id}", lambda: dispatcher_read(c, "/v1/deliveries/{id}")),
        ("GET /v1/deliveries/{id}/history", lambda: dispatcher_read(c, "/v1/deliveries/{id}/history")),
    ]


def console_endpoints(c: Credentials) -> list[Endpoint]:
    """The console's sign-in, reads and actions."""
    return [
        ("POST /auth/login", lambda: console_login(c, CONSOLE_LIMIT)),
        ("GET /auth/session, POST /auth/logout", lambda: console_session(c)),
        ("GET /v1/... (console reads)", lambda: console_reads(c)),
        (
            "POST /v1/alerts/{id}/{action}, /v1/drivers/{id}/message",
            lambda: console_actions(c, CONSOLE_LIMIT),
        ),
    ]


def sink_endpoints() -> list[Endpoint]:
    """The sink's read-only SQL endpoint."""
    return [("POST /query (sink)", lambda: sinkquery_strings(SINK_LIMIT))]
