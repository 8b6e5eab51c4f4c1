"""Malformed input against every HTTP endpoint of real processes (ingest, worker, sink, console), and bad
records for every agent that decodes raw bytes: the CI-sized run of the ``fuzz`` suite (benches/fuzz.py).

Each endpoint gets 250 drawn requests (the same every run), each agent 100 drawn records: no answer may be
a 5xx or missing, every refusal must be a 4xx naming its reason code, every process must stay healthy, and
every agent must account for its undecodable records and process a valid one sent after them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from base.kafka import create_topics
from base.settings import Settings
from loadtest.fuzzing import endpoints
from loadtest.fuzzing.agents import CASES, AgentCase, fuzz_agent
from loadtest.fuzzing.drive import Sender, fuzz_endpoint, healthy
from loadtest.fuzzing.endpoints import Request
from loadtest.fuzzing.stack import FuzzStack, credentials

pytestmark = pytest.mark.integration
ENDPOINT_INPUTS, AGENT_RECORDS = 250, 100


@pytest.fixture(scope="module")
def stack(
    kafka_bootstrap: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FuzzStack]:
    """An ingest process, a worker, a sink and a console on this module's topics, with every secret set."""
    run = uuid.uuid4().hex[:8]
    settings = Settings.from_env(
        {
            "WHATSUP_KAFKA_BOOTSTRAP": kafka_bootstrap,
            "WHATSUP_REDIS_URL": redis_url,
            "WHATSUP_TOPIC_PREFIX": f"fz{run}.",
            "WHATSUP_APP_ID": f"whatsup-fz{run}",
            "WHATSUP_PARTITIONS": "2",
        }
    )
    create_topics(settings)
    processes = FuzzStack(settings, tmp_path_factory.mktemp("fuzz"))
    processes.start()
    try:
        yield processes
    finally:
        processes.stop()


def _endpoints(c: endpoints.Credentials) -> dict[str, list[endpoints.Endpoint]]:
    """Every endpoint of each process, as the suite lists them."""
    return {
        "ingest": endpoints.intake_endpoints(c, endpoints.INGEST_LIMIT) + endpoints.tracking_endpoints(c),
        "worker": endpoints.intake_endpoints(c, endpoints.WORKER_LIMIT) + endpoints.dispatcher_endpoints(c),
        "sink": endpoints.sink_endpoints(),
        "console": endpoints.console_endpoints(c),
    }


def _params() -> list[object]:
    params: list[object] = []
    for process, listed in _endpoints(credentials()).items():
        for name, _ in listed:
            params.append(pytest.param(process, name, id=f"{process}: {name}"))
    return params


@pytest.mark.parametrize(("process", "name"), _params())
def test_every_bad_request_is_refused_with_a_reason_and_the_process_stays_up(
    stack: FuzzStack, process: str, name: str
) -> None:
    strategy = dict(_endpoints(stack.credentials)[process])[name]()
    tally = fuzz_endpoint(stack.urls[process], name, strategy, ENDPOINT_INPUTS)
    assert tally.sent >= ENDPOINT_INPUTS * 0.9, tally.summary()
    assert tally.failures == 0, tally.summary() + "\n" + "\n".join(tally.samples)
    assert healthy(stack.urls[process], lambda: stack.alive(process)), f"{process} is not healthy"


@pytest.mark.parametrize("case", CASES, ids=[case.agent for case in CASES])
def test_every_agent_accounts_for_bad_records_and_goes_on(stack: FuzzStack, case: AgentCase) -> None:
    outcome = fuzz_agent(stack, case, AGENT_RECORDS, timeout_s=60.0)
    produced = outcome.produced
    assert outcome.unaccounted == 0, f"{produced.undecodable} undecodable, {outcome.accounted} accounted"
    assert outcome.processing_after, f"{case.agent} did not process a valid record after the bad ones"


def test_an_oversized_webhook_on_ingest_is_a_reasoned_413(stack: FuzzStack) -> None:
    sender = Sender(stack.urls["ingest"])
    try:
        oversized = Request("POST", endpoints.META_ROUTE, body=b"{}" + b" " * endpoints.INGEST_LIMIT)
        status, body = sender.send(oversized)
    finally:
        sender.close()
    assert status == 413 and b'"body_too_large"' in body
