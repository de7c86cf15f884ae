"""Start a private Xvfb server for `display` tests (CI has no screen)."""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def xvfb(width: int = 1280, height: int = 800, depth: int = 24, dpi: int = 96) -> Iterator[str]:
    """Run Xvfb for the duration of the block; yields its DISPLAY string (":N").

    `-displayfd` lets the server pick a free display number itself (atomic, so parallel
    test processes never collide) and write it to a pipe once it accepts connections.
    `-noreset` keeps the screen when the last client disconnects (otherwise a test that
    closes its only connection sees the root window repainted black).
    """
    if shutil.which("Xvfb") is None:
        raise RuntimeError("Xvfb is not installed (scripts/setup.sh installs it as root)")
    Path.home().joinpath(".Xauthority").touch(exist_ok=True)  # pyautogui insists on it
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", f"{width}x{height}x{depth}",
         "-dpi", str(dpi), "-nolisten", "tcp", "-ac", "-noreset"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, pass_fds=(write_fd,),
    )
    os.close(write_fd)
    try:
        number = b""
        deadline = time.monotonic() + 60  # generous: a loaded machine
        while not number.endswith(b"\n") and time.monotonic() < deadline:
            ready, _, _ = select.select([read_fd], [], [], 0.2)
            if ready:
                chunk = os.read(read_fd, 32)
                if not chunk:
                    break
                number += chunk
        if not number.strip().isdigit():
            raise RuntimeError(f"Xvfb did not start (exit code {proc.poll()})")
        yield f":{int(number)}"
    finally:
        os.close(read_fd)
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextlib.contextmanager
def display_env(display: str) -> Iterator[None]:
    """Point this process (and children) at `display`; restore afterwards."""
    old = {k: os.environ.get(k) for k in ("DISPLAY", "QT_QPA_PLATFORM", "XDG_SESSION_TYPE")}
    os.environ["DISPLAY"] = display
    os.environ["QT_QPA_PLATFORM"] = "xcb"
    os.environ["XDG_SESSION_TYPE"] = "x11"
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
