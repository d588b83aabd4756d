"""How fast spans reach a loopback ingest, and how much memory an ingest outage costs.

    python benchmarks/export_throughput.py                    # throughput, then a 60 s outage
    python benchmarks/export_throughput.py --outage-seconds 10

Targets: at least 20,000 spans/s exported; memory flat during the outage, bounded by the
export queue.
"""

from __future__ import annotations

import argparse
import multiprocessing
import socket
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Tracer

from respan_core import Respan
from respan_core.export import RespanExporter

BATCH = 512


class _Accept(BaseHTTPRequestHandler):
    def log_message(self, format, *args):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")


def _llm_like_spans(tracer: Tracer, count: int) -> list:
    """Finished spans shaped like a traced LLM call (a dozen attributes)."""
    spans = []
    for n in range(count):
        span = tracer.start_span(
            "completion",
            attributes={
                "openinference.span.kind": "LLM",
                "llm.model_name": "gpt-4.1-nano",
                "llm.provider": "openai",
                "llm.input_messages.0.message.role": "user",
                "llm.input_messages.0.message.content": f"question {n} " * 20,
                "llm.output_messages.0.message.role": "assistant",
                "llm.output_messages.0.message.content": f"answer {n} " * 40,
                "llm.token_count.prompt": 40,
                "llm.token_count.completion": 80,
                "llm.token_count.total": 120,
                "respan.customer_params.customer_identifier": "42",
                "respan.threads.thread_identifier": "9f2c" * 8,
            },
        )
        span.end()
        spans.append(span)
    return spans


def throughput(total: int = 20_480) -> float:
    # The ingest answers from a process of its own, as a real one would: it must not share
    # the exporter's interpreter lock.
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Accept)
    ingest = multiprocessing.get_context("fork").Process(target=server.serve_forever, daemon=True)
    ingest.start()
    base_url = f"http://127.0.0.1:{server.server_address[1]}/api"
    exporter = RespanExporter(f"{base_url}/v2/traces", "bench")
    spans = _llm_like_spans(TracerProvider().get_tracer("bench"), total)
    started = time.perf_counter()
    for start in range(0, total, BATCH):
        exporter.export(spans[start:start + BATCH])
    rate = total / (time.perf_counter() - started)
    ingest.terminate()
    server.server_close()
    return rate


def _rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def outage_memory(seconds: int, spans_per_second: int = 1000) -> list[float]:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{probe.getsockname()[1]}/api"
    client = Respan(api_key="bench", base_url=down)
    samples = []
    for second in range(seconds):
        _llm_like_spans(client.tracer, spans_per_second)
        if second % 5 == 0:
            samples.append(_rss_mib())
        time.sleep(max(0.0, 1 - 0.1))
    client.shutdown(timeout=0.5)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--outage-seconds", type=int, default=60)
    arguments = parser.parse_args()

    rate = throughput()
    print(f"export to a loopback ingest: {rate:,.0f} spans/s (target >= 20,000)")
    samples = outage_memory(arguments.outage_seconds)
    print(
        f"RSS every 5 s during a {arguments.outage_seconds} s outage at 1,000 spans/s (MiB): "
        + ", ".join(f"{sample:.0f}" for sample in samples)
    )
    print(f"growth after the first sample: {max(samples) - samples[0]:.1f} MiB")


if __name__ == "__main__":
    main()
