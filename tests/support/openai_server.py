"""A small local server that speaks the parts of OpenAI's HTTP API the project uses.

Follows the documented shapes of `POST /v1/chat/completions` (JSON and `stream: true` Server-Sent
Events with `stream_options.include_usage`), `POST /v1/embeddings`, `GET /v1/models` and
`GET /v1/organization/costs` (admin key; daily buckets, paginated by `next_page`), with
Bearer-key authentication. Tests script it: `mode` = "ok" | "error" | "slow", and `reply`: the
assistant's content, as a string or as a function of the request's messages (`source_texts` reads the
numbered sources of the service's prompt). Without a script the reply quotes the first sentence of
source [1] and cites it, as a grounded model would, or says NOT_IN_SOURCES (the service's prompt asks for
exactly that) when no term of the question occurs in the sources.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.support.http_fakes import QuietHandler

Reply = str | Callable[[list[dict[str, Any]]], str]
SOURCE_HEADER_RE = re.compile(r"^\[(\d+)\] .*$", re.M)


def source_texts(messages: list[dict[str, Any]]) -> dict[int, str]:
    """The numbered sources of the service's prompt: {1: text, 2: text, ...}."""
    prompt = str(messages[-1].get("content", ""))
    body = prompt.split("Sources:\n", 1)[-1].split("\n\nQuestion:", 1)[0]
    headers = list(SOURCE_HEADER_RE.finditer(body))
    texts = {}
    for i, header in enumerate(headers):
        end = headers[i + 1].start() if i + 1 < len(headers) else len(body)
        texts[int(header.group(1))] = body[header.end():end].strip()
    return texts


def first_sentence(text: str) -> str:
    """The first prose sentence of a source; for a source that is only a table, its first data row's cells."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    prose = " ".join(line for line in lines if not line.startswith(("```", "|", "#")))
    if not prose:
        rows = [line for line in lines if line.startswith("|") and not set(line) <= set("|-: ")]
        prose = ", ".join(cell.strip() for cell in rows[1 if len(rows) > 1 else 0].strip("|").split("|")) if rows else ""
    return re.split(r"(?<=[.!?۔؟])\s+", prose.strip())[0].rstrip(".!?۔؟ ")


def question_of(messages: list[dict[str, Any]]) -> str:
    """What the reader asks: the question, with the passage they selected when there is one."""
    prompt = str(messages[-1].get("content", ""))
    marker = "The reader selected" if "The reader selected" in prompt else "Question:"
    return prompt[prompt.rfind(marker):].strip()


def grounded_reply(messages: list[dict[str, Any]]) -> str:
    """Source [1]'s first sentence, cited; NOT_IN_SOURCES when no term of the question occurs in the sources."""
    from app.rag.answering import NOT_IN_SOURCES
    from app.rag.sparse import tokenize

    sources = source_texts(messages)
    if not sources or not set(tokenize(question_of(messages))) & set(tokenize(" ".join(sources.values()))):
        return NOT_IN_SOURCES
    return f"According to the book, {first_sentence(sources[min(sources)])} [1]."


class FakeOpenAI:
    def __init__(self, accepted_keys: set[str] | None = None) -> None:
        self.accepted_keys = accepted_keys or {"sk-test"}
        self.mode = "ok"
        self.slow_seconds = 5.0
        self.reply: Reply | None = None
        self.requests: list[dict[str, Any]] = []
        self.answered = 0  # POSTs whose answer has been written in full (a slow one included)
        self.admin_keys: set[str] = {"sk-admin-test"}
        self.daily_costs: dict[str, float] = {}  # "YYYY-MM-DD" (UTC) -> USD, for GET /v1/organization/costs
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> "FakeOpenAI":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(QuietHandler):
            def _authorized(self) -> bool:
                header = self.headers.get("authorization", "")
                if header.removeprefix("Bearer ") in fake.accepted_keys:
                    return True
                self._json(401, {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error",
                                           "code": "invalid_api_key"}})
                return False

            def do_GET(self) -> None:
                if self.path.startswith("/v1/organization/costs"):
                    self._organization_costs()
                    return
                if not self._authorized():
                    return
                if self.path.rstrip("/") == "/v1/models":
                    self._json(200, {"object": "list", "data": [
                        {"id": "gpt-4o-mini", "object": "model", "created": 0, "owned_by": "openai"},
                        {"id": "text-embedding-3-small", "object": "model", "created": 0, "owned_by": "openai"},
                    ]})
                else:
                    self._json(404, {"error": {"message": "not found", "type": "invalid_request_error"}})

            def _organization_costs(self) -> None:
                """Daily buckets from start_time (inclusive) to end_time (exclusive), `limit` per page, admin key only."""
                if self.headers.get("authorization", "").removeprefix("Bearer ") not in fake.admin_keys:
                    self._json(401, {"error": {"message": "This endpoint requires an admin API key",
                                               "type": "invalid_request_error", "code": "invalid_api_key"}})
                    return
                query = parse_qs(urlsplit(self.path).query)
                if "start_time" not in query or query.get("bucket_width", ["1d"])[0] != "1d":
                    self._json(400, {"error": {"message": "start_time is required; bucket_width must be 1d",
                                               "type": "invalid_request_error"}})
                    return
                start = int(query["page"][0]) if "page" in query else int(query["start_time"][0])
                end = int(query["end_time"][0]) if "end_time" in query else start + 7 * 86400
                limit = int(query.get("limit", ["7"])[0])
                buckets = []
                for bucket_start in range(start, end, 86400)[:limit]:
                    day = datetime.fromtimestamp(bucket_start, UTC).date().isoformat()
                    results = ([{"object": "organization.costs.result", "amount": {
                        "value": fake.daily_costs[day], "currency": "usd"}, "line_item": None, "project_id": None}]
                        if day in fake.daily_costs else [])
                    buckets.append({"object": "bucket", "start_time": bucket_start, "end_time": bucket_start + 86400,
                                    "results": results})
                next_start = start + limit * 86400
                more = next_start < end
                self._json(200, {"object": "page", "data": buckets, "has_more": more,
                                 "next_page": str(next_start) if more else None})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                fake.requests.append({"path": self.path, "body": body})
                if not self._authorized():
                    return
                if fake.mode == "error":
                    self._json(500, {"error": {"message": "The server had an error", "type": "server_error"}})
                    return
                if fake.mode == "slow":
                    time.sleep(fake.slow_seconds)
                if self.path == "/v1/embeddings":
                    self._embeddings(body)
                elif self.path == "/v1/chat/completions":
                    self._chat(body)
                else:
                    self._json(404, {"error": {"message": "not found", "type": "invalid_request_error"}})
                fake.answered += 1

            def _embeddings(self, body: dict[str, Any]) -> None:
                inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
                data = [{"object": "embedding", "index": i, "embedding": _vector(text, 1536)} for i, text in enumerate(inputs)]
                tokens = sum(len(str(t).split()) for t in inputs)
                self._json(200, {"object": "list", "data": data, "model": body["model"],
                                 "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

            def _chat(self, body: dict[str, Any]) -> None:
                prompt = " ".join(str(m.get("content", "")) for m in body["messages"])
                script = fake.reply or grounded_reply
                text = script(body["messages"]) if callable(script) else script
                prompt_tokens, completion_tokens = len(prompt.split()), len(text.split())
                usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                         "total_tokens": prompt_tokens + completion_tokens}
                base = {"id": "chatcmpl-test", "created": int(time.time()), "model": body["model"]}
                if not body.get("stream"):
                    self._json(200, {**base, "object": "chat.completion", "choices": [{
                        "index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop",
                    }], "usage": usage})
                    return
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.end_headers()
                pieces = [w + " " for w in text.split(" ")]
                for i, piece in enumerate(pieces):
                    delta = {"content": piece.rstrip() if i == len(pieces) - 1 else piece}
                    if i == 0:
                        delta["role"] = "assistant"
                    chunk = {**base, "object": "chat.completion.chunk",
                             "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                final = {**base, "object": "chat.completion.chunk",
                         "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
                self.wfile.write(f"data: {json.dumps(final)}\n\n".encode())
                if (body.get("stream_options") or {}).get("include_usage"):
                    usage_chunk = {**base, "object": "chat.completion.chunk", "choices": [], "usage": usage}
                    self.wfile.write(f"data: {json.dumps(usage_chunk)}\n\n".encode())
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()

        return Handler


def _vector(text: str, dims: int) -> list[float]:
    seed = hashlib.sha256(str(text).encode()).digest()
    values = [((seed[i % 32] + i * 31) % 255) / 255.0 - 0.5 for i in range(dims)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]
