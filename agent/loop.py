"""The reason-then-act loop: observe, ask the model, parse, check, act, repeat.

`Agent.run(task)` is a generator of `Step`s so that a caller (the CLI, the UI's worker
thread, a test) sees every model output and action result as it happens and can record
it before the next action. The loop is pure: it talks to the model through `Policy`, to
the screen through `Env` and to the model family through `Dialect` (agent/protocols.py),
so tests drive it with a scripted policy and an in-memory screen.

Every way a run ends is an outcome on its last step and on `Agent.outcome`:
finished, call_user, max_steps, stopped, error, stuck, refused. `stop()`, `pause()` and
`resume()` may be called from any thread; stop is honoured before the next step, while the
model replies (it is the policy's `cancel` hook), before each action, and also wakes a
paused run.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agent import actions as A
from agent import frames as F
from agent.protocols import Dialect, Env, ExecutionResult, HistoryTurn, Observation, Policy
from agent.safety import Decision, SafetyPolicy

if TYPE_CHECKING:
    from PIL.Image import Image

log = logging.getLogger(__name__)

OUTCOMES = ("finished", "call_user", "max_steps", "stopped", "error", "stuck", "refused")
POLICY_TIMINGS = ("preprocess", "vision", "prefill", "decode", "tokens_per_s")

# Stuck detection: two screenshots are "the same screen" when no pixel's gray level moved
# by more than this (compression and dithering noise). Compared at full resolution so a
# small change, such as a ticked checkbox, counts as progress: ending a run as stuck when
# it was not is worse than a few wasted steps.
_PIXEL_DELTA = 12


@dataclass
class Step:
    """Everything about one step, in the order it happened (the trajectory's line)."""

    index: int
    observation: Observation  # .frame has model_size and space set
    model_image: Image  # the resized screenshot the model saw
    messages: list[dict]  # exactly what was sent to the policy
    reply: str = ""
    response: A.Response | None = None
    parse_error: str | None = None
    actions: list[A.Action] = field(default_factory=list)  # screen coordinates filled in
    decisions: list[Decision] = field(default_factory=list)
    results: list[ExecutionResult] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # seconds
    started_at: float = 0.0
    ended_at: float = 0.0
    outcome: str | None = None  # set on the run's last step only
    error: str | None = None


def policy_timings(timings: Any) -> dict[str, float]:
    """The numeric phase timings of a policy reply, whether a dict or a dataclass."""
    if timings is None:
        return {}
    if dataclasses.is_dataclass(timings) and not isinstance(timings, type):
        timings = dataclasses.asdict(timings)
    if not isinstance(timings, Mapping):
        return {}
    return {
        str(k): float(v)
        for k, v in timings.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }


def _gray(image: Image) -> Image:
    return image.convert("L")


def _same_screen(a: Image, b: Image) -> bool:
    from PIL import ImageChops

    if a.size != b.size:
        return False
    changed = ImageChops.difference(a, b).point(lambda v: 255 if v > _PIXEL_DELTA else 0)
    return changed.getbbox() is None


def _describe(action: A.Action) -> str:
    fields = {k: v for k, v in action.to_dict().items() if k != "type" and v is not None}
    return f"{action.name}({', '.join(f'{k}={v!r}' for k, v in fields.items())})"


class Agent:
    """Runs one task at a time on `env` with `policy`, speaking `dialect`.

    ask_user(question) -> answer | None is called when the model hands control to the
    person (call_user); an answer continues the run, None ends it with outcome
    "call_user". on_text(step_index, new_text) streams the model's reply for a UI.
    settle() is called after a step's actions ran and timed as "settle" (the desktop
    env settles inside execute and may report `details["settle_s"]` instead).
    """

    def __init__(
        self,
        policy: Policy,
        env: Env,
        dialect: Dialect,
        *,
        max_steps: int = 50,
        safety: SafetyPolicy | None = None,
        max_parse_retries: int = 3,
        stuck_after: int = 3,
        settle: Callable[[], Any] | None = None,
        ask_user: Callable[[str], str | None] | None = None,
        on_text: Callable[[int, str], None] | None = None,
        chat_options: dict | None = None,
    ):
        if max_steps < 1:
            raise ValueError(f"max_steps must be at least 1, got {max_steps}")
        if max_parse_retries < 1:
            raise ValueError(f"max_parse_retries must be at least 1, got {max_parse_retries}")
        if stuck_after < 2:
            raise ValueError(f"stuck_after must be at least 2, got {stuck_after}")
        self.policy = policy
        self.env = env
        self.dialect = dialect
        self.max_steps = max_steps
        self.safety = safety if safety is not None else SafetyPolicy("normal")
        self.max_parse_retries = max_parse_retries
        self.stuck_after = stuck_after
        self.settle = settle
        self.ask_user = ask_user
        self.on_text = on_text
        self.chat_options = dict(chat_options or {})

        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._resume = threading.Event()
        self._resume.set()
        self._answers: queue.Queue[str | None] = queue.Queue()
        self._running = False
        self.outcome: str = ""
        self.final_message: str = ""

    # --- control from any thread --------------------------------------------------------

    def stop(self) -> None:
        """Stop before the next action; wakes a paused run and a pending question."""
        self._stop.set()
        self._resume.set()
        self._answers.put(None)

    def pause(self) -> None:
        """Hold the run between steps until resume() or stop()."""
        self._resume.clear()

    def resume(self) -> None:
        self._resume.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    @property
    def paused(self) -> bool:
        return not self._resume.is_set() and not self._stop.is_set()

    def answer_user(self, text: str | None) -> None:
        """Supply the person's reply to a call_user (see wait_for_answer)."""
        self._answers.put(text)

    def wait_for_answer(self, question: str = "", timeout: float | None = None) -> str | None:
        """Block until answer_user() or stop(); usable as `ask_user` by a UI."""
        try:
            answer = self._answers.get(timeout=timeout)
        except queue.Empty:
            return None
        return None if self._stop.is_set() else answer

    # --- the loop -----------------------------------------------------------------------

    def run(self, task: str) -> Generator[Step, None, None]:
        """Run `task`; yields each Step; Agent.outcome/final_message are set at the end."""
        if not task or not task.strip():
            raise ValueError("the task is empty")
        with self._lock:
            if self._running:
                raise RuntimeError("this agent is already running a task")
            self._running = True
        self.outcome, self.final_message = "", ""
        self.safety.start_run()
        try:
            yield from self._run(task.strip())
        except GeneratorExit:
            self._end("stopped", "the run was closed before it ended")
            raise
        finally:
            self._release_held_keys()
            # Ready for the next task: forget this run's stop, pause and unused answers
            # (cleared here, not at the start, so a stop pressed before the run began counts).
            self._stop.clear()
            self._resume.set()
            while not self._answers.empty():
                self._answers.get_nowait()
            with self._lock:
                self._running = False

    def _release_held_keys(self) -> None:
        """However the run ends, let go of every key a `press` still holds down, so the
        person is never left with a stuck Ctrl (an env without held keys has no hook)."""
        release = getattr(self.env, "release_held_keys", None)
        if not callable(release):
            return
        try:
            release()
        except Exception:
            log.exception("could not release the held keys")

    def _end(self, outcome: str, message: str = "") -> None:
        if not self.outcome:
            self.outcome, self.final_message = outcome, message

    def _run(self, task: str) -> Generator[Step, None, None]:
        history: list[HistoryTurn] = []
        bad_replies = 0  # consecutive replies that could not be executed
        after_call_user = False
        # (gray screenshot, actions) of the last step, for stuck detection
        previous: tuple[Image, list[dict]] | None = None
        repeats = 1

        for index in range(self.max_steps):
            self._resume.wait()
            if self._stop.is_set():
                self._end("stopped", "stopped by the person")
                return
            started = time.time()
            t0 = time.perf_counter()
            try:
                observation = self.env.observe()
            except Exception as exc:
                log.exception("observe failed")
                self._end("error", f"could not capture the screen: {type(exc).__name__}: {exc}")
                return
            capture_s = time.perf_counter() - t0

            width, height = observation.image.size
            model_size = tuple(self.dialect.model_size(width, height))
            observation = dataclasses.replace(
                observation, frame=observation.frame.with_model(model_size, self.dialect.space)
            )
            model_image = observation.image
            if model_image.size != model_size:
                from PIL import Image as PILImage

                model_image = model_image.resize(model_size, PILImage.Resampling.BICUBIC)
            messages = self.dialect.build_messages(task, history, model_image)
            step = Step(index, observation, model_image, messages, started_at=started)
            step.timings["capture"] = capture_s

            feedback: list[str] = []
            ended = self._ask_model(step)
            if ended:
                yield self._finish_step(step)
                return

            try:
                step.response = self.dialect.parse(step.reply, model_size)
            except A.ParseError as exc:
                step.parse_error = str(exc)
                bad_replies += 1
                if bad_replies >= self.max_parse_retries:
                    step.error = f"could not parse the model's reply {bad_replies} times: {exc}"
                    self._end("error", step.error)
                    step.outcome = "error"
                    yield self._finish_step(step)
                    return
                feedback.append(
                    f"Your last reply could not be executed: {exc} "
                    "Reply again with a Thought and one valid Action."
                )
                history.append(HistoryTurn(model_image, step.reply, "\n".join(feedback)))
                previous, repeats = None, 1
                yield self._finish_step(step)
                if step.outcome is not None:
                    return
                continue

            step.actions = [F.to_screen(observation.frame, a) for a in step.response.actions]
            mobile = [a for a in step.actions if A.is_mobile(a)]
            if mobile:
                # A phone action on a desktop is a model mistake like a parse error:
                # nothing from the reply runs and the model is told why.
                names = ", ".join(sorted({a.name for a in mobile}))
                reason = f"{names} is a mobile action; this is a desktop, use desktop actions"
                step.decisions = [
                    Decision("refused", reason)
                    if A.is_mobile(a)
                    else Decision("refused", "not run: the reply contained a mobile action")
                    for a in step.actions
                ]
                bad_replies += 1
                if bad_replies >= self.max_parse_retries:
                    step.error = f"the model kept replying with mobile actions: {reason}"
                    self._end("error", step.error)
                    step.outcome = "error"
                    yield self._finish_step(step)
                    return
                feedback.append(f"Your last reply could not be executed: {reason}.")
                history.append(HistoryTurn(model_image, step.reply, "\n".join(feedback)))
                previous, repeats = None, 1
                yield self._finish_step(step)
                if step.outcome is not None:
                    return
                continue
            bad_replies = 0

            # Stuck: the same actions again on a screen that did not change.
            signature = [a.to_dict() for a in step.response.actions]
            gray = _gray(observation.image)
            acting = any(not isinstance(a, A.TERMINAL_ACTIONS) for a in step.actions)
            if (
                previous is not None
                and acting
                and previous[1] == signature
                and _same_screen(previous[0], gray)
            ):
                repeats += 1
            else:
                repeats = 1
            previous = (gray, signature)
            if repeats >= self.stuck_after:
                step.error = (
                    f"stuck: the same action ({', '.join(map(_describe, step.actions))}) "
                    f"{repeats} times on a screen that did not change"
                )
                self._end("stuck", step.error)
                step.outcome = "stuck"
                yield self._finish_step(step)
                return

            answer = self._act(step, feedback, after_call_user)
            # The person's answer goes to the model, and what it does next is confirmed.
            after_call_user = answer is not None
            if answer is not None:
                feedback.append(f"The person answered: {answer}")
            if feedback:
                history.append(HistoryTurn(model_image, step.reply, "\n".join(feedback)))
            else:
                history.append(HistoryTurn(model_image, step.reply))
            yield self._finish_step(step)
            if step.outcome is not None:
                return

    def _finish_step(self, step: Step) -> Step:
        """Close a step; a stop request or the step limit makes it the run's last."""
        if step.outcome is None and self._stop.is_set():
            step.outcome = "stopped"
            self._end("stopped", "stopped by the person")
        if step.outcome is None and step.index == self.max_steps - 1:
            step.outcome = "max_steps"
            self._end("max_steps", f"reached the step limit ({self.max_steps})")
        step.ended_at = time.time()
        return step

    def _ask_model(self, step: Step) -> bool:
        """Fill step.reply from the policy; True when the run ended (a policy failure, or a
        stop that cancelled the reply)."""
        on_text = None
        if self.on_text is not None:
            stream, index = self.on_text, step.index

            def on_text(chunk: str) -> None:
                try:
                    stream(index, chunk)
                except Exception:  # a UI glitch must not kill the run
                    log.exception("on_text callback failed")

        t0 = time.perf_counter()
        try:
            # the stop event doubles as the policy's cancel hook: a stop mid-reply ends the
            # generation within a token (local) or a chunk (remote), not after the reply
            reply = self.policy.chat(step.messages, on_text=on_text, cancel=self._stop,
                                     **self.chat_options)
        except Exception as exc:
            step.timings["policy"] = time.perf_counter() - t0
            step.error = f"the model failed: {type(exc).__name__}: {exc}"
            log.error("%s", step.error)
            step.outcome = "error"
            self._end("error", step.error)
            return True
        step.timings["policy"] = time.perf_counter() - t0
        step.reply = reply if isinstance(reply, str) else str(getattr(reply, "text", ""))
        step.timings.update(policy_timings(getattr(reply, "timings", None)))
        if getattr(reply, "cancelled", False):
            # the partial reply is kept in the step; none of it runs
            step.outcome = "stopped"
            self._end("stopped", "stopped by the person while the model was replying")
            return True
        return False

    def _act(self, step: Step, feedback: list[str], after_call_user: bool) -> str | None:
        """Decide and execute the step's actions in order; may end the run.

        Returns the person's answer when the model called the user and got one."""
        execute_s = settle_s = 0.0
        answer = None
        ran_any = False
        for action in step.actions:
            if self._stop.is_set():
                step.outcome = "stopped"
                self._end("stopped", "stopped by the person before the next action")
                break
            decision = self.safety.decide(action, after_call_user=after_call_user)
            step.decisions.append(decision)
            if not decision.allowed and self._stop.is_set():
                # a stop while the person was being asked: the run was stopped, not refused
                step.outcome = "stopped"
                self._end("stopped", "stopped by the person while a confirmation was pending")
                break
            if not decision.allowed:
                step.outcome = "refused"
                step.error = f"refused {_describe(action)}: {decision.reason}"
                self._end("refused", step.error)
                break
            if isinstance(action, A.Finished):
                step.results.append(ExecutionResult(True, details={"ended": "finished"}))
                step.outcome = "finished"
                self._end("finished", action.content)
                break
            if isinstance(action, A.CallUser):
                answer = self._call_user(action.content)
                step.results.append(
                    ExecutionResult(True, details={"answer": answer} if answer else {})
                )
                if answer is None:
                    step.outcome = "stopped" if self._stop.is_set() else "call_user"
                    self._end(
                        step.outcome,
                        "stopped by the person" if self._stop.is_set() else action.content,
                    )
                break
            t0 = time.perf_counter()
            try:
                result = self.env.execute(action)
            except Exception as exc:
                execute_s += time.perf_counter() - t0
                log.exception("execute failed")
                step.results.append(ExecutionResult(False, f"{type(exc).__name__}: {exc}"))
                step.outcome = "error"
                step.error = f"executing {_describe(action)} failed: {type(exc).__name__}: {exc}"
                self._end("error", step.error)
                break
            execute_s += time.perf_counter() - t0
            ran_any = True
            step.results.append(result)
            reported = result.details.get("settle_s") if result.details else None
            if isinstance(reported, int | float):
                settle_s += float(reported)
                execute_s -= float(reported)
            if not result.ok:
                feedback.append(f"{_describe(action)} failed: {result.error}")
        if ran_any and self.settle is not None and not self._stop.is_set():
            t0 = time.perf_counter()
            self.settle()
            settle_s += time.perf_counter() - t0
        step.timings["execute"] = max(0.0, execute_s)
        if ran_any or settle_s:
            step.timings["settle"] = settle_s
        return answer

    def _call_user(self, question: str) -> str | None:
        """The person's answer to call_user, or None to end the run."""
        if self.ask_user is not None:
            try:
                answer = self.ask_user(question)
            except Exception:
                log.exception("ask_user callback failed")
                answer = None
        else:
            try:
                answer = self._answers.get_nowait()  # answered ahead of time
            except queue.Empty:
                answer = None
        if self._stop.is_set() or answer is None or not str(answer).strip():
            return None
        return str(answer)
