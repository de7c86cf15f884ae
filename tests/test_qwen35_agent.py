"""Qwen3.5 in the product: `deskpilot run --policy local:TINY_QWEN35 --env memory` and
`deskpilot serve TINY_QWEN35`, with the qwen3.5 dialect picked from the checkpoint.

TINY_QWEN35 is a tiny random Qwen3.5-MoE checkpoint written by transformers at test time
(tests/tiny_checkpoints.py). Its random weights write no valid action, so the local run
ends after the parse-error retries with every reply recorded (as for the other families);
a scripted run in the same dialect shows the full path from XML reply to executed action.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from app.commands import run as run_cmd

REPO = Path(__file__).resolve().parents[1]
KEY_ENV = "DESKPILOT_TEST_SERVE_KEY"
KEY = "qwen35-serve-key-5e1"


@pytest.fixture(autouse=True)
def config_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("DESKPILOT_CONFIG_DIR", str(tmp_path / "cfg"))


@pytest.fixture(scope="module")
def tiny_qwen35() -> Path:
    from tests.tiny_checkpoints import tiny_qwen35_checkpoint

    return tiny_qwen35_checkpoint("qwen3_5_moe")[0]


def only_run(runs: Path):
    from agent.trajectory import load_run

    (run_dir,) = runs.iterdir()
    return load_run(run_dir)


@pytest.mark.slow
def test_local_tiny_qwen35_runs_on_the_memory_screen_with_its_dialect(tmp_path, tiny_qwen35,
                                                                      capsys):
    from agent.settings import Settings
    from tests.tiny_checkpoints import MAX_PIXELS

    Settings(max_pixels=MAX_PIXELS, device="cpu").save()
    runs = tmp_path / "runs"
    code = run_cmd.main(["do the task", "--policy", f"local:{tiny_qwen35}", "--env", "memory",
                         "--record", str(runs), "--max-new-tokens", "8"])
    assert code == 1
    assert "outcome: error" in capsys.readouterr().out
    recorded = only_run(runs)
    assert recorded.meta["dialect"] == "qwen3.5" and recorded.meta["backend"] == "local"
    assert len(recorded.steps) == 3 and all(s["parse_error"] for s in recorded.steps)
    assert all(s["reply"] for s in recorded.steps)
    assert {"prefill", "decode"} <= set(recorded.steps[0]["timings"])


def test_scripted_qwen35_replies_drive_the_memory_screen(tmp_path, capsys):
    from agent import actions as A
    from agent.dialects import get_dialect

    d = get_dialect("qwen3.5")
    replies = [d.format_reply("Click the centre.", [A.Click(A.Point(500, 500))]),
               d.format_reply("Type it.", [A.Type("hello", enter=True)]),
               d.format_reply("Done.", [A.Finished("typed")])]
    script = tmp_path / "script.txt"
    script.write_text("\n---\n".join(replies) + "\n", encoding="utf-8")
    runs = tmp_path / "runs"
    code = run_cmd.main(["do the task", "--policy", f"script:{script}", "--env", "memory",
                         "--dialect", "qwen3.5", "--record", str(runs)])
    assert code == 0, capsys.readouterr().out
    recorded = only_run(runs)
    assert recorded.meta["outcome"] == "finished" and recorded.meta["dialect"] == "qwen3.5"
    sx, sy = recorded.steps[0]["actions"][0]["screen"]
    assert abs(sx - 960) <= 1 and abs(sy - 540) <= 1  # 500/1000 of the 1920x1080 screen


@pytest.fixture(scope="module")
def served(tiny_qwen35, tmp_path_factory):
    """Base URL (…/v1) of a `deskpilot serve TINY_QWEN35` subprocess."""
    env = {**os.environ, KEY_ENV: KEY, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "app.cli", "serve", str(tiny_qwen35), "--port", "0",
               "--device", "cpu", "--api-key-env", KEY_ENV, "--log-level", "warning"]
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
        url = banner.split()[-1]
        deadline = time.monotonic() + 180  # the model loads after the banner
        while httpx.get(url.removesuffix("/v1") + "/health").status_code != 200:
            if process.poll() is not None or time.monotonic() > deadline:
                stderr.seek(0)
                pytest.fail(f"deskpilot serve never became healthy:\n{stderr.read()[-3000:]}")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
        stderr.close()


@pytest.mark.slow
def test_served_qwen35_answers_the_agent_loop_like_the_local_engine(served, tiny_qwen35,
                                                                    monkeypatch):
    import vlm
    from agent.dialects import get_dialect
    from agent.loop import Agent
    from agent.memenv import MemoryEnv
    from agent.remote import RemotePolicy
    from tests.tiny_checkpoints import MAX_PIXELS

    dialect = get_dialect("qwen3.5", max_pixels=MAX_PIXELS, history_n=2)
    env = MemoryEnv(width=256, height=160)
    monkeypatch.setenv(KEY_ENV, KEY)
    policy = RemotePolicy(served, api_key_env=KEY_ENV, max_tokens=10)
    agent = Agent(policy, env, dialect, max_steps=2, max_parse_retries=5)
    steps = list(agent.run("Open the settings"))
    assert len(steps) == 2, [step.error for step in steps]
    engine = vlm.load(tiny_qwen35, device="cpu")
    for step in steps:
        assert step.reply == engine.chat(step.messages, max_new_tokens=10).text
        assert (step.response is None) == (step.parse_error is not None)
