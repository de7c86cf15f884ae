"""`deskpilot serve` on a tiny random checkpoint, called like a user would call it.

A real `deskpilot serve` subprocess on a free loopback port, driven by the official
`openai` client and by the agent's RemotePolicy; its replies must be exactly what
`Engine.chat` says for the same input (greedy). Bad requests must get the right 4xx and
leave the server serving. Queueing and disconnects are checked on an in-process server
around the same real engine, where the test can see inside.
"""

from __future__ import annotations

import base64
import io
import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.test_remote_policy import screenshot, serve_in_thread

KEY_ENV = "DESKPILOT_TEST_SERVE_KEY"
KEY = "serve-test-key-81c3"
MAX_TOKENS = 12
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def checkpoint() -> Path:
    from tests.tiny_checkpoints import tiny_checkpoint

    return tiny_checkpoint("single")[0]


@pytest.fixture(scope="module")
def engine(checkpoint):
    import vlm

    return vlm.load(str(checkpoint), device="cpu")


@pytest.fixture(scope="module")
def served(checkpoint, tmp_path_factory):
    """(base URL ending in /v1, model id) of a `deskpilot serve` subprocess."""
    env = {**os.environ, KEY_ENV: KEY, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "app.cli", "serve", str(checkpoint), "--port", "0",
               "--device", "cpu", "--api-key-env", KEY_ENV, "--max-body-mb", "1",
               "--log-level", "warning"]
    stderr = open(tmp_path_factory.mktemp("serve") / "stderr.log", "w+")
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE,
                               stderr=stderr, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout],
                     daemon=True).start()
    try:
        try:
            banner = lines.get(timeout=180)
        except queue.Empty:
            banner = ""
        if not banner.startswith("serving "):
            stderr.seek(0)
            pytest.fail(f"deskpilot serve did not start: {banner!r}\n{stderr.read()[-3000:]}")
        _, name, _, url = banner.split()
        deadline = time.monotonic() + 180  # the model loads after the banner
        while httpx.get(url.removesuffix("/v1") + "/health").status_code != 200:
            if process.poll() is not None or time.monotonic() > deadline:
                stderr.seek(0)
                pytest.fail(f"deskpilot serve never became healthy:\n{stderr.read()[-3000:]}")
            time.sleep(0.2)
        yield url, name
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
        stderr.close()


def data_url(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def openai_messages(image: Image.Image, text: str = "Describe the screenshot.") -> list[dict]:
    return [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": data_url(image)}},
            {"type": "text", "text": text},
        ]},
    ]


def qwen_messages(image: Image.Image, text: str = "Describe the screenshot.") -> list[dict]:
    """The same conversation in the Qwen format Engine.chat takes."""
    return [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": [{"type": "image", "image": image},
                                     {"type": "text", "text": text}]},
    ]


def client(url: str):
    from openai import OpenAI

    return OpenAI(base_url=url, api_key=KEY, max_retries=0, timeout=120)


def test_openai_client_gets_the_engines_greedy_reply(served, engine):
    url, name = served
    image = screenshot(64, 96)
    expected = engine.chat(qwen_messages(image), max_new_tokens=MAX_TOKENS)
    assert expected.text  # a reply to compare, not two empty strings

    reply = client(url).chat.completions.create(
        model=name, messages=openai_messages(image), max_tokens=MAX_TOKENS, temperature=0)
    assert reply.choices[0].message.content == expected.text
    assert reply.usage.completion_tokens == len(expected.token_ids)
    assert reply.choices[0].finish_reason in ("stop", "length")

    # The image reaches the model: another screenshot gives the engine's other answer. It
    # is half transparent, so alpha is flattened the same way on both paths.
    other = screenshot(96, 64).transpose(Image.Transpose.FLIP_LEFT_RIGHT).convert("RGBA")
    other.putalpha(128)
    other_expected = engine.chat(qwen_messages(other), max_new_tokens=MAX_TOKENS).text
    assert other_expected != expected.text
    reply = client(url).chat.completions.create(
        model=name, messages=openai_messages(other), max_tokens=MAX_TOKENS)
    assert reply.choices[0].message.content == other_expected


def test_streamed_deltas_join_to_the_engines_reply(served, engine):
    url, name = served
    image = screenshot(64, 64)
    pieces: list[str] = []
    expected = engine.chat(qwen_messages(image, "What is on screen?"), max_new_tokens=MAX_TOKENS,
                           on_text=pieces.append)
    stream = client(url).chat.completions.create(
        model=name, messages=openai_messages(image, "What is on screen?"),
        max_tokens=MAX_TOKENS, stream=True, stream_options={"include_usage": True})
    deltas, finish, usage = [], None, None
    for chunk in stream:
        usage = chunk.usage or usage
        for choice in chunk.choices:
            deltas.append(choice.delta.content or "")
            finish = choice.finish_reason or finish
    assert "".join(deltas) == expected.text
    # One chunk per piece the engine streamed, not one blob at the end.
    assert [d for d in deltas if d] == pieces
    assert finish in ("stop", "length")
    assert usage.completion_tokens == len(expected.token_ids)


def test_sampling_options_and_stop_strings_reach_the_engine(served, engine):
    url, name = served
    image = screenshot(64, 64)
    sampled = engine.chat(qwen_messages(image), max_new_tokens=MAX_TOKENS, temperature=1.0,
                          top_p=0.9, seed=7).text
    reply = client(url).chat.completions.create(
        model=name, messages=openai_messages(image), max_tokens=MAX_TOKENS, temperature=1.0,
        top_p=0.9, seed=7)
    assert reply.choices[0].message.content == sampled

    greedy = engine.chat(qwen_messages(image), max_new_tokens=MAX_TOKENS).text
    # A stop string from the middle of the greedy reply: the reply ends just before it.
    cut = next(i for i in range(2, len(greedy) - 1) if "\ufffd" not in greedy[i:i + 2])
    stop = greedy[cut:cut + 2]
    reply = client(url).chat.completions.create(
        model=name, messages=openai_messages(image), max_tokens=MAX_TOKENS, stop=[stop])
    assert reply.choices[0].message.content == greedy[:greedy.index(stop)]
    assert reply.choices[0].finish_reason == "stop"


def test_models_health_and_the_api_key(served):
    url, name = served
    assert [m.id for m in client(url).models.list().data] == [name]
    base = url.removesuffix("/v1")
    assert httpx.get(base + "/health").json()["status"] == "ok"
    assert httpx.get(url + "/models").status_code == 401  # no key
    wrong = httpx.get(url + "/models", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"


def test_bad_requests_get_4xx_json_errors_and_the_server_keeps_serving(served):
    url, name = served
    endpoint = url + "/chat/completions"
    auth = {"Authorization": f"Bearer {KEY}"}
    good = {"model": name, "max_tokens": 3,
            "messages": [{"role": "user", "content": "hello"}]}
    image_part = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K!!"}}
    not_png = "data:image/png;base64," + base64.b64encode(b"not an image at all").decode()
    cases = [
        # (what, body or raw bytes, headers, status, param or message fragment)
        ("no messages", {"model": name, "messages": []}, auth, 400, "messages"),
        ("messages missing", {"model": name}, auth, 400, "messages"),
        ("broken base64", {**good, "messages": [{"role": "user", "content": [image_part]}]},
         auth, 400, "messages[0].content[0].image_url.url"),
        ("not an image", {**good, "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": not_png}}]}]},
         auth, 400, "messages[0].content[0].image_url.url"),
        ("remote image URL", {**good, "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "http://example.com/a.png"}}]}]},
         auth, 400, "messages[0].content[0].image_url.url"),
        ("bad JSON", b'{"messages": [', auth, 400, "not valid JSON"),
        ("max_tokens a string", {**good, "max_tokens": "12"}, auth, 400, "max_tokens"),
        ("temperature out of range", {**good, "temperature": 7}, auth, 400, "temperature"),
        ("unknown role", {**good, "messages": [{"role": "robot", "content": "x"}]},
         auth, 400, "messages[0].role"),
        ("content a number", {**good, "messages": [{"role": "user", "content": 5}]},
         auth, 400, "messages[0].content"),
        ("oversized body", {**good, "padding": "x" * (1024 * 1024 + 10)}, auth, 413,
         "larger than the server's limit"),
        ("wrong key", good, {"Authorization": "Bearer wrong"}, 401, "API key"),
        ("no key", good, {}, 401, "API key"),
        ("unknown model", {**good, "model": "gpt-4o"}, auth, 404, "model"),
    ]
    for what, body, headers, status, fragment in cases:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        response = httpx.post(endpoint, content=content,
                              headers={**headers, "Content-Type": "application/json"})
        assert response.status_code == status, (what, response.text)
        error = response.json()["error"]
        assert fragment in (error["param"] or "") + error["message"], (what, error)
        assert error["type"]
        # ...and the server still answers a good request after each of them.
        ok = httpx.post(endpoint, json=good, headers=auth, timeout=60)
        assert ok.status_code == 200, (what, ok.text)


def test_agent_loop_runs_through_the_served_model(served, engine, monkeypatch):
    """RemotePolicy -> deskpilot serve -> tiny model: every step's reply is the engine's."""
    from agent.dialects import get_dialect
    from agent.loop import Agent
    from agent.memenv import MemoryEnv
    from agent.remote import RemotePolicy
    from tests.tiny_checkpoints import MAX_PIXELS

    url, _ = served
    dialect = get_dialect("qwen3-vl", max_pixels=MAX_PIXELS, history_n=2)
    env = MemoryEnv(width=256, height=160)
    monkeypatch.setenv(KEY_ENV, KEY)
    policy = RemotePolicy(url, api_key_env=KEY_ENV, max_tokens=MAX_TOKENS)
    agent = Agent(policy, env, dialect, max_steps=2, max_parse_retries=5)
    steps = list(agent.run("Open the settings"))
    assert len(steps) == 2, [step.error for step in steps]
    assert agent.outcome in ("max_steps", "stuck", "finished"), agent.final_message
    assert policy.model  # discovered from /v1/models
    for step in steps:
        assert step.timings["request"] > 0
        local = engine.chat(step.messages, max_new_tokens=MAX_TOKENS)
        assert step.reply == local.text
        # The random model writes no valid action: the loop records why and goes on.
        assert (step.response is None) == (step.parse_error is not None)


def test_a_scripted_uitars_task_completes_through_the_server():
    """Agent -> RemotePolicy -> HTTP -> ChatServer -> scripted model: the task finishes,
    the click lands where the reply says, and the model receives the screenshots at the
    dialect's size, pixel for pixel."""
    from agent.dialects import get_dialect
    from agent.loop import Agent
    from agent.memenv import MemoryEnv
    from agent.policies import ScriptPolicy
    from agent.remote import RemotePolicy
    from app.server import ChatServer

    dialect = get_dialect("uitars-1.5")
    env = MemoryEnv(width=1280, height=720)
    model_w, model_h = dialect.model_size(1280, 720)
    script = ScriptPolicy([
        f"Thought: Click OK.\nAction: click(start_box='({model_w // 4},{model_h // 2})')",
        "Thought: Done.\nAction: finished(content='closed')",
    ])
    with serve_in_thread(ChatServer(script, model_name="ui-tars", api_key=KEY).app()) as base:
        policy = RemotePolicy(base + "/v1", api_key=KEY)
        agent = Agent(policy, env, dialect, max_steps=4)
        steps = list(agent.run("Close the dialog"))
    assert agent.outcome == "finished" and agent.final_message == "closed"
    click = env.executed[0]
    assert click.name == "click" and abs(click.screen.x - 320) <= 1
    assert abs(click.screen.y - 360) <= 1
    received = [part["image"] for message in script.calls[1]
                if isinstance(message["content"], list)
                for part in message["content"] if part.get("type") == "image"]
    assert [image.tobytes() for image in received] == [
        step.model_image.convert("RGB").tobytes() for step in steps]


def _instrumented(engine, seconds_per_piece: float = 0.0):
    """The real engine, with a record of how many generations ran at once and how much
    text it streamed; `seconds_per_piece` makes it as slow as a big model on a GPU."""

    class Watched:
        name = engine.name
        active = 0
        most_active = 0
        pieces = 0
        lock = threading.Lock()

        def chat(self, messages, **options):
            with self.lock:
                Watched.active += 1
                Watched.most_active = max(Watched.most_active, Watched.active)
            on_text = options.pop("on_text", None)

            def counting(piece: str) -> None:
                Watched.pieces += 1
                time.sleep(seconds_per_piece)
                if on_text is not None:
                    on_text(piece)

            try:
                return engine.chat(messages, on_text=counting, **options)
            finally:
                with self.lock:
                    Watched.active -= 1

    return Watched()


def test_concurrent_requests_queue_for_the_model_one_at_a_time(engine):
    from app.server import ChatServer

    watched = _instrumented(engine)
    image = screenshot(64, 64)
    expected = engine.chat(qwen_messages(image), max_new_tokens=MAX_TOKENS).text
    with serve_in_thread(ChatServer(watched).app()) as base:
        results: list[str] = []

        def ask(stream: bool) -> None:
            reply = client(base + "/v1").chat.completions.create(
                model=watched.name, messages=openai_messages(image), max_tokens=MAX_TOKENS,
                stream=stream)
            if stream:
                results.append("".join(c.choices[0].delta.content or "" for c in reply
                                       if c.choices))
            else:
                results.append(reply.choices[0].message.content)

        threads = [threading.Thread(target=ask, args=(i % 2 == 0,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    assert results == [expected] * 4
    assert watched.most_active == 1


def _long_prompt(engine, tokens: int) -> tuple[list[dict], int]:
    """A prompt the random model answers without an end token for `tokens` tokens, and how
    many pieces of text the engine streams for it."""
    for n in range(20):
        messages = [{"role": "user", "content": f"Write a long story, part {n}."}]
        pieces: list[str] = []
        result = engine.chat(messages, max_new_tokens=tokens, on_text=pieces.append)
        if len(result.token_ids) == tokens and result.token_ids[-1] not in (
            engine.processor.end_token_ids
        ):
            return messages, len(pieces)
    pytest.fail("no prompt made the tiny model write without stopping")


def test_a_client_leaving_mid_stream_stops_its_generation(engine):
    from app.server import ChatServer

    long = 60
    messages, full_pieces = _long_prompt(engine, long)
    watched = _instrumented(engine, seconds_per_piece=0.05)
    server = ChatServer(watched)
    body = {"messages": messages, "max_tokens": long, "stream": True}
    with serve_in_thread(server.app()) as base:
        endpoint = base + "/v1/chat/completions"
        with httpx.stream("POST", endpoint, json=body, timeout=60) as response:
            for i, _ in enumerate(response.iter_lines()):
                if i >= 6:  # the role chunk and a few pieces of text (with blank lines)
                    break
        # The next request is served, and the abandoned one did not run to its limit.
        after = httpx.post(endpoint, json={**body, "stream": False, "max_tokens": 3}, timeout=60)
        assert after.status_code == 200
    assert 3 <= watched.pieces < full_pieces - 10
    assert server.served == 1


def test_while_the_model_loads_clients_are_told_to_wait_and_then_served(checkpoint, engine):
    """A server started before its model is loaded: health says so, requests get 503 with
    Retry-After, and RemotePolicy's retry turns that into a normal reply once loaded."""
    from agent.remote import RemotePolicy
    from app.server import ChatServer

    release = threading.Event()

    def loader(progress):
        progress(1, 4)
        release.wait(30)
        return engine

    server = ChatServer(model_name="tiny")
    server.load_in_background(loader)
    with serve_in_thread(server.app()) as base:
        health = httpx.get(base + "/health")
        assert health.status_code == 503
        assert health.json() == {"status": "loading", "model": "tiny", "progress": 0.25}
        early = httpx.post(base + "/v1/chat/completions",
                           json={"messages": [{"role": "user", "content": "hi"}]})
        assert early.status_code == 503 and early.headers["retry-after"] == "2"
        assert "still loading (25%)" in early.json()["error"]["message"]

        threading.Timer(0.5, release.set).start()
        policy = RemotePolicy(base, model="tiny", api_key="", retries=2, backoff=0.01)
        reply = policy.chat([{"role": "user", "content": "hi"}], max_new_tokens=4)
        assert reply.text == engine.chat([{"role": "user", "content": "hi"}],
                                         max_new_tokens=4).text
        assert httpx.get(base + "/health").json()["status"] == "ok"


def test_a_model_that_fails_to_load_stops_the_server_with_the_reason(tmp_path):
    import vlm
    from app.server import ChatServer, bind_socket, serve

    server = ChatServer(model_name="missing")
    sock = bind_socket("127.0.0.1", 0)
    missing = tmp_path / "no-such-checkpoint"
    runner = threading.Thread(target=serve, args=(server, sock),
                              kwargs={"loader": lambda progress: vlm.load(str(missing)),
                                      "log_level": "warning"})
    runner.start()
    runner.join(60)
    sock.close()
    assert not runner.is_alive()
    assert "no-such-checkpoint" in server.load_error and "does not exist" in server.load_error


def test_serve_command_refuses_a_missing_key_and_a_busy_port(checkpoint, monkeypatch, capsys):
    from app.commands import serve

    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    assert serve.main([str(checkpoint), "--port", "0", "--api-key-env", "NO_SUCH_KEY_VAR"]) == 2
    assert "NO_SUCH_KEY_VAR" in capsys.readouterr().err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        assert serve.main([str(checkpoint), "--port", str(port)]) == 1
    assert "cannot listen" in capsys.readouterr().err


def test_the_model_package_has_no_http_server():
    """HTTP lives in app/ (app/server.py); nothing under vlm/ imports starlette or uvicorn."""
    import ast

    offenders = []
    for path in sorted((REPO / "vlm").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.name}: {n}" for n in names
                          if n.split(".")[0] in ("starlette", "uvicorn")]
    assert offenders == []
    assert not (REPO / "vlm" / "server.py").exists()
