"""The Model tab's catalogue table (offscreen Qt)."""

from __future__ import annotations

import pytest

pytest.importorskip("PySide6")

from app import catalogue  # noqa: E402
from app.views.model_panel import ModelPanel  # noqa: E402


def test_catalogue_rows_fill_the_model_field(qtbot, monkeypatch):
    monkeypatch.setattr(catalogue, "detect_machine",
                        lambda: catalogue.Machine(None, None, 24 * 2**30))
    panel = ModelPanel()
    qtbot.addWidget(panel)
    table = panel.catalogue.table
    names = [table.item(r, 0).text() for r in range(table.rowCount())]
    assert "UI-TARS-1.5-7B" in names and "Qwen3-VL-30B-A3B-Instruct" in names
    big = names.index("Qwen3-VL-30B-A3B-Instruct")
    small = names.index("Qwen3-VL-2B-Instruct")
    assert table.item(big, 5).text() == "no"  # 59 GB does not fit in 24 GB of RAM
    assert table.item(small, 5).text() == "yes"
    table.selectRow(small)
    assert panel.values()["model"] == "Qwen/Qwen3-VL-2B-Instruct"
    # typing a known id selects its row; a folder clears the selection but is kept
    panel.model.setCurrentText("ByteDance-Seed/UI-TARS-1.5-7B")
    assert panel.catalogue.selected().name == "UI-TARS-1.5-7B"
    panel.model.setCurrentText("/models/my-checkpoint")
    assert panel.catalogue.selected() is None
    assert panel.values()["model"] == "/models/my-checkpoint"


def test_download_failure_is_shown_and_the_button_comes_back(qtbot, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    panel = ModelPanel()
    qtbot.addWidget(panel)
    view = panel.catalogue
    view.start_download()
    assert "Choose a model" in view.status.text()
    view.table.selectRow(0)
    view.start_download()
    qtbot.waitUntil(lambda: view.download_button.isEnabled(), timeout=30_000)
    assert "offline" in view.status.text()
    assert not view.cancel_button.isEnabled()
