"""Python's cyclic garbage collector, run only on the GUI thread while the app runs.

Why: the collector runs in whichever thread happens to allocate when a generation fills
up. When that is a worker thread (the agent loop, a download, training) and the garbage
holds PySide objects owned by the GUI thread, freeing them there crashes the process with
a segmentation fault (seen in CI: a worker writing a run's meta.json collected a closed
window). So the automatic collector is switched off and a GUI-thread timer does its work,
generation by generation, with the interpreter's own thresholds.
"""

from __future__ import annotations

import gc

from PySide6.QtCore import QObject, QTimer


class GuiThreadGarbageCollector(QObject):
    def __init__(self, parent: QObject | None = None, interval_ms: int = 500) -> None:
        super().__init__(parent)
        self._was_enabled = gc.isenabled()
        gc.disable()
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.collect_due)
        self._timer.start(interval_ms)
        self.destroyed.connect(self._restore)

    def collect_due(self) -> None:
        """Collect the oldest generation whose allocation count passed its threshold."""
        counts, thresholds = gc.get_count(), gc.get_threshold()
        for generation in (2, 1, 0):
            if thresholds[generation] and counts[generation] > thresholds[generation]:
                gc.collect(generation)
                return

    def stop(self) -> None:
        self._timer.stop()
        gc.collect()
        self._restore()

    def _restore(self, *_args) -> None:
        if self._was_enabled:
            gc.enable()
