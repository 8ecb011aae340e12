"""`nanogpt-tui serve` as a real process on 127.0.0.1, driven by the official `openai` client."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.paths import runs_dir
from tests.tui.model_fixtures import save_tiny_checkpoint

openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

API_KEY = "test-key"
REPO = Path(__file__).resolve().parents[2]
# a long context, so a reply can run long enough to be interrupted
CONTEXT = 2048


class Server:
    def __init__(self, process: subprocess.Popen, url: str, record: Path) -> None:
        self.process, self.url, self.record = process, url, record

    def client(self, api_key: str = API_KEY, **kwargs) -> "openai.OpenAI":
        return openai.OpenAI(base_url=self.url, api_key=api_key, max_retries=0, timeout=60, **kwargs)

    def health(self) -> dict:
        return httpx.get(self.url.removesuffix("/v1") + "/health", timeout=10).json()


def start_server(home: Path, *extra: str) -> Server:
    record = home / "server-record"
    env = {**os.environ, "NANOGPT_TUI_HOME": str(home), "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "nanogpt_tui", "serve", "tiny", "--port", "0",
                                "--record-dir", str(record), "--device", "cpu", *extra],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        record_file = record / "server.json"
        if record_file.exists():
            url = json.loads(record_file.read_text())["url"]
            try:
                httpx.get(url.removesuffix("/v1") + "/health", timeout=2)
                return Server(process, url, record)
            except httpx.TransportError:
                pass
        if process.poll() is not None:
            raise AssertionError(f"the server exited early:\n{process.stdout.read()}")
        time.sleep(0.1)
    process.kill()
    raise AssertionError("the server did not start within 90 s")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("serve_home")
    save_tiny_checkpoint(home / "data" / "runs", "tiny", overrides=[f"train.train_seq_len={CONTEXT}"])
    server = start_server(home, "--api-key", API_KEY)
    yield server
    server.process.terminate()
    output, _ = server.process.communicate(timeout=30)
    assert server.process.returncode == 0, f"the server did not stop cleanly on SIGTERM:\n{output}"
    assert json.loads((server.record / "server.json").read_text())["state"] == "stopped"
    assert "Traceback" not in output, output


def ask(client, content: str, seed: int, max_tokens: int = 24, **kwargs) -> str:
    reply = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": content}],
                                           max_tokens=max_tokens, seed=seed, **kwargs)
    return reply.choices[0].message.content


def stream_text(client, content: str, seed: int, max_tokens: int = 24, **kwargs) -> str:
    chunks = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": content}],
                                            max_tokens=max_tokens, seed=seed, stream=True, **kwargs)
    return "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)


@pytest.mark.slow
def test_models_chat_stream_and_completions_with_the_openai_client(server: Server) -> None:
    client = server.client()
    assert [model.id for model in client.models.list()] == ["tiny"]
    reply = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "ROMEO:"}],
                                           max_tokens=12, seed=3)
    assert reply.object == "chat.completion" and reply.choices[0].message.role == "assistant"
    assert reply.choices[0].finish_reason in ("stop", "length")
    assert reply.usage.completion_tokens <= 12 and reply.usage.prompt_tokens > 0
    assert stream_text(client, "ROMEO:", seed=3, max_tokens=12) == reply.choices[0].message.content, \
        "streaming and non-streaming differ for the same request"
    completion = client.completions.create(model="tiny", prompt="JULIET:", max_tokens=8, seed=1, temperature=0)
    assert completion.object == "text_completion" and completion.usage.completion_tokens <= 8
    pieces = client.completions.create(model="tiny", prompt="JULIET:", max_tokens=8, seed=1, temperature=0,
                                       stream=True)
    assert "".join(piece.choices[0].text for piece in pieces) == completion.choices[0].text
    extra = ask(client, "ROMEO:", seed=3, max_tokens=12, extra_body={"top_k": 1, "repetition_penalty": 1.3})
    assert extra == ask(client, "ROMEO:", seed=9, max_tokens=12, temperature=0.5, top_p=0.9,
                        extra_body={"top_k": 1, "repetition_penalty": 1.3}), "top_k 1 must not depend on the seed"


@pytest.mark.slow
def test_the_reply_equals_the_engines_chat_session(server: Server) -> None:
    from engine.importer import load_model
    from engine.inference.chat import ChatSession, ReplyFinished
    from engine.inference.generate import Generator, SamplingParams

    checkpoint = Path(json.loads((server.record / "server.json").read_text())["checkpoint"])
    # the defaults of every field the request leaves out are the engine's, as in `chat` and the app
    session = ChatSession(Generator.from_checkpoint(load_model(checkpoint), device="cpu"),
                          SamplingParams(max_new_tokens=20, seed=11))
    local = next(event.text for event in session.send("ROMEO:") if isinstance(event, ReplyFinished))
    assert ask(server.client(), "ROMEO:", seed=11, max_tokens=20) == local, "the server's reply differs from chat's"


@pytest.mark.slow
def test_two_concurrent_streams_get_what_each_gets_alone(server: Server) -> None:
    client = server.client()
    prompts = ["ROMEO:", "JULIET: O Romeo"]
    alone = [stream_text(client, prompt, seed=7, max_tokens=40) for prompt in prompts]
    together: dict[int, str] = {}
    threads = [threading.Thread(target=lambda i=i: together.__setitem__(i, stream_text(
        server.client(), prompts[i], seed=7, max_tokens=40))) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert [together[0], together[1]] == alone, "concurrent requests interleaved or changed each other's replies"


@pytest.mark.slow
def test_concurrent_streams_with_their_own_seeds_and_settings_get_what_each_gets_alone(server: Server) -> None:
    asks = [("ROMEO:", {"seed": 3, "temperature": 1.2}), ("ROMEO:", {"seed": 4, "top_p": 0.5}),
            ("JULIET: O Romeo, Romeo", {"seed": 5, "temperature": 0.0}),
            ("a", {"seed": 6, "extra_body": {"top_k": 5, "repetition_penalty": 1.5}})]
    alone = [stream_text(server.client(), prompt, max_tokens=60, **settings) for prompt, settings in asks]
    batches_before = server.health()["batches"]
    together: dict[int, str] = {}
    threads = [threading.Thread(target=lambda i=i: together.__setitem__(i, stream_text(
        server.client(), asks[i][0], max_tokens=60, **asks[i][1]))) for i in range(len(asks))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert [together[i] for i in range(len(asks))] == alone, "requests decoded together changed each other's replies"
    health = server.health()
    assert health["largest_batch"] >= 2, "requests that waited together should have been decoded as one batch"
    assert health["batches"] - batches_before < len(asks)


@pytest.mark.slow
def test_a_client_that_disconnects_stops_its_generation(server: Server) -> None:
    before = server.health()
    with httpx.stream("POST", server.url + "/completions", timeout=30,
                      headers={"Authorization": f"Bearer {API_KEY}"},
                      # greedy: this model then never emits the BOS that would end the reply by itself
                      json={"model": "tiny", "prompt": "ROMEO:", "max_tokens": CONTEXT - 16, "stream": True,
                            "temperature": 0}) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        assert next(line for line in lines if line.startswith("data: "))
    deadline = time.monotonic() + 20
    while (health := server.health())["busy"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not health["busy"], "the generation went on after its client disconnected"
    assert health["cancelled"] == before["cancelled"] + 1
    generated = health["tokens_generated"] - before["tokens_generated"]
    assert generated < CONTEXT - 16, f"all {generated} tokens were generated for a client that had left"
    assert ask(server.client(), "ROMEO:", seed=1, max_tokens=4) is not None, "the server is not serving afterwards"
    # a client waiting for a whole (non-streamed) reply that gives up is noticed too
    before = server.health()
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(server.url + "/completions", headers={"Authorization": f"Bearer {API_KEY}"}, timeout=0.5,
                   json={"model": "tiny", "prompt": "ROMEO:", "max_tokens": CONTEXT - 16, "temperature": 0})
    deadline = time.monotonic() + 20
    while (health := server.health())["busy"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert health["cancelled"] == before["cancelled"] + 1, "a non-streaming request outlived its client"


@pytest.mark.slow
def test_bad_requests_get_openai_errors_with_4xx(server: Server) -> None:
    client = server.client()
    messages = [{"role": "user", "content": "hi"}]
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-4", messages=messages)
    assert caught.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="tiny", messages=messages, max_tokens=-1)
    assert caught.value.body["param"] == "max_tokens"
    with pytest.raises(openai.BadRequestError, match="temperature must be a number"):
        client.chat.completions.create(model="tiny", messages=messages, temperature="hot")
    with pytest.raises(openai.BadRequestError, match="role must be one of"):
        client.chat.completions.create(model="tiny", messages=[{"role": "robot", "content": "hi"}])
    with pytest.raises(openai.BadRequestError, match="prompt must be a string"):
        client.completions.create(model="tiny", prompt=42)
    with pytest.raises(openai.AuthenticationError) as caught:
        server.client(api_key="wrong").models.list()
    assert caught.value.status_code == 401 and caught.value.body["code"] == "invalid_api_key"
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    for body, status in ((b"{not json", 400), (b"[1, 2]", 400), (b'{"model": "tiny", "messages": "hi"}', 400)):
        response = httpx.post(server.url + "/chat/completions", content=body, headers=headers, timeout=10)
        assert response.status_code == status and "message" in response.json()["error"], response.text
    huge = httpx.post(server.url + "/completions", content=b"x" * (5 * 2**20), headers=headers, timeout=30)
    assert huge.status_code == 413 and huge.json()["error"]["code"] == "request_too_large"
    assert httpx.get(server.url + "/nothing", headers=headers, timeout=10).status_code == 404
    assert httpx.get(server.url + "/chat/completions", headers=headers, timeout=10).status_code == 405
    assert server.health()["status"] == "ok"


def test_serving_on_another_address_without_a_key_warns(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.serve import server as server_module
    from nanogpt_tui.cli import run_cli

    save_tiny_checkpoint(runs_dir(), "tiny")
    served = []
    monkeypatch.setattr(server_module, "serve", lambda model, sock, **kwargs: served.append((model.name, kwargs)))
    assert run_cli(["serve", "tiny", "--host", "0.0.0.0", "--port", "0", "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "warning: listening on 0.0.0.0 without an API key" in err and "serving tiny at http://" in err
    assert served == [("tiny", {"api_key": None, "record_dir": None, "checkpoint": served[0][1]["checkpoint"]})]
    assert run_cli(["serve", "tiny", "--port", "0", "--device", "cpu"]) == 0
    assert "warning" not in capsys.readouterr().err, "a loopback server must not warn"
