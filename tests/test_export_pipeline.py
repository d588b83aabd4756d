"""Export never hurts the application and loses nothing it can keep: a real exporter posting
to loopback ingests that fail, refuse, throttle or hang."""

import logging
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest
import requests
from chat_stack import FlaskChatStack
from flask import Flask
from support.ingest import Ingest
from werkzeug.serving import make_server

from respan_core import Respan
from respan_core.batching import ExportQueue
from respan_flask import Respan as FlaskRespan

KEY = "pipeline-key"


@pytest.fixture
def ingest_that():
    """Start an ingest whose answers follow `answer(n)`; stopped after the test."""
    servers = []

    def start(answer):
        server = Ingest(answer)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def _client(server, **options):
    return Respan(api_key=KEY, base_url=server.base_url, **options)


def _make_spans(client, count, prefix="span"):
    for n in range(count):
        client.tracer.start_span(f"{prefix}-{n}").end()


def test_failures_that_may_pass_are_retried_until_the_batch_goes(ingest_that):
    server = ingest_that(lambda n: (500, {}) if n <= 2 else (200, {}))
    client = _client(server)

    _make_spans(client, 3)
    assert client.flush(timeout=20)

    assert server.attempts == 3
    assert sorted(s.name for s in server.spans()) == ["span-0", "span-1", "span-2"]
    client.shutdown()


def test_a_429_is_retried_after_the_time_it_asks_for(ingest_that):
    answered_at = []

    def answer(n):
        answered_at.append(time.monotonic())
        return (429, {"Retry-After": "1"}) if n == 1 else (200, {})

    server = ingest_that(answer)
    client = _client(server)

    _make_spans(client, 1)
    assert client.flush(timeout=20)

    assert len(answered_at) == 2
    assert answered_at[1] - answered_at[0] >= 1.0
    client.shutdown()


@pytest.mark.parametrize(
    "status, warning",
    [(401, "Respan rejected the API key (HTTP 401)"), (400, "refused 1 spans with HTTP 400")],
)
def test_a_refusal_is_not_retried_and_warned_about_once(ingest_that, caplog, status, warning):
    server = ingest_that(lambda n: (status, {}))
    client = _client(server)

    with caplog.at_level(logging.WARNING, logger="respan_core"):
        _make_spans(client, 1)
        client.flush(timeout=10)
        _make_spans(client, 1)
        client.flush(timeout=10)

    assert server.attempts == 2  # one per batch: no retry
    assert [r.getMessage() for r in caplog.records if warning in r.getMessage()] != []
    assert len([r for r in caplog.records if warning in r.getMessage()]) == 1
    assert KEY not in caplog.text
    client.shutdown()


def test_a_full_queue_drops_and_counts_without_waiting(caplog):
    release = threading.Event()

    class StuckExporter:
        def export(self, spans):
            release.wait()

        def shutdown(self):
            pass

    queue = ExportQueue(StuckExporter(), max_queue_size=10, max_batch_size=5)
    client = Respan(exporter=StuckExporter())
    client.tracer_provider.add_span_processor(queue)

    with caplog.at_level(logging.WARNING, logger="respan_core"):
        started = time.perf_counter()
        _make_spans(client, 200)
        elapsed = time.perf_counter() - started

    assert queue.dropped >= 200 - 10 - 5
    assert elapsed < 2.0
    drops = [r.getMessage() for r in caplog.records if "export queue is full" in r.getMessage()]
    assert len(drops) == 1
    release.set()
    client.shutdown(timeout=2)


def test_each_full_batch_is_exported_at_once_and_the_rest_waits_for_the_delay():
    batches = []
    exported = threading.Event()

    class Recorder:
        def export(self, spans):
            batches.append([span.name for span in spans])
            if sum(map(len, batches)) >= 10:
                exported.set()

        def shutdown(self):
            pass

    class Discard:
        def export(self, spans):
            pass

        def shutdown(self):
            pass

    queue = ExportQueue(Recorder(), max_batch_size=5, schedule_delay=60)
    client = Respan(exporter=Discard())
    client.tracer_provider.add_span_processor(queue)

    _make_spans(client, 12)

    assert exported.wait(5)  # two full batches, not a minute later
    time.sleep(0.2)
    assert [len(batch) for batch in batches] == [5, 5]
    assert queue.force_flush(2000)
    assert [len(batch) for batch in batches] == [5, 5, 2]
    client.shutdown(timeout=2)


def test_flush_and_shutdown_return_within_their_timeout_when_the_ingest_hangs(ingest_that):
    server = ingest_that(lambda n: (None, {}))
    client = _client(server)
    _make_spans(client, 5)

    started = time.monotonic()
    assert client.flush(timeout=1) is False
    flushed_in = time.monotonic() - started
    started = time.monotonic()
    client.shutdown(timeout=1)
    shut_down_in = time.monotonic() - started

    assert flushed_in < 2.0
    assert shut_down_in < 2.0


def test_an_ingest_down_for_20_seconds_loses_no_span_up_to_the_queue_size(ingest_that):
    recovers_at = time.monotonic() + 20
    server = ingest_that(lambda n: (500, {}) if time.monotonic() < recovers_at else (200, {}))
    client = _client(server)

    for second in range(10):  # spans keep coming during the outage
        _make_spans(client, 30, prefix=f"s{second}")
        time.sleep(1)
    assert client.flush(timeout=60)

    names = [s.name for s in server.spans()]
    assert len(names) == 300
    assert len(set(names)) == 300
    client.shutdown()


def test_pending_spans_are_exported_at_process_exit(ingest_that, tmp_path):
    server = ingest_that(lambda n: (200, {}))
    script = textwrap.dedent(
        f"""
        from respan_core import Respan
        client = Respan(api_key="{KEY}", base_url="{server.base_url}")
        for n in range(5):
            client.tracer.start_span(f"at-exit-{{n}}").end()
        """
    )
    env = {**os.environ, "OTEL_BSP_SCHEDULE_DELAY": "600000"}  # only the exit exports

    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=60)

    assert sorted(s.name for s in server.spans()) == [f"at-exit-{n}" for n in range(5)]


def test_a_hanging_ingest_delays_process_exit_by_at_most_the_exit_timeout(ingest_that):
    server = ingest_that(lambda n: (None, {}))
    script = textwrap.dedent(
        f"""
        from respan_core import Respan
        client = Respan(api_key="{KEY}", base_url="{server.base_url}")
        client.tracer.start_span("never-answered").end()
        """
    )

    started = time.monotonic()
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)

    assert time.monotonic() - started < 5.0 + 4.0  # the exit timeout, plus interpreter start


def test_spans_made_in_forked_children_are_all_exported_once(ingest_that):
    server = ingest_that(lambda n: (200, {}))
    script = textwrap.dedent(
        f"""
        import os, sys
        from respan_core import Respan
        client = Respan(api_key="{KEY}", base_url="{server.base_url}")
        client.tracer.start_span("in-parent").end()   # queued before the fork
        children = []
        for child in range(4):
            pid = os.fork()
            if pid == 0:
                for n in range(25):
                    client.tracer.start_span(f"child-{{child}}-{{n}}").end()
                sys.exit(0)  # a normal exit: the child exports what it made
            children.append(pid)
        for pid in children:
            os.waitpid(pid, 0)
        """
    )

    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)

    spans = server.spans()
    names = [s.name for s in spans]
    assert names.count("in-parent") == 1
    assert len([n for n in names if n.startswith("child-")]) == 100
    assert len({(s.trace_id, s.span_id) for s in spans}) == len(spans)


def test_gunicorn_preloaded_with_four_workers_exports_every_request(ingest_that, tmp_path):
    server = ingest_that(lambda n: (200, {}))
    stack = FlaskChatStack(
        tmp_path,
        {"RESPAN_API_KEY": KEY, "RESPAN_BASE_URL": server.base_url},
        web_options=("--preload", "--workers", "4"),
    ).start()
    try:
        def browse():
            for _ in range(10):
                requests.get(f"{stack.base_url}/login/").raise_for_status()

        browsers = [threading.Thread(target=browse) for _ in range(4)]
        for browser in browsers:
            browser.start()
        for browser in browsers:
            browser.join()
    finally:
        stack.stop()  # each worker exports what it has at exit

    pages = [s for s in server.spans() if s.name == "GET /login/"]
    assert len(pages) == 40
    assert len({(s.trace_id, s.span_id) for s in pages}) == len(pages)


def _request_time(base_url, tmp_path, name):
    """Mean seconds per request of a traced Flask app whose ingest is at `base_url`."""
    app = Flask(name)
    app.config.update(RESPAN_API_KEY=KEY, RESPAN_BASE_URL=base_url, RESPAN_ENVIRONMENT=name,
                      RESPAN_INSTRUMENT_LITELLM=False, RESPAN_INSTRUMENT_CELERY=False)

    @app.get("/work")
    def work():
        return "done"

    FlaskRespan(app)
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        with requests.Session() as browser:
            url = f"http://127.0.0.1:{httpd.server_port}/work"
            for _ in range(50):
                browser.get(url)
            started = time.perf_counter()
            for _ in range(300):
                browser.get(url).raise_for_status()
            return (time.perf_counter() - started) / 300
    finally:
        httpd.shutdown()
        httpd.server_close()
        FlaskRespan.client(app).shutdown(timeout=0.5)


def test_an_ingest_that_is_down_or_hangs_does_not_slow_requests(ingest_that, tmp_path):
    healthy = ingest_that(lambda n: (200, {}))
    hanging = ingest_that(lambda n: (None, {}))
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{probe.getsockname()[1]}/api"

    baseline = _request_time(healthy.base_url, tmp_path, "healthy")
    ratios = {
        "down": _request_time(down, tmp_path, "down") / baseline,
        "hanging": _request_time(hanging.base_url, tmp_path, "hanging") / baseline,
    }

    print(f"request time against a healthy ingest: {ratios}")
    assert ratios["down"] < 2.0
    assert ratios["hanging"] < 2.0


def test_flush_says_false_when_the_batch_could_not_be_exported(ingest_that):
    server = ingest_that(lambda n: (400, {}))
    client = _client(server)

    _make_spans(client, 1)

    assert client.flush(timeout=10) is False
    client.shutdown()
