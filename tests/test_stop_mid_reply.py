"""Stop mid-reply (issue 14): a stop ends a long local reply within a second, keeps the
partial reply, and leaves the engine's cache right for the next step."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.tiny_checkpoints import MAX_PIXELS, tiny_checkpoint

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def endless(tmp_path_factory) -> Path:
    """The tiny checkpoint with a head that never picks an end token: the final norm keeps
    one hidden unit and the head scores only two ordinary tokens, +/-100 times that unit, so
    greedy decoding writes 'a'/'b' forever (every other logit is 0)."""
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import AutoTokenizer

    folder = tmp_path_factory.mktemp("endless")
    shutil.copytree(tiny_checkpoint()[0], folder, dirs_exist_ok=True)
    tok = AutoTokenizer.from_pretrained(str(folder))
    a, b = (tok.convert_tokens_to_ids(t) for t in ("a", "b"))
    for f in folder.glob("*.safetensors"):
        tensors = load_file(f)
        norm = tensors["model.language_model.norm.weight"]
        norm.zero_()
        norm[0] = 1.0
        head = torch.zeros_like(tensors["lm_head.weight"])
        head[a, 0], head[b, 0] = 100.0, -100.0
        tensors["lm_head.weight"] = head
        save_file(tensors, f, metadata={"format": "pt"})
    return folder


def _engine_messages():
    from tests.test_vlm_engine import _messages

    return _messages()


def test_cancel_hook_returns_the_reply_so_far_and_keeps_the_cache_valid(endless):
    import vlm

    engine = vlm.load(endless, device="cpu")
    cancel = threading.Event()
    chunks: list[str] = []

    def on_text(piece):
        chunks.append(piece)
        if len(chunks) == 5:
            cancel.set()

    r = engine.chat(_engine_messages(), max_new_tokens=500, on_text=on_text, cancel=cancel)
    assert r.cancelled and r.text == "".join(chunks) and 5 <= len(r.token_ids) <= 6
    assert set(r.text) <= {"a", "b"}
    # the conversation continues from the cancelled reply exactly as from a fresh cache
    follow = _engine_messages() + [{"role": "assistant", "content": r.text},
                                   {"role": "user", "content": "go on"}]
    cont = engine.chat(follow, max_new_tokens=8)
    assert engine.last_stats["reused_tokens"] > 0
    engine.reset()
    assert engine.chat(follow, max_new_tokens=8).token_ids == cont.token_ids
    with pytest.raises(TypeError, match="cancel"):
        engine.chat(_engine_messages(), max_new_tokens=2, cancel="stop")


def test_stop_from_another_thread_ends_a_long_local_reply_within_a_second(endless):
    import vlm
    from agent.dialects import get_dialect
    from agent.loop import Agent
    from agent.memenv import MemoryEnv

    engine = vlm.load(endless, device="cpu")
    streaming = threading.Event()
    agent = Agent(engine, MemoryEnv(320, 200), get_dialect("qwen3-vl", max_pixels=MAX_PIXELS),
                  chat_options={"max_new_tokens": 20000},
                  on_text=lambda _i, _t: streaming.set())
    steps, done = [], threading.Event()

    def run():
        steps.extend(agent.run("write forever"))
        done.set()

    worker = threading.Thread(target=run)
    worker.start()
    assert streaming.wait(120), "the model never started replying"
    stopped_at = time.perf_counter()
    agent.stop()
    assert done.wait(10)
    elapsed = time.perf_counter() - stopped_at
    worker.join()
    assert elapsed < 1.0, f"the run took {elapsed:.2f} s to stop"
    assert agent.outcome == "stopped"
    (step,) = steps
    assert step.outcome == "stopped" and step.reply and set(step.reply) <= {"a", "b"}
    assert len(step.reply) < 20000 and not step.results


@pytest.mark.slow
def test_ctrl_c_mid_reply_ends_a_local_run_within_a_second(endless, tmp_path, monkeypatch):
    from agent.settings import CONFIG_DIR_ENV, Settings

    config = tmp_path / "config"
    monkeypatch.setenv(CONFIG_DIR_ENV, str(config))
    Settings(max_pixels=MAX_PIXELS, device="cpu").save()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1",
           CONFIG_DIR_ENV: str(config), "DESKPILOT_DECODE": "eager"}
    runs = tmp_path / "runs"
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "run", "write forever", "--env", "memory",
         "--policy", f"local:{endless}", "--max-new-tokens", "20000", "--record", str(runs),
         "--dialect", "qwen3-vl", "-v"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        for line in proc.stderr:  # state, not a sleep: the engine logs when decoding starts
            if "decoding up to 20000 tokens" in line:
                break
            assert time.monotonic() < deadline, "decoding never started"
        else:
            pytest.fail(f"the run ended before decoding: {proc.stdout.read()}")
        threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep the pipe drained
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out = []
        for line in proc.stdout:
            out.append(line)
            if line.startswith("outcome:"):
                break
        elapsed = time.monotonic() - sent
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = "".join(out)
    assert "outcome: stopped" in text, text
    assert elapsed < 1.0, f"{elapsed:.2f} s from Ctrl+C to the end of the run"
    from agent.trajectory.loader import load_run

    (run_dir,) = [p for p in runs.iterdir() if p.is_dir()]
    recorded = load_run(run_dir)
    assert recorded.meta["outcome"] == "stopped"
    assert recorded.steps[0]["reply"] and set(recorded.steps[0]["reply"]) <= {"a", "b"}
