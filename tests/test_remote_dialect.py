"""`--dialect auto` with a remote policy: the dialect comes from the served model's id
(GET /v1/models), or the run stops asking for --dialect; UI-TARS is never assumed."""

from __future__ import annotations

import json

import pytest
from starlette.responses import JSONResponse

from agent.dialects import dialect_for_model_id
from app.commands import run as run_cmd
from tests.test_remote_policy import Emulated, completion, serve_in_thread


@pytest.mark.parametrize(
    ("model_id", "dialect"),
    [
        ("ByteDance-Seed/UI-TARS-1.5-7B", "uitars-1.5"),
        ("ui-tars-1.5", "uitars-1.5"),
        ("/srv/models/UI-TARS-1.5-7B/", "uitars-1.5"),
        ("uitars_1_5_7b_awq", "uitars-1.5"),
        ("bytedance-research/UI-TARS-7B-DPO", "uitars-1.0"),
        ("UI-TARS-72B-SFT", "uitars-1.0"),
        ("ui-tars-2B-SFT", "uitars-1.0"),
        ("Qwen/Qwen3-VL-30B-A3B-Instruct", "qwen3-vl"),
        ("qwen3_vl_8b", "qwen3-vl"),
        ("Hcompany/Holo2-30B-A3B", "qwen3-vl"),
        ("Qwen/Qwen2.5-VL-7B-Instruct", None),  # a Qwen2.5-VL does not speak UI-TARS
        ("served-model", None),
        ("gpt-4o", None),
        ("", None),
    ],
)
def test_dialect_from_the_served_model_id(model_id, dialect):
    assert dialect_for_model_id(model_id) == dialect


@pytest.fixture(autouse=True)
def config_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("DESKPILOT_CONFIG_DIR", str(tmp_path / "cfg"))


UITARS_FINISH = "Thought: Done.\nAction: finished(content='ok')"
QWEN_FINISH = (
    'Done.\n<tool_call>\n{"name": "computer_use", "arguments": {"action": "terminate", '
    '"status": "success"}}\n</tool_call>'
)


def run_against(models: list[str], reply: str, tmp_path, *extra: str) -> tuple[int, Emulated]:
    server = Emulated(lambda body, request: JSONResponse(completion(reply)), models=models)
    with serve_in_thread(server.app()) as url:
        code = run_cmd.main(
            ["do it", "--policy", f"remote:{url}/v1", "--env", "memory",
             "--record", str(tmp_path / "runs"), *extra]
        )  # fmt: skip
    return code, server


def recorded_dialect(tmp_path) -> str:
    (run_dir,) = (tmp_path / "runs").iterdir()
    return json.loads((run_dir / "meta.json").read_text())["dialect"]


def test_a_served_uitars_15_model_gets_the_uitars_15_dialect(tmp_path):
    code, server = run_against(["ByteDance-Seed/UI-TARS-1.5-7B"], UITARS_FINISH, tmp_path)
    assert code == 0
    assert recorded_dialect(tmp_path) == "uitars-1.5"
    assert server.bodies[0]["model"] == "ByteDance-Seed/UI-TARS-1.5-7B"


def test_a_served_qwen3_vl_model_gets_the_qwen3_vl_dialect(tmp_path):
    code, _ = run_against(["Qwen/Qwen3-VL-30B-A3B-Instruct"], QWEN_FINISH, tmp_path)
    assert code == 0
    assert recorded_dialect(tmp_path) == "qwen3-vl"


def test_an_unknown_served_model_asks_for_dialect_and_sends_nothing(tmp_path, capsys):
    code, server = run_against(["Qwen/Qwen2.5-VL-7B-Instruct"], UITARS_FINISH, tmp_path)
    err = capsys.readouterr().err
    assert code == 2
    assert "--dialect" in err and "Qwen/Qwen2.5-VL-7B-Instruct" in err
    assert server.bodies == []  # no step was run on a guess
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_an_explicit_dialect_needs_no_model_id(tmp_path):
    code, _ = run_against(["served-model"], UITARS_FINISH, tmp_path, "--dialect", "uitars-1.5")
    assert code == 0
    assert recorded_dialect(tmp_path) == "uitars-1.5"


def test_a_server_serving_several_models_asks_for_one(tmp_path, capsys):
    code, server = run_against(["a", "b"], UITARS_FINISH, tmp_path)
    assert code == 2
    assert "remote_model" in capsys.readouterr().err
    assert server.bodies == []
