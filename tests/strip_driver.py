"""Run the real app on the current DISPLAY and press the control strip's Stop button,
with the real pointer, while the screen settles after the agent's first action.

Used by tests/test_strip_reachable.py in a subprocess (the test process already has an
offscreen QApplication). The settle wait is set up never to end on its own (threshold 0,
20 s timeout), so the run can only end quickly if the strip is on screen and its Stop
button works during the settle wait. Results go to OUT_DIR/report.json.

    python -m tests.strip_driver SCRIPT RUNS_DIR OUT_DIR
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

SETTLE_TIMEOUT_S = 20.0


def main(argv: list[str]) -> int:
    script, runs_dir, out_dir = argv
    from PySide6.QtCore import QTimer

    from agent.dialects import get_dialect
    from agent.policies import ScriptPolicy
    from agent.settings import Settings
    from app.commands.gui import build_window, create_app

    app = create_app()
    settings = Settings(runs_dir=runs_dir, model="scripted", safety="normal",
                        settle_timeout=SETTLE_TIMEOUT_S, settle_threshold=0.0)
    window = build_window(settings)
    controller = window.controller
    window.show()
    report: dict = {}
    acted: dict[str, float] = {}

    def start() -> None:
        report["started"] = controller.start_run(
            "press the button", policy=ScriptPolicy(script),
            dialect=get_dialect("uitars-1.5"), backend="script", model="scripted")
        executor = controller._env.executor
        real_execute = executor.execute

        def execute(action, monitor):  # on the worker thread; the settle wait follows
            result = real_execute(action, monitor)
            acted.setdefault("t", time.monotonic())
            return result

        executor.execute = execute
        QTimer.singleShot(50, press_stop_while_settling)

    def press_stop_while_settling() -> None:
        if "t" not in acted:
            QTimer.singleShot(50, press_stop_while_settling)
            return
        if time.monotonic() - acted["t"] < 0.5:  # well inside the settle wait
            QTimer.singleShot(50, press_stop_while_settling)
            return
        strip = window.strip
        report["strip_visible_while_settling"] = strip.isVisible()
        centre = strip.stop_button.mapToGlobal(strip.stop_button.rect().center())
        subprocess.run(["xdotool", "mousemove", str(centre.x()), str(centre.y()), "click", "1"],
                       check=False, timeout=10)
        report["clicked_at"] = [centre.x(), centre.y()]
        acted["clicked"] = time.monotonic()
        QTimer.singleShot(50, wait_end)

    def wait_end() -> None:
        waited = time.monotonic() - acted["clicked"]
        if controller.worker is not None and waited < 2 * SETTLE_TIMEOUT_S:
            QTimer.singleShot(50, wait_end)
            return
        report["outcome"] = controller.last_outcome or "still running"
        report["seconds_from_stop_to_end"] = waited
        report["steps"] = len(window.timeline.views())
        (Path(out_dir) / "report.json").write_text(json.dumps(report))
        if controller.worker is not None:
            controller.shutdown()
        app.exit(0)

    QTimer.singleShot(500, start)
    return app.exec()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
