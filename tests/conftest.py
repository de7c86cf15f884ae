"""Shared test setup: offline hub, offscreen Qt, gpu/display markers."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    if not any(item.get_closest_marker("gpu") for item in items):
        return
    if _cuda_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if item.get_closest_marker("gpu"):
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _garbage_collected_on_the_main_thread(request):
    """Qt tests: a full cyclic GC after each, on this (the GUI) thread. Otherwise the
    collector may run later in a worker thread of the next test and free this test's
    PySide windows there, which crashes the process (seen in CI; app/gc_on_gui_thread.py
    is the app's guard against the same)."""
    yield
    if "qtbot" in request.fixturenames:
        import gc

        gc.collect()


@pytest.fixture
def xvfb_display():
    """A fresh 1280x800 Xvfb; yields the DISPLAY string with DISPLAY set for the test."""
    from tests.xvfb import display_env, xvfb

    with xvfb() as display, display_env(display):
        yield display
