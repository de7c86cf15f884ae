"""DPO pairs from a corrected run: the agent asked for help (call_user) on the in-memory
screen, the person then showed the action with `record-demo` (written here through the same
agent.demo.demo_steps + Recorder that record-demo uses): the model's call_user is rejected,
the person's click (in the base's dialect, at the same place) is chosen; and
`deskpilot train dpo AGENT_RUN DEMO_RUN` trains on it."""

from __future__ import annotations

import json
import time

import pytest

from agent import actions as A
from agent.demo import DemoAction, demo_steps
from agent.dialects import get_dialect
from agent.frames import Frame, Rect
from agent.protocols import Observation
from agent.trajectory import Recorder, load_run
from app import cli
from tests.tiny_checkpoints import tiny_family_checkpoint
from train.data import DataError, ImageCache
from train.dpo_data import correction_pairs

ASK = "Thought: I do not know where the menu is.\nAction: call_user()"


@pytest.fixture
def settings_dir(tmp_path, monkeypatch):
    cfg = tmp_path / "cfg"
    cfg.mkdir()  # MemoryEnv is 1920x1080; with max_pixels 100352 UI-TARS-1.5 sees 420x224
    (cfg / "settings.json").write_text(json.dumps({"max_pixels": 100352,
                                                   "runs_dir": str(tmp_path / "runs")}))
    monkeypatch.setenv("DESKPILOT_CONFIG_DIR", str(cfg))
    return cfg


def agent_then_demo(tmp_path):
    """(agent run, demonstration run) folders: the agent calls the user, the person clicks
    the centre of the screen it was looking at."""
    script = tmp_path / "script.txt"
    script.write_text(ASK + "\n")
    runs = tmp_path / "runs"
    cli.main(["run", "greet", "--policy", f"script:{script}", "--env", "memory", "--record",
              str(runs)])
    (agent_dir,) = runs.iterdir()
    agent = load_run(agent_dir)
    assert agent.steps[-1]["actions"][0]["type"] == "call_user"
    time.sleep(0.01)  # the demonstration starts after the agent run
    screen = agent.image(agent.steps[-1])
    frame = Frame(Rect(0, 0, *screen.size), screen.size)
    now = time.time()
    dialect = get_dialect("uitars-1.5", max_pixels=100352)
    recorder = Recorder(runs, task=agent.task, dialect=dialect.name,
                        model="human demonstration", backend="demonstration",
                        monitors=[frame.monitor.to_dict()], extra={"demonstration": True})
    shots = [(DemoAction(A.Click(point=A.Point(960, 540)), now),
              Observation(image=screen, frame=frame, captured_at=now))]
    for step in demo_steps(agent.task, shots, dialect):
        recorder.write_step(step)
    recorder.finish("stopped", "demonstration")
    return agent_dir, recorder.run_dir


@pytest.mark.slow
def test_a_corrected_run_gives_the_call_user_rejected_and_the_click_chosen(tmp_path,
                                                                          settings_dir):
    from agent.settings import Settings
    from train.data import base_speaks
    from vlm.weights import read_config

    base, _ = tiny_family_checkpoint("qwen2_5_vl")
    agent_dir, demo_dir = agent_then_demo(tmp_path)
    speaks = base_speaks(base, read_config(base), Settings.load())
    runs = [load_run(agent_dir), load_run(demo_dir)]
    (pair,) = correction_pairs(runs, speaks, ImageCache())
    assert pair.rejected == ASK
    # the dialect's own syntax; the screen's centre at 420x224
    assert pair.chosen.startswith("Thought: \nAction: click(start_box=")
    assert "(210,112)" in pair.chosen
    assert pair.messages[-1]["role"] == "user"
    assert str(agent_dir) in pair.source and str(demo_dir) in pair.source
    with pytest.raises(DataError, match="no agent run of the task"):
        correction_pairs(runs[1:], speaks, ImageCache())

    out = tmp_path / "out"
    assert cli.main(["train", "dpo", str(agent_dir), str(demo_dir), "--base", str(base),
                     "--out", str(out), "--lora-rank", "4", "--steps", "2", "--device",
                     "cpu"]) == 0
    assert json.loads((out / "train_args.json").read_text())["resolved"]["pairs"] == 1
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
