"""The UI-TARS-1.5 prompt is the official COMPUTER_USE text, and the app and the CLI ask
the model for replies of the same length (settings.max_new_tokens)."""

from __future__ import annotations

import json

import pytest

from agent.dialects import get_dialect
from agent.dialects.prompts import UITARS_15_PROMPT_FILE, uitars_15_template
from agent.policies import ScriptPolicy
from agent.settings import Settings

# Lines of the official template, as published (bytedance/UI-TARS codes/ui_tars/prompt.py).
OFFICIAL_LINES = [
    "You are a GUI agent. You are given a task and your action history, with screenshots. "
    "You need to perform the next action to complete the task.",
    "click(point='<point>x1 y1</point>')",
    "drag(start_point='<point>x1 y1</point>', end_point='<point>x2 y2</point>')",
    "hotkey(key='ctrl c') # Split keys with a space and use lowercase. Also, do not use more "
    "than 3 keys in one hotkey action.",
    "type(content='xxx') # Use escape characters \\', \\\", and \\n in content part to ensure "
    "we can parse the content in normal python string format. If you want to submit your "
    "input, use \\n at the end of content. ",
    "wait() #Sleep for 5s and take a screenshot to check for any changes.",
    "- Write a small plan and finally summarize your next action (with its target element) "
    "in one sentence in `Thought` part.",
]


def test_the_data_file_names_its_source_and_holds_the_template():
    data = json.loads(UITARS_15_PROMPT_FILE.read_text(encoding="utf-8"))
    assert "bytedance/UI-TARS" in data["source"] and "COMPUTER_USE" in data["source"]
    assert data["license"].startswith("Apache-2.0")
    lines = data["template"].split("\n")
    for line in OFFICIAL_LINES:
        assert line in lines, line
    assert data["template"].endswith("## User Instruction\n{instruction}\n")


def test_uitars_15_user_prompt_is_the_official_template_filled_in():
    dialect = get_dialect("uitars-1.5", language="Chinese")
    task = "rename {report}.txt to final.txt"
    expected = (
        uitars_15_template().replace("{language}", "Chinese").replace("{instruction}", task)
    )
    assert dialect.system_prompt(task) == expected
    assert "- Use Chinese in `Thought` part." in expected
    assert expected.endswith(f"## User Instruction\n{task}\n")


def test_replies_in_the_official_point_syntax_parse():
    response = get_dialect("uitars-1.5").parse(
        "Thought: t\nAction: drag(start_point='<point>10 20</point>', "
        "end_point='<point>30 40</point>')",
        (1932, 1092),
    )
    assert response.actions[0].name == "drag"


# --- one reply token limit for the app and the CLI ---------------------------------------


class RecordingPolicy(ScriptPolicy):
    """A scripted model that remembers the options each chat() call was given."""

    def __init__(self, replies):
        super().__init__(replies)
        self.options: list[dict] = []

    def chat(self, messages, *, on_text=None, **options):
        self.options.append(dict(options))
        return super().chat(messages, on_text=on_text, **options)


FINISH = "Thought: Done.\nAction: finished(content='ok')"


@pytest.fixture
def config(tmp_path, monkeypatch):
    monkeypatch.setenv("DESKPILOT_CONFIG_DIR", str(tmp_path / "cfg"))
    Settings(max_new_tokens=77, runs_dir=str(tmp_path / "runs"), record=False).save()


def test_settings_reject_a_bad_token_limit():
    from agent.settings import SettingsError

    for bad in (0, -3, True, "512"):
        with pytest.raises(SettingsError, match="max_new_tokens"):
            Settings(max_new_tokens=bad)


def test_cli_uses_the_settings_limit_unless_given(config, monkeypatch):
    import agent.policy_spec
    from app.commands import run as run_cmd

    made: list[RecordingPolicy] = []

    def make_policy(spec, settings):
        made.append(RecordingPolicy([FINISH]))
        return made[-1]

    monkeypatch.setattr(agent.policy_spec, "make_policy", make_policy)
    args = ["t", "--policy", "script:unused", "--env", "memory", "--no-record"]
    assert run_cmd.main(args) == 0
    assert run_cmd.main([*args, "--max-new-tokens", "33"]) == 0
    assert [p.options[0]["max_new_tokens"] for p in made] == [77, 33]


def test_app_uses_the_same_settings_limit(config, qtbot):
    pytest.importorskip("pytestqt")
    from agent.memenv import MemoryEnv
    from app.commands.gui import build_window

    window = build_window(Settings.load(), env_factory=lambda: MemoryEnv(640, 360))
    qtbot.addWidget(window)
    policy = RecordingPolicy([FINISH])
    assert window.controller.start_run("t", policy=policy, dialect=get_dialect("uitars-1.5"))
    qtbot.waitUntil(lambda: window.controller.worker is None, timeout=60_000)
    assert policy.options[0]["max_new_tokens"] == 77
