"""The first-launch screen: what deskpilot needs, in one screen, and the practice sandbox."""

from __future__ import annotations

import html

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

TEXT = """
<p>deskpilot does tasks on your screen: it looks at a screenshot, asks a vision-language
model what to do next, and moves the mouse and keyboard — step by step, until the task is
done, it needs you, or you stop it.</p>
<p><b>It needs a model</b>, one of:</p>
<ul>
<li><b>A local checkpoint</b> — a folder, or a Hugging Face hub id such as
<code>ByteDance-Seed/UI-TARS-1.5-7B</code> (about 16 GB of GPU memory in bfloat16) or
<code>Qwen/Qwen3-VL-30B-A3B-Instruct</code> (a mixture-of-experts model; about 60 GB).</li>
<li><b>An OpenAI-compatible server</b> — vLLM, SGLang or <code>deskpilot serve</code> on
another machine; give its URL, e.g. <code>http://gpu-box:8000/v1</code>.</li>
</ul>
<p><b>Stay in control.</b> Stop the agent at any time with the stop hotkey
(<code>{hotkey}</code>), the Stop button or the tray icon. Risky actions (closing
windows, shell commands) ask you first.</p>
<p>Try it safely first: the <b>practice sandbox</b> is a small window with buttons, a text
field, a list and a slider that the agent can play with, and <b>a practice task</b> opens
one of thousands of small practice windows with its instruction filled in, ready to Run.</p>
"""


class WelcomePage(QWidget):
    choose_local = Signal()
    choose_remote = Signal()
    open_sandbox = Signal()
    try_practice_task = Signal()
    dismissed = Signal()

    def __init__(self, hotkey: str = "<ctrl>+<alt>+<shift>+s", parent: QWidget | None = None):
        super().__init__(parent)
        card = QFrame()
        card.setObjectName("card")
        card.setMaximumWidth(760)
        title = QLabel("Welcome to deskpilot")
        title.setObjectName("title")
        body = QLabel(TEXT.format(hotkey=html.escape(hotkey)))  # <ctrl> is not a tag
        body.setWordWrap(True)
        body.setTextFormat(Qt.TextFormat.RichText)
        self.local_button = QPushButton("Use a local model…")
        self.local_button.setObjectName("primary")
        self.remote_button = QPushButton("Use a server…")
        self.sandbox_button = QPushButton("Open the practice sandbox")
        self.practice_button = QPushButton("Try a practice task")
        self.skip_button = QPushButton("Skip for now")
        buttons = QHBoxLayout()
        for b in (self.local_button, self.remote_button, self.sandbox_button,
                  self.practice_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        buttons.addWidget(self.skip_button)
        inner = QVBoxLayout(card)
        inner.setContentsMargins(28, 24, 28, 24)
        inner.addWidget(title)
        inner.addWidget(body)
        inner.addLayout(buttons)
        outer = QVBoxLayout(self)
        outer.addStretch(1)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(card, 4)
        row.addStretch(1)
        outer.addLayout(row)
        outer.addStretch(1)
        self.local_button.clicked.connect(self.choose_local)
        self.remote_button.clicked.connect(self.choose_remote)
        self.sandbox_button.clicked.connect(self.open_sandbox)
        self.practice_button.clicked.connect(self.try_practice_task)
        self.skip_button.clicked.connect(self.dismissed)
