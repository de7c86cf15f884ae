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


def test_the_table_shows_gpu_memory_in_bf16_and_fp8(qtbot, monkeypatch):
    """Both serving formats, from train.plan (the figures `deskpilot train plan` prints)."""
    from app.views.catalogue_view import _gib

    dense = catalogue.find("Qwen/Qwen3-VL-8B-Instruct")
    assert dense.memory("fp8") < 0.8 * dense.memory("bf16")  # dense: FP8 halves the weights
    between = (dense.memory("fp8") + dense.memory("bf16")) // 2
    monkeypatch.setattr(catalogue, "detect_machine",
                        lambda: catalogue.Machine("GPU", between, 64 * 2**30))
    panel = ModelPanel()
    qtbot.addWidget(panel)
    table = panel.catalogue.table
    headers = [table.horizontalHeaderItem(c).text() for c in range(table.columnCount())]
    bf16_col, fp8_col = headers.index("GPU bf16"), headers.index("GPU fp8")
    for row, entry in enumerate(panel.catalogue.entries):
        assert table.item(row, bf16_col).text() == _gib(entry.memory("bf16"))
        assert table.item(row, fp8_col).text() == _gib(entry.memory("fp8"))
    row = [e.id for e in panel.catalogue.entries].index(dense.id)
    assert table.item(row, headers.index("Fits here")).text() == "fp8 only"
