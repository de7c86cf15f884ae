"""While the screen settles after an action the app's controls stay reachable: DesktopEnv
hides the app through `settle_hiding` (which keeps the Stop strip on screen), ignores the
strip's pixels, and a Stop ends the wait at once."""

from __future__ import annotations

import contextlib
import threading

import pytest
from PIL import Image

from agent import actions as A
from agent.desktop.settle import wait_for_settle


def test_stop_ends_the_settle_wait():
    shades = iter(range(0, 10_000, 40))
    checks = []

    def grab():
        return Image.new("L", (32, 32), next(shades) % 256)  # never settles

    def stop():
        checks.append(1)
        return len(checks) >= 3

    result = wait_for_settle(grab, timeout=30, interval=0.001, stop=stop)
    assert not result.settled and result.frames == 3 and result.elapsed < 5


@pytest.mark.display
def test_the_settle_wait_keeps_the_controls_and_ignores_their_pixels(xvfb_display, tmp_path):
    from agent.desktop import DesktopEnv
    from agent.frames import to_screen
    from tests.sandbox_proc import centre, sandbox, wait_state

    hides, settles = [], []

    @contextlib.contextmanager
    def hide():
        hides.append(1)
        yield

    @contextlib.contextmanager
    def settling():
        settles.append(1)
        yield [(0, 0, 200, 100)]  # where the control strip would be

    with sandbox(tmp_path / "state.json") as state:
        env = DesktopEnv(settle_timeout=2.0, hide_windows=hide, settle_hiding=settling)
        obs = env.observe()
        frame = obs.frame.with_model(obs.image.size, "absolute")
        action = to_screen(frame, A.Click(A.Point(*centre(state, "checkbox"))))
        result = env.execute(action)
        assert result.ok and result.details["settled"] is True
        assert hides == [1] and settles == [1]  # the settle wait did not hide the controls
        assert wait_state(tmp_path / "state.json", lambda s: s["checked"])

        # the frames compared had the strip's area blanked (its status line may change)
        grabbed = []
        real_grab = env.capturer.grab

        def grab(*args, **kwargs):
            grabbed.append(real_grab(*args, **kwargs))
            return grabbed[-1]

        env.capturer.grab = grab
        hover = to_screen(frame, A.Hover(A.Point(600, 400)))
        assert env.execute(hover).ok and len(grabbed) >= 2
        assert all(img.getpixel((150, 50)) == (0, 0, 0) for img in grabbed)
        assert any(img.getpixel((600, 400)) != (0, 0, 0) for img in grabbed)
        env.close()


@pytest.mark.display
def test_stop_during_the_settle_wait_takes_effect_at_once(xvfb_display, tmp_path):
    import time

    from agent.desktop import DesktopEnv
    from agent.desktop.executor import Executor

    class EverChanging(Executor):
        """Acts, then stops the run from 'the strip' while the screen is settling."""

        def execute(self, action, monitor):
            result = super().execute(action, monitor)
            threading.Timer(0.3, env.interrupt).start()
            return result

    from tests.sandbox_proc import sandbox

    with sandbox(tmp_path / "state.json"):  # something on screen (a bare Xvfb is black)
        # threshold 0: two frames never differ by less than nothing, so it never settles
        env = DesktopEnv(settle_timeout=30.0, settle_threshold=0.0, executor=EverChanging())
        env.observe()
        started = time.monotonic()
        result = env.execute(A.Hover(A.Point(10, 10), screen=A.Point(10, 10)))
        assert result.ok and result.details["settled"] is False
        assert time.monotonic() - started < 10  # not the 30 s settle timeout
        env.close()
