"""`deskpilot` / `deskpilot app`: open the desktop app.

Without a usable display the app cannot open a window; then the reason goes to stderr
(and to a message box where Qt can still show one) instead of a Qt abort.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

log = logging.getLogger(__name__)


def display_problem() -> str | None:
    """Why no window can be shown here, or None when a display looks available."""
    platform = os.environ.get("QT_QPA_PLATFORM", "")
    if platform in ("offscreen", "minimal"):
        return None  # explicitly headless (tests, screenshots)
    if sys.platform.startswith("linux"):
        if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
            return ("No display: DISPLAY and WAYLAND_DISPLAY are not set. Run deskpilot in a "
                    "desktop session (or over ssh -X), or use `deskpilot run` headless.")
    return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deskpilot app", description="Open the desktop app.")
    parser.add_argument("--runs-dir", help="show and record runs in this folder (this session)")
    parser.add_argument("--welcome", action="store_true", help="show the first-launch screen")
    return parser


def create_app(argv: list[str] | None = None):
    """The QApplication (created once), styled."""
    from PySide6.QtWidgets import QApplication

    from app import theme

    app = QApplication.instance() or QApplication(["deskpilot", *(argv or [])])
    app.setApplicationName("deskpilot")
    app.setQuitOnLastWindowClosed(True)
    theme.apply(app)
    return app


def build_window(settings, env_factory=None):
    """The main window with its controller attached (as `window.controller`)."""
    from app.controller import Controller
    from app.main_window import MainWindow

    window = MainWindow(hotkey=settings.stop_hotkey)
    window.controller = Controller(window, settings, env_factory=env_factory)
    return window


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    problem = display_problem()
    if problem:
        print(f"deskpilot: {problem}", file=sys.stderr)  # noqa: T201 - the CLI's own output
        return 2
    from agent.settings import Settings, SettingsError

    try:
        settings = Settings.load()
        settings_error = None
    except SettingsError as exc:  # keep going with defaults, and say so in the window
        settings, settings_error = Settings(), str(exc)
    if args.runs_dir:
        settings.runs_dir = args.runs_dir
    try:
        app = create_app()
    except Exception as exc:  # e.g. the xcb plugin cannot connect to the display
        print(f"deskpilot: cannot open a window: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    from app.gc_on_gui_thread import GuiThreadGarbageCollector

    collector = GuiThreadGarbageCollector(app)  # no PySide object is ever freed off-thread
    window = build_window(settings)
    app.aboutToQuit.connect(window.controller.shutdown)
    app.aboutToQuit.connect(collector.stop)
    if args.welcome:
        window.show_welcome(True)
    if settings_error:
        window.controller.show_error(f"{settings_error} — using default settings for now.")
    window.show()
    return int(app.exec())
