"""The ``whatsup sink`` process: migrations, the query endpoint, the eraser, then the consume-write-commit
loop."""

from __future__ import annotations

import logging
import signal
import time
from types import FrameType

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import OperationalError

from base import metrics, tls
from base.backlog import sampling_backlog_in_thread
from base.logs import configure_logging
from base.settings import Settings
from sinks.clickhouse import ClickHouseSink
from sinks.engine import is_embedded, make_client
from sinks.erasure import Eraser
from sinks.runner import SinkRunner
from sinks.server import QueryServer

log = logging.getLogger(__name__)


def _open(settings: Settings, max_backoff_s: float = 30.0) -> tuple[Client, list[str]]:
    """Connect and migrate, waiting out a ClickHouse server that is not up yet."""
    delay = 0.5
    while True:
        try:
            client = make_client(settings)
            return client, ClickHouseSink(client, settings).start()
        except (OperationalError, OSError) as exc:
            if is_embedded(settings):
                raise  # a local directory that cannot be opened will not open by waiting
            log.warning(
                "ClickHouse at %s unavailable, retrying in %.1f s: %s", settings.clickhouse_url, delay, exc
            )
            time.sleep(delay)
            delay = min(delay * 2, max_backoff_s)


def run_sink(settings: Settings) -> int:
    """Run the sink until SIGTERM or SIGINT; return the exit status."""
    configure_logging(settings)
    metrics.mark_up("sink")
    writer, applied = _open(settings)
    sink = ClickHouseSink(writer, settings)
    log.info("ClickHouse at %s; migrations applied: %s", settings.clickhouse_url, applied or "none pending")
    runner = SinkRunner(settings, sink)
    server = QueryServer(
        settings.web_host,
        settings.sink_port,
        make_client(settings, readonly=True),
        runner.ready.is_set,
        tls.server_context(settings),
    )
    server.start()
    # LGPD erasures run beside the record sinks, on a client of their own.
    eraser = Eraser(settings, make_client(settings))
    eraser.start()

    def stop(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: writing what is buffered, then stopping", signum)
        runner.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        with sampling_backlog_in_thread(settings, "sink"):
            runner.run()
    finally:
        eraser.stop()
        server.stop()
        writer.close()
    return 0
