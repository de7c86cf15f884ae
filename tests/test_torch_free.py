"""`pip install deskpilot` is torch-free: a scripted run never imports torch, and asking
for a local model without the `local` extra says what to install.

Each check runs in a fresh interpreter, because this test process has torch loaded."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "torchvision", "transformers", "qwen_vl_utils", "safetensors", "PySide6")

# Makes the `local` extra's modules unimportable, as on a base install.
BLOCK_LOCAL = """
import importlib.abc, sys
class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {'torch', 'torchvision', 'transformers', 'tokenizers',
                                  'safetensors', 'qwen_vl_utils', 'peft', 'triton'}:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, NotInstalled())
"""


def deskpilot(argv: list[str], tmp_path: Path, prelude: str = "") -> subprocess.CompletedProcess:
    """`deskpilot ARGV` in a fresh interpreter; stderr's last line lists heavy modules."""
    code = (
        prelude
        + "import atexit, json, sys\n"
        + f"atexit.register(lambda: print(json.dumps(sorted(m for m in {HEAVY!r} "
        + "if m in sys.modules)), file=sys.stderr))\n"
        + "from app.cli import main\n"
        + f"sys.exit(main({argv!r}))\n"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),
        "DESKPILOT_CONFIG_DIR": str(tmp_path / "cfg"),
        "HOME": str(tmp_path),
    }
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )


def heavy_modules(result: subprocess.CompletedProcess) -> list[str]:
    return json.loads(result.stderr.strip().splitlines()[-1])


def test_a_scripted_memory_run_never_imports_torch(tmp_path):
    script = tmp_path / "script.txt"
    script.write_text(
        "Thought: click\nAction: click(start_box='(966,546)')\n---\n"
        "Thought: type\nAction: type(content='hello\\n')\n---\n"
        "Thought: done\nAction: finished(content='ok')\n",
        encoding="utf-8",
    )
    runs = tmp_path / "runs"
    result = deskpilot(
        ["run", "say hello", "--env", "memory", "--policy", f"script:{script}", "--record",
         str(runs)],
        tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "outcome: finished" in result.stdout
    assert heavy_modules(result) == []
    (run_dir,) = runs.iterdir()
    assert len((run_dir / "steps.jsonl").read_text().splitlines()) == 3


def test_a_scripted_run_works_without_the_local_extra(tmp_path):
    script = tmp_path / "script.txt"
    script.write_text("Thought: done\nAction: finished(content='ok')\n", encoding="utf-8")
    result = deskpilot(
        ["run", "t", "--env", "memory", "--policy", f"script:{script}", "--no-record"],
        tmp_path,
        prelude=BLOCK_LOCAL,
    )
    assert result.returncode == 0, result.stderr


def checkpoint(tmp_path: Path) -> Path:
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text(json.dumps({"model_type": "qwen2_5_vl"}))
    return ckpt


def test_a_local_model_without_the_extra_names_the_install_command(tmp_path):
    result = deskpilot(
        ["run", "t", "--env", "memory", "--policy", f"local:{checkpoint(tmp_path)}"],
        tmp_path,
        prelude=BLOCK_LOCAL,
    )
    assert result.returncode == 2
    assert "pip install 'deskpilot[local]'" in result.stderr
    assert "torch" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_without_the_extra_names_the_install_command(tmp_path):
    result = deskpilot(
        ["serve", str(checkpoint(tmp_path)), "--port", "0"], tmp_path, prelude=BLOCK_LOCAL
    )
    assert result.returncode == 2
    assert "pip install 'deskpilot[local]'" in result.stderr
    assert "serving" not in result.stdout


def test_the_extra_message_in_process(monkeypatch):
    import importlib.util

    from agent import extras

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a)
    )
    try:
        extras.require_local("the local model 'x'")
    except extras.MissingExtraError as exc:
        assert str(exc) == (
            "the local model 'x' needs the local engine, which is not installed "
            "(torch missing): pip install 'deskpilot[local]'"
        )
    else:
        raise AssertionError("no MissingExtraError")


def test_pyproject_keeps_torch_out_of_the_base_install():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = " ".join(project["dependencies"]).lower()
    for heavy in ("torch", "transformers", "tokenizers", "safetensors", "qwen-vl-utils", "peft"):
        assert heavy not in base
        assert any(d.lower().startswith(heavy) for d in project["optional-dependencies"]["local"])
    for needed in ("pyside6", "mss", "pyautogui", "pynput", "httpx", "huggingface_hub",
                   "platformdirs", "pillow", "numpy", "starlette", "uvicorn"):  # fmt: skip
        assert needed in base
    assert '".[local,dev]"' in (ROOT / "scripts" / "setup.sh").read_text()


def test_training_without_the_extra_names_the_install_command(tmp_path):
    result = deskpilot(["train", "sft", "--help-not-given"], tmp_path, prelude=BLOCK_LOCAL)
    assert result.returncode == 2
    assert "deskpilot train sft" in result.stderr
    assert "pip install 'deskpilot[local]'" in result.stderr
