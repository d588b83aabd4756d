"""An OpenAI-compatible chat completions server on 127.0.0.1, standing in for a provider.

The demo and the tests point LiteLLM at it (`OPENAI_BASE_URL`), so nothing needs a provider
account or the network. It answers `POST .../chat/completions`, plain and streaming, with a
reply that quotes the last user message (after 3 s when it contains "[slow]"), and counts
tokens as words. Like Respan's gateway it
answers with an `X-Respan-Log-Id` header, so it stands in for the gateway too. Every request
is kept in `server.requests` for tests to inspect.

    python example_projects/loopback_llm.py --port 8765
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def reply_to(messages: list[dict[str, Any]]) -> str:
    last = next((m for m in reversed(messages) if m.get("role") == "user"), {})
    content = last.get("content") or ""
    if isinstance(content, list):
        content = " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    return f"You said: {content[:200]}"


def _tokens(text: str) -> int:
    return max(1, len(text.split()))


class LLMRequestHandler(BaseHTTPRequestHandler):
    server: LoopbackLLM

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        request = json.loads(body or b"{}")
        with self.server.lock:
            self.server.requests.append(
                {"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                 "body": request}
            )
            self.log_id = f"log-{len(self.server.requests)}"
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self.send_error(404)
            return

        messages = request.get("messages") or []
        text = reply_to(messages)
        if "[slow]" in text:  # lets tests hang up on a request that is still waiting
            time.sleep(3)
        usage = {
            "prompt_tokens": sum(_tokens(str(m.get("content", ""))) for m in messages),
            "completion_tokens": _tokens(text),
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        model = request.get("model", "stand-in")
        if request.get("stream"):
            self._stream(model, text, usage)
        else:
            self._answer(model, text, usage)

    def _answer(self, model: str, text: str, usage: dict[str, int]) -> None:
        payload = json.dumps(
            {
                "id": "chatcmpl-loopback",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                    }
                ],
                "usage": usage,
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Respan-Log-Id", self.log_id)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _stream(self, model: str, text: str, usage: dict[str, int]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("X-Respan-Log-Id", self.log_id)
        self.end_headers()
        words = text.split(" ")
        chunks = [{"role": "assistant", "content": ""}] + [
            {"content": word if index == 0 else " " + word} for index, word in enumerate(words)
        ]
        for delta in chunks:
            self._event({"choices": [{"index": 0, "delta": delta, "finish_reason": None}]}, model)
        self._event({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}, model)
        self._event({"choices": [], "usage": usage}, model)
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()

    def _event(self, fields: dict[str, Any], model: str) -> None:
        chunk = {
            "id": "chatcmpl-loopback",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            **fields,
        }
        self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        self.wfile.flush()


class LoopbackLLM(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int = 0):
        super().__init__(("127.0.0.1", port), LLMRequestHandler)
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def start(self) -> LoopbackLLM:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8765)
    port = parser.parse_args().port
    print(f"loopback LLM on http://127.0.0.1:{port}/v1", flush=True)
    LoopbackLLM(port).serve_forever()
