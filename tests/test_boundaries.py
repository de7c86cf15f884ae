"""Import boundaries (DESIGN.md, "Layers"): the agent core never pulls in torch or Qt, and
importing any of our packages has no side effects: no screen grabbed, no input hooked, no
thread started, no model loaded, no QApplication created.

Each check runs in a fresh interpreter, because this test process has long since imported
everything, and with no DISPLAY, so a module that touches the screen at import fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("agent", "vlm", "kernels", "app")
CORE = (
    "agent",
    "agent.loop",
    "agent.safety",
    "agent.actions",
    "agent.frames",
    "agent.dialects",
    "agent.protocols",
    "agent.settings",
)
OS_LIBRARIES = ("mss", "pyautogui", "pynput", "Xlib")


def run_python(code: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["HF_HUB_OFFLINE"] = "1"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_agent_core_imports_neither_torch_nor_qt():
    result = run_python(
        f"""
import json, sys
for name in {CORE!r}:
    __import__(name)
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "PySide6", "vlm"))
print(json.dumps({{"heavy": heavy}}))
"""
    )
    assert result["heavy"] == []


def test_importing_every_module_has_no_side_effects():
    result = run_python(
        f"""
import gc, importlib, json, pkgutil, sys, threading

def walk(package):
    pkg = importlib.import_module(package)
    names = [package]
    for info in pkgutil.walk_packages(pkg.__path__, package + "."):
        names.append(info.name)
    return names

failed, modules = {{}}, []
agent_modules = walk("agent")
for name in agent_modules:
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed[name] = f"{{type(exc).__name__}}: {{exc}}"
after_agent = {{
    "os_libraries": sorted(m for m in sys.modules if m.split(".")[0] in {OS_LIBRARIES!r}),
    "torch": "torch" in sys.modules,
    "qt": "PySide6" in sys.modules,
    "threads": threading.active_count(),
}}
for package in ("vlm", "kernels", "train", "app"):
    for name in walk(package):
        modules.append(name)
        try:
            importlib.import_module(name)
        except Exception as exc:
            failed[name] = f"{{type(exc).__name__}}: {{exc}}"

models = 0
if "torch" in sys.modules:
    import torch
    models = sum(1 for o in gc.get_objects() if isinstance(o, torch.nn.Module))
qapp = None
if "PySide6.QtCore" in sys.modules:
    from PySide6.QtCore import QCoreApplication
    qapp = repr(QCoreApplication.instance()) if QCoreApplication.instance() else None
print(json.dumps({{
    "agent_modules": agent_modules,
    "modules": modules,
    "failed": failed,
    "after_agent": after_agent,
    "os_libraries": sorted(m for m in sys.modules if m.split(".")[0] in {OS_LIBRARIES!r}),
    "threads": [t.name for t in threading.enumerate()],
    "models": models,
    "qapp": qapp,
}}))
"""
    )
    # The walk really covered the packages (a broken walk would pass everything below).
    assert {"agent.loop", "agent.safety", "agent.dialects"} <= set(result["agent_modules"])
    assert "app.cli" in result["modules"] and "app.commands.run" in result["modules"]
    assert result["failed"] == {}
    assert result["after_agent"] == {
        "os_libraries": [],
        "torch": False,
        "qt": False,
        "threads": 1,
    }
    assert result["os_libraries"] == [], "an OS input/capture library was imported eagerly"
    assert result["threads"] == ["MainThread"]
    assert result["models"] == 0, "importing a module built a torch model"
    assert result["qapp"] is None, "importing an app module created a QApplication"


def test_train_never_imports_qt_and_agent_vlm_never_import_train():
    result = run_python(
        """
import importlib, json, pkgutil, sys

def walk(package):
    pkg = importlib.import_module(package)
    return [package] + [i.name for i in pkgutil.walk_packages(pkg.__path__, package + ".")]

below = walk("agent") + walk("vlm") + walk("kernels")
for name in below:
    importlib.import_module(name)
train_after_below = sorted(m for m in sys.modules if m.split(".")[0] == "train")
train_modules = walk("train")
for name in train_modules:
    importlib.import_module(name)
print(json.dumps({
    "train_after_below": train_after_below,
    "train_modules": train_modules,
    "qt": sorted(m for m in sys.modules if m.split(".")[0] == "PySide6"),
}))
"""
    )
    assert {"train.data", "train.pack", "train.loop", "train.sft"} <= set(
        result["train_modules"])
    assert result["train_after_below"] == [], "agent, vlm or kernels imported train"
    assert result["qt"] == [], "the train package imported Qt"
