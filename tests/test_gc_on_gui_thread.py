"""The app's collector: automatic GC off while it runs, cycles collected on the GUI thread."""

from __future__ import annotations

import gc
import weakref

import pytest

pytest.importorskip("pytestqt")

from app.gc_on_gui_thread import GuiThreadGarbageCollector  # noqa: E402


class Node:
    pass


def test_cycles_are_collected_by_the_gui_thread_timer_then_gc_is_restored(qtbot):
    gc.enable()  # as in the app, where nothing disabled it before
    collector = GuiThreadGarbageCollector(interval_ms=10)
    try:
        assert not gc.isenabled()
        a, b = Node(), Node()
        a.other, b.other = b, a
        alive = weakref.ref(a)
        del a, b
        # fill generation 0 past its threshold: with automatic GC on, this would collect
        kept = [Node() for _ in range(gc.get_threshold()[0] + 10)]
        assert alive() is not None  # nobody collected it off the timer
        qtbot.waitUntil(lambda: alive() is None, timeout=5_000)
        assert len(kept) > 10
    finally:
        collector.stop()
    assert gc.isenabled()
