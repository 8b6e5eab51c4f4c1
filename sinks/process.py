"""The ``whatsup sink`` process: migrations, the query endpoint, then the consume-write-commit loop."""

from __future__ import annotations

import logging
import signal
from types import FrameType

from sinks.clickhouse import ClickHouseSink
from sinks.engine import make_client
from sinks.runner import SinkRunner
from sinks.server import QueryServer
from streams.settings import Settings

log = logging.getLogger(__name__)


def run_sink(settings: Settings) -> int:
    """Run the sink until SIGTERM or SIGINT; return the exit status."""
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    writer = make_client(settings)
    sink = ClickHouseSink(writer, settings)
    applied = sink.start()
    log.info("ClickHouse at %s; migrations applied: %s", settings.clickhouse_url, applied or "none pending")
    runner = SinkRunner(settings, sink)
    server = QueryServer(
        settings.web_host, settings.sink_port, make_client(settings, readonly=True), runner.ready.is_set
    )
    server.start()

    def stop(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: writing what is buffered, then stopping", signum)
        runner.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        runner.run()
    finally:
        server.stop()
        writer.close()
    return 0
