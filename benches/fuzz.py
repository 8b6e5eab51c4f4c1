"""The ``fuzz`` benchmark suite: malformed input at scale against every HTTP endpoint, decoder and agent.

Inputs are drawn by hypothesis (``loadtest/fuzzing``), the same ones every run, and sent to real processes
of one run's topics: an ingest process, a worker, a sink and a console. The suite reports, per endpoint,
the answers by status class; per Avro decoder, what it made of its inputs; per agent, whether it accounted
for every undecodable record and went on processing. It raises after reporting if any answer was a 5xx or
none at all, any refusal named no reason code, any decoder raised something other than SchemaError, any
agent lost a record or stopped, or any process did not stay healthy.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st

from base.settings import Settings
from benches.harness import Result, Suite, bench_settings, load_average
from loadtest.fuzzing import endpoints
from loadtest.fuzzing.agents import CASES, AgentOutcome, fuzz_agent
from loadtest.fuzzing.decoders import DecoderTally, fuzz_decoder
from loadtest.fuzzing.drive import Tally, fuzz_endpoint, healthy, tally_dict
from loadtest.fuzzing.endpoints import Request
from loadtest.fuzzing.stack import FuzzStack
from schemas.codecs import SCHEMA_NAMES

FULL, QUICK = 10_000, 300
ZERO = "target 0"
NOTES = (
    "Inputs are drawn by hypothesis, derandomized (the same inputs every run of the same schemas): valid"
    " documents, documents with one field of the wrong type, missing, unknown or duplicated, NaN, Infinity"
    " and 5,000-digit"
    " literals, lone surrogates, invalid UTF-8, truncations and bit flips, other encodings, nesting 200,000"
    " deep, bodies one byte to 64 KiB past the server's limit, empty and random bodies, every kind of"
    " Content-Type, and missing, wrong or non-ASCII tokens, keys, signatures and cookies.",
    "Signed webhooks are signed over the exact bytes sent, so malformed notifications reach the normalizer;"
    " the unsigned and badly signed ones are another endpoint row.",
    "A refusal is reason-coded when it is a 4xx whose JSON body names a snake_case code in `error`; a 5xx,"
    " a dropped connection or a timeout counts against the endpoint like a refusal without a code.",
    "Requests are well-formed HTTP/1.1 (header values without control characters): what the HTTP parser"
    " itself refuses is not the project's code. The sink's rows include requests whose Content-Length is"
    " not a number, negative or a lie, which its own handler parses.",
    "Agents: N drawn records per topic (well-formed with extreme values, or truncated, bit-flipped, under"
    " an unknown writer fingerprint, another type's, random bytes, tombstones), mostly keyed as the"
    " producer would; every undecodable one must show in the agent's reason-labelled counter, and a valid"
    " record sent after them must take effect where a user sees it.",
)


def _decoder_rows(tally: DecoderTally) -> list[Result]:
    note = f"{tally.decoded:,} decoded, {tally.refused:,} SchemaError ({', '.join(sorted(tally.reasons))})"
    return [
        Result(f"decode {tally.name}: inputs", tally.sent, "inputs", note),
        Result(f"decode {tally.name}: other exceptions or over 1 s of CPU", tally.failures, "inputs", ZERO),
    ]


def _endpoint_rows(process: str, tally: Tally, up: bool) -> list[Result]:
    where = f"{tally.name} [{process}]"
    classes = ", ".join(
        f"{kind} {tally.classes[kind]:,}" for kind in ("2xx", "3xx", "4xx") if tally.classes[kind]
    )
    note = f"{classes}; {'healthy' if up else 'NOT healthy'} after"
    no_answer = tally.classes["5xx"] + tally.classes["no answer"]
    return [
        Result(f"{where}: inputs", tally.sent, "inputs", note),
        Result(f"{where}: 5xx or no answer", no_answer, "answers", ZERO),
        Result(f"{where}: refusals without a reason code", tally.unreasoned, "answers", ZERO),
    ]


def _agent_rows(outcome: AgentOutcome) -> list[Result]:
    case, produced = outcome.case, outcome.produced
    note = f"{produced.undecodable:,} undecodable; on {case.topic}"
    lost, after = outcome.unaccounted, int(outcome.processing_after)
    return [
        Result(f"agent {case.agent}: records", produced.sent, "records", note),
        Result(f"agent {case.agent}: undecodable, not dead-lettered or counted", lost, "records", ZERO),
        Result(f"agent {case.agent}: a valid record processed after", after, "yes=1", "target 1"),
    ]


def _endpoints(stack: FuzzStack) -> list[tuple[str, str, Callable[[], st.SearchStrategy[Request]]]]:
    """Every (process, endpoint, strategy) of the run."""
    c = stack.credentials
    pairs = [("ingest", e) for e in endpoints.intake_endpoints(c, endpoints.INGEST_LIMIT)]
    pairs += [("ingest", e) for e in endpoints.tracking_endpoints(c)]
    pairs += [("worker", e) for e in endpoints.intake_endpoints(c, endpoints.WORKER_LIMIT)]
    pairs += [("worker", e) for e in endpoints.dispatcher_endpoints(c)]
    pairs += [("sink", e) for e in endpoints.sink_endpoints()]
    pairs += [("console", e) for e in endpoints.console_endpoints(c)]
    return [(process, name, make) for process, (name, make) in pairs]


def _healthy(stack: FuzzStack, process: str) -> bool:
    return healthy(stack.urls[process], lambda: stack.alive(process))


def _off_target(result: Result) -> bool:
    return (result.note == ZERO and result.value != 0) or (result.note == "target 1" and result.value != 1)


def run_fuzz(base: Settings, count: int) -> tuple[list[Result], dict[str, Any]]:
    """Fuzz every decoder, endpoint and agent with ``count`` inputs each; return the rows and the whole
    run as plain data (every failing input's sample included)."""
    results: list[Result] = []
    decoders, answers, agents = [], [], []
    for name in SCHEMA_NAMES:
        tally = fuzz_decoder(name, count)
        results += _decoder_rows(tally)
        decoders.append({**vars(tally), "reasons": sorted(tally.reasons)})
    settings = bench_settings(base, "fuzz")
    stack = FuzzStack(settings, settings.data_dir / "bench" / settings.app_id)
    stack.start()
    try:
        for process, name, make in _endpoints(stack):
            answered = fuzz_endpoint(stack.urls[process], name, make(), count)
            up = _healthy(stack, process)
            results += _endpoint_rows(process, answered, up)
            answers.append({"process": process, **tally_dict(answered), "healthy": up})
        for case in CASES:
            outcome = fuzz_agent(stack, case, count)
            results += _agent_rows(outcome)
            produced = outcome.produced
            agents.append(
                {"agent": case.agent, "sent": produced.sent, "undecodable": produced.undecodable,
                 "accounted": outcome.accounted, "processing_after": outcome.processing_after,
                 "elapsed_s": round(outcome.elapsed_s, 1)}
            )  # fmt: skip
        for process in stack.processes:
            up = _healthy(stack, process)
            results.append(Result(f"{process} healthy after every input", int(up), "yes=1", "target 1"))
    finally:
        statuses = stack.stop()
    run = {"count": count, "decoders": decoders, "endpoints": answers, "agents": agents, "exits": statuses}
    return results, run


def run(settings: Settings, quick: bool) -> list[Result]:
    """Run the fuzz suite (quick: a few hundred inputs each instead of 10,000); raise if anything failed."""
    started = time.monotonic()
    at_start = load_average("suite start")
    results, dump = run_fuzz(settings, QUICK if quick else FULL)
    results += [at_start, load_average("suite end")]
    results.append(Result("wall time of the run", time.monotonic() - started, "s", ""))
    path = settings.data_dir / "bench" / f"fuzz-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dump, indent=1, default=str))
    for r in results:
        print(f"{r.name:<80} {r.value:>10,.0f} {r.unit:<8} {r.note}")
    failed = [r.name for r in results if _off_target(r)]
    if failed:
        listed = "\n  ".join(failed)
        raise AssertionError(
            f"fuzz: {len(failed)} result(s) off target (failing inputs in {path}):\n  {listed}"
        )
    return results


SUITE = Suite(name="fuzz", title="Faults: bad input at scale", run=run, notes=NOTES)
