"""The OpenAI backend and a server's prefix cache: document first in every request, cached tokens as reported.

``FakeVLLMServer`` is a stand-in written for this unit test of pure request/response logic: a loopback HTTP
server that records each request body and answers in vLLM's shape, with ``usage.prompt_tokens_details``
(vLLM's ``--enable-prompt-tokens-details``). The real server path (llama-cpp-python, which reports no cached
tokens) is in test_openai.py. Counting uses the embedded SmolLM2 vocabulary (a local tokenizer, no model).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from chatqa.generation.openai import server_cached_tokens

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "harrow_canal.txt"


class FakeVLLMServer(ThreadingHTTPServer):
    """Reports as cached the characters of the prompt shared with the previous one, divided by 4 (a token
    estimate): what matters here is that the client reads the field, not the number."""

    def __init__(self, report: bool) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.report, self.bodies, self.previous = report, [], ""

    def usage(self, prompt: str) -> dict[str, Any]:
        shared = 0
        for a, b in zip(prompt, self.previous, strict=False):
            if a != b:
                break
            shared += 1
        self.previous = prompt
        usage: dict[str, Any] = {"prompt_tokens": len(prompt) // 4, "completion_tokens": 2}
        if self.report:
            usage["prompt_tokens_details"] = {"cached_tokens": shared // 4}
        return usage


class _Handler(BaseHTTPRequestHandler):
    server: FakeVLLMServer

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, payload: Any, stream: bool = False) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream" if stream else "application/json")
        self.end_headers()
        if stream:
            for event in payload:
                self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
            self.wfile.write(b"data: [DONE]\n\n")
        else:
            self.wfile.write(json.dumps(payload).encode())

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self._send({"data": [{"id": "fake-model"}]})

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.bodies.append(body)
        usage = self.server.usage(body["prompt"])
        if body.get("stream"):
            chunks = [{"choices": [{"text": " Obadiah", "finish_reason": None}]},
                      {"choices": [{"text": " Leverett", "finish_reason": "stop"}]}]  # fmt: skip
            if body.get("stream_options", {}).get("include_usage"):
                chunks.append({"choices": [], "usage": usage})
            self._send(chunks, stream=True)
        else:
            self._send({"choices": [{"text": " Obadiah Leverett", "finish_reason": "stop"}], "usage": usage})


@pytest.fixture(params=[True, False], ids=["reports-cache", "says-nothing"])
def server(request: pytest.FixtureRequest) -> Iterator[FakeVLLMServer]:
    srv = FakeVLLMServer(report=request.param)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _qa(server: FakeVLLMServer, home: Path) -> Any:
    from chatqa import ChatQA

    port = server.server_address[1]
    return ChatQA.from_profile("vllm", home=str(home), **{
        "generator.base_url": f"http://127.0.0.1:{port}/v1", "generator.model": "fake-model",
        "generator.tokenizer": "embedded:smollm2", "generator.prompt_format": "chat", "generator.context_window": 8192,
        "generator.effective_window": None, "generator.max_new_tokens": 8})  # fmt: skip


def test_document_first_and_cached_tokens_as_the_server_reports(server: FakeVLLMServer, tmp_path: Path) -> None:
    qa = _qa(server, tmp_path)
    doc = tmp_path / "canal.txt"
    doc.write_text(SAMPLE.read_text(encoding="utf-8")[3000:6300], encoding="utf-8")
    questions = ["Who first proposed a canal through the vale?", "When did the Act receive the royal assent?"]
    answers = [qa.ask(q, docs=[str(doc)], mode="long") for q in questions]
    streamed: list[str] = []
    answers.append(qa.ask("Who built it?", docs=[str(doc)], mode="long", on_text=streamed.append))
    assert [a.answer for a in answers] == ["Obadiah Leverett"] * 3 and "".join(streamed).strip() == "Obadiah Leverett"
    prompts = [b["prompt"] for b in server.bodies]
    text = doc.read_text(encoding="utf-8").strip()
    cut = [p.index(text) + len(text) for p in prompts]
    # the document comes before anything that changes between questions, identically in every request
    assert len(set(cut)) == 1 and len({p[: cut[0]] for p in prompts}) == 1
    assert all(q in p[cut[0] :] for q, p in zip([*questions, "Who built it?"], prompts, strict=True))
    cached = [a.usage["cached_tokens"] for a in answers]
    if server.report:
        assert cached[0] == 0 and cached[1] >= cut[0] // 4 and cached[2] >= cut[0] // 4  # streamed: last chunk
        assert server.bodies[2]["stream_options"] == {"include_usage": True}
    else:
        assert cached == [0, 0, 0]  # nothing reported, nothing assumed


def test_cached_token_field_shapes() -> None:
    assert server_cached_tokens({"prompt_tokens_details": {"cached_tokens": 96}}) == 96
    assert server_cached_tokens({"prompt_tokens_details": None}) == 0
    assert server_cached_tokens({"prompt_tokens_details": {"cached_tokens": None}}) == 0
    assert server_cached_tokens({}) == 0
