"""Read and write the system clipboard through the platform's own command-line tools.

Used to type text that pyautogui cannot (it only knows ASCII keys): the text is put on
the clipboard, pasted, and the person's clipboard is put back. X11 uses xclip or xsel
(xclip is preferred: it can save and restore non-text content such as an image by
MIME type), macOS pbcopy/pbpaste, Windows PowerShell.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass

log = logging.getLogger(__name__)

TIMEOUT_S = 3.0


class ClipboardError(RuntimeError):
    """No clipboard tool, or it failed. The message says what to install."""


@dataclass(frozen=True)
class Saved:
    """A clipboard's content: bytes of one MIME type, or None when it was empty."""

    data: bytes | None
    mime: str = "text/plain"


def _run(cmd: list[str], data: bytes | None = None) -> bytes:
    try:
        proc = subprocess.run(cmd, input=data, capture_output=True, timeout=TIMEOUT_S,
                              check=False)
    except subprocess.TimeoutExpired as exc:
        raise ClipboardError(f"{cmd[0]} did not answer within {TIMEOUT_S}s") from exc
    if proc.returncode != 0:
        raise ClipboardError(f"{' '.join(cmd)} failed: {proc.stderr.decode(errors='replace')}")
    return proc.stdout


def _write_detached(cmd: list[str], data: bytes) -> None:
    """X11 tools must keep running to own the selection: they fork and serve it.

    The forked server keeps any inherited pipe open, so stderr goes to a file and only
    the parent's exit is awaited.
    """
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=err)
        try:
            proc.stdin.write(data)
            proc.stdin.close()
            proc.wait(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired as exc:
            proc.kill()
            raise ClipboardError(f"{cmd[0]} did not take the clipboard in {TIMEOUT_S}s") from exc
        if proc.returncode != 0:
            err.seek(0)
            message = err.read().decode(errors="replace")
            raise ClipboardError(f"{' '.join(cmd)} failed: {message}")


class PasteWatch:
    """Owns the clipboard for one paste and counts the apps' requests for its content.

    X11 pastes are asynchronous: after ctrl+v the focused app asks the clipboard owner
    for the data whenever it gets round to it. Restoring the person's clipboard before
    that would paste *their* text. xclip run in the foreground with -verbose prints a
    line before waiting for each request, so the requests it has served can be counted.
    """

    _WAITING = re.compile(r"Waiting for selection request number (\d+)")

    def __init__(self, text: str):
        self._served = -1  # -1 until xclip owns the selection
        self._changed = threading.Condition()
        self.proc = subprocess.Popen(
            ["xclip", "-selection", "clipboard", "-in", "-verbose"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, encoding="utf-8",
        )
        self.proc.stdin.write(text)
        self.proc.stdin.close()
        threading.Thread(target=self._read, daemon=True, name="xclip-watch").start()
        with self._changed:
            if not self._changed.wait_for(lambda: self._served >= 0, timeout=TIMEOUT_S):
                self.close()
                raise ClipboardError(f"xclip did not take the clipboard in {TIMEOUT_S}s")

    def _read(self) -> None:
        for line in self.proc.stdout:
            match = self._WAITING.search(line)
            if match:
                with self._changed:
                    self._served = int(match.group(1)) - 1
                    self._changed.notify_all()

    @property
    def served(self) -> int:
        return max(self._served, 0)

    def wait_served(self, more_than: int, timeout: float, quiet: float = 0.15,
                    first_quiet: float = 1.0) -> bool:
        """Wait for a request beyond `more_than`, then until none follows for `quiet` s.

        Most apps ask for TARGETS first and the text second, and on a loaded machine the
        second request can come well after the first: after a single request the wait
        for the next is `first_quiet`, so the clipboard is not handed back in between
        (the app would then paste the person's own clipboard)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            if not self._changed.wait_for(lambda: self._served > more_than, timeout=timeout):
                return False
            while True:  # e.g. TARGETS first, then the data: let the app finish asking
                count = self._served
                pause = first_quiet if count == more_than + 1 else quiet
                left = min(pause, deadline - time.monotonic())
                if left <= 0 or not self._changed.wait_for(
                        lambda count=count: self._served > count, timeout=left):
                    return True

    def close(self) -> None:
        """Stop serving (a new clipboard owner ends xclip too)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class Clipboard:
    """The clipboard of this session. `tool` picks the backend ("xclip", "xsel", ...)."""

    TEXT_MIMES = ("UTF8_STRING", "text/plain;charset=utf-8", "STRING", "TEXT", "text/plain")

    def __init__(self, tool: str | None = None):
        self.tool = tool or self._default_tool()

    @staticmethod
    def _default_tool() -> str:
        if sys.platform == "darwin":
            return "pbcopy"
        if sys.platform == "win32":
            return "powershell"
        for tool in ("xclip", "xsel"):
            if shutil.which(tool):
                return tool
        raise ClipboardError(
            "typing non-ASCII or multi-line text needs the clipboard, but neither xclip nor "
            "xsel is installed: install one (e.g. `sudo apt install xclip`)"
        )

    # --- text ----------------------------------------------------------------------------

    def set_text(self, text: str) -> None:
        data = text.encode("utf-8")
        if self.tool == "xclip":
            _write_detached(["xclip", "-selection", "clipboard", "-in"], data)
        elif self.tool == "xsel":
            _write_detached(["xsel", "--clipboard", "--input"], data)
        elif self.tool == "pbcopy":
            _run(["pbcopy"], data)
        else:
            script = ("$t=[Console]::In.ReadToEnd(); Set-Clipboard -Value $t")
            _run(["powershell", "-NoProfile", "-Command",
                  "[Console]::InputEncoding=[Text.Encoding]::UTF8; " + script], data)

    def offer(self, text: str) -> PasteWatch | None:
        """Put `text` on the clipboard for one paste; a PasteWatch where requests can be seen."""
        if self.tool == "xclip":
            return PasteWatch(text)
        self.set_text(text)
        return None

    def get_text(self) -> str | None:
        """The clipboard's text, or None when it holds no text."""
        saved = self._save_text()
        return None if saved.data is None else saved.data.decode("utf-8", errors="replace")

    # --- save / restore ------------------------------------------------------------------

    def save(self) -> Saved:
        """Whatever the clipboard holds now (text, or with xclip any single MIME type)."""
        try:
            if self.tool == "xclip":
                return self._save_xclip()
            return self._save_text()
        except ClipboardError as exc:
            log.warning("could not read the clipboard to restore it later: %s", exc)
            return Saved(None)

    def restore(self, saved: Saved) -> None:
        """Put `saved` back. An empty clipboard is restored as empty text."""
        data = saved.data if saved.data is not None else b""
        if self.tool == "xclip" and saved.mime not in self.TEXT_MIMES:
            _write_detached(["xclip", "-selection", "clipboard", "-in", "-t", saved.mime], data)
        else:
            self.set_text(data.decode("utf-8", errors="replace"))

    def _save_text(self) -> Saved:
        if self.tool == "xclip":
            cmd = ["xclip", "-selection", "clipboard", "-out"]
        elif self.tool == "xsel":
            cmd = ["xsel", "--clipboard", "--output"]
        elif self.tool == "pbcopy":
            cmd = ["pbpaste"]
        else:
            cmd = ["powershell", "-NoProfile", "-Command",
                   "[Console]::OutputEncoding=[Text.Encoding]::UTF8; Get-Clipboard -Raw"]
        try:
            data = _run(cmd)
        except ClipboardError:
            # xclip/xsel exit non-zero when nobody owns the clipboard: that is "empty".
            if self.tool in ("xclip", "xsel"):
                return Saved(None)
            raise
        return Saved(data)

    def _save_xclip(self) -> Saved:
        try:
            targets = _run(["xclip", "-selection", "clipboard", "-out", "-t", "TARGETS"])
        except ClipboardError:
            return Saved(None)  # no owner: the clipboard is empty
        names = targets.decode(errors="replace").split()
        for mime in self.TEXT_MIMES:
            if mime in names:
                return Saved(_run(["xclip", "-selection", "clipboard", "-out", "-t", mime]), mime)
        for mime in names:
            if "/" in mime:  # the first real MIME type: image/png, text/html...
                return Saved(_run(["xclip", "-selection", "clipboard", "-out", "-t", mime]), mime)
        return Saved(None)
