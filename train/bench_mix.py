"""A synthetic but realistically shaped mix of agent steps, as training samples (train.data).

Each sample is one step of a synthetic episode, built exactly as a recorded run's step is:
the base's dialect lays out its system prompt, the task, the last `history_n` screenshots
with every earlier reply, and the new screenshot (agent.dialects: the same messages as
inference), and train.data.tokenize renders them with the checkpoint's processor and
appends the target reply. So a step k of an episode carries min(k + 1, history_n)
screenshots (1-5 with the dialects' default history_n = 5) and k earlier replies.

What is synthetic: the screenshots are random pixels at the size the dialect resizes the
episode's screen to (speed does not depend on pixel values), the screen and the max_pixels
bound are drawn per episode, and the replies are a one-line thought plus one action in the
dialect's own reply format, trimmed to 20-60 target tokens. Episode lengths are drawn
uniformly, as a person's recorded runs of short desktop tasks would be.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from agent import actions as A
from agent.protocols import HistoryTurn
from train.data import ImageCache, Sample, tokenize


@dataclass(frozen=True)
class Mix:
    """How the episodes are drawn; one per benchmark config (a tiny model gets tiny screens)."""

    screens: tuple[tuple[int, int], ...]  # physical screen sizes, one drawn per episode
    max_pixels: tuple[int, ...]  # the dialect's max_pixels bound, one drawn per episode
    episode_steps: tuple[int, int] = (1, 8)  # min, max steps of an episode (uniform)
    history_n: int = 5  # screenshots kept in the prompt (the dialects' default)
    target_tokens: tuple[int, int] = (20, 60)  # the target reply's length in tokens

    def describe(self) -> dict:
        return {
            "screens": [f"{w}x{h}" for w, h in self.screens],
            "max_pixels": list(self.max_pixels),
            "episode_steps": list(self.episode_steps),
            "history_n": self.history_n,
            "target_reply_tokens_aimed": list(self.target_tokens),
            "built": "each sample is one step of a synthetic episode: the base's dialect "
                     "builds the messages (system prompt, task, the last history_n "
                     "screenshots with every earlier reply, the new screenshot) and "
                     "train.data.tokenize renders them with the checkpoint's processor and "
                     "appends the target reply; screenshots are random pixels at the size "
                     "the dialect resizes the episode's screen to (screen and max_pixels "
                     "drawn per episode); replies are a thought plus one action in the "
                     "dialect's format; samples are shuffled",
        }


TASKS = (
    "Open the settings and turn on dark mode.",
    "Find the invoice from March in the Downloads folder and attach it to a new email to "
    "accounting.",
    "In the spreadsheet, sort the table by the Date column and save the file.",
    "Search the web for the weather in Paris tomorrow and tell me the forecast.",
    "Rename the file report_final.docx on the desktop to report_2024.docx.",
    "Turn off notifications for the chat app in the system preferences.",
    "Create a new folder called Photos in Documents and move the three images into it.",
    "Change the browser's default search engine to DuckDuckGo.",
)
THOUGHTS = (
    "The settings window is open; the Appearance section should hold the theme switch.",
    "I need to open the File menu first to reach the Save As dialog.",
    "The search field is at the top of the page, so I will click it and type the query.",
    "The list is long; scrolling down should reveal the entry I am looking for.",
    "The dialog asks for confirmation, and the OK button is at its lower right.",
    "The file is selected now; pressing F2 lets me edit its name.",
    "The toggle is still off, so one click on it will enable the option.",
    "The page has loaded and the result is visible; the task is complete.",
)
TYPED = ("dark mode", "weather Paris tomorrow", "report_2024.docx", "Photos", "accounting")


def random_action(rng: random.Random) -> A.Action:
    """One action of the kinds agents take most, at a random place (0..1000 is converted by
    each dialect's own format_reply, so any dialect can write it)."""
    kind = rng.random()
    point = A.Point(rng.randint(10, 990), rng.randint(10, 990))
    if kind < 0.55:
        return A.Click(point)
    if kind < 0.75:
        return A.Type(rng.choice(TYPED), enter=rng.random() < 0.5)
    if kind < 0.85:
        return A.Scroll(rng.choice(("up", "down")), point)
    if kind < 0.95:
        return A.Hotkey(rng.choice((("ctrl", "s"), ("ctrl", "c"), ("alt", "tab"))))
    return A.DoubleClick(point)


def random_screenshot(rng: random.Random, size: tuple[int, int]):
    """Random RGB pixels of `size` (already the model size: the dialect would resize to it)."""
    from PIL import Image

    width, height = size
    return Image.frombytes("RGB", (width, height), rng.randbytes(width * height * 3))


def target_reply(rng: random.Random, dialect, tokenizer, lo: int, hi: int) -> str:
    """A thought and one action in the dialect's format, its words trimmed until the reply
    (plus its end token) is at most `hi` tokens; longer thoughts are joined while under `lo`."""
    action = random_action(rng)
    thought = rng.choice(THOUGHTS)
    while len(tokenizer(dialect.format_reply(thought, [action]))["input_ids"]) + 1 < lo:
        thought += " " + rng.choice(THOUGHTS)
    words = thought.split()
    reply = dialect.format_reply(" ".join(words), [action])
    while words and len(tokenizer(reply)["input_ids"]) + 1 > hi:
        words.pop()
        reply = dialect.format_reply(" ".join(words), [action])
    return reply


def agent_step_samples(count: int, mix: Mix, dialect_name: str, processor,
                       seed: int = 0) -> list[Sample]:
    """`count` samples: steps of synthetic episodes in `dialect_name`, shuffled."""
    from agent.dialects import get_dialect

    if count < 1:
        raise ValueError(f"the mix needs at least 1 sample, got {count}")
    rng = random.Random(seed)
    tokenizer = processor.tokenizer
    images = ImageCache()  # unused by in-memory images; tokenize's signature wants one
    samples: list[Sample] = []
    episode = 0
    while len(samples) < count:
        screen = rng.choice(mix.screens)
        dialect = get_dialect(dialect_name, history_n=mix.history_n,
                              max_pixels=rng.choice(mix.max_pixels))
        size = tuple(dialect.model_size(*screen))
        task = rng.choice(TASKS)
        history: list[HistoryTurn] = []
        for step in range(rng.randint(*mix.episode_steps)):
            if len(samples) == count:
                break
            shot = random_screenshot(rng, size)
            reply = target_reply(rng, dialect, tokenizer, *mix.target_tokens)
            messages = dialect.build_messages(task, history, shot)
            messages.append({"role": "assistant", "content": reply})
            source = f"synthetic episode {episode} step {step} ({screen[0]}x{screen[1]} -> " \
                     f"{size[0]}x{size[1]})"
            samples.append(tokenize(messages, processor, images, source))
            history.append(HistoryTurn(shot, reply))
        episode += 1
    rng.shuffle(samples)
    return samples


def mix_stats(samples: list[Sample]) -> dict:
    """What the mix came out as: lengths and screenshots per sample."""
    lengths = sorted(len(s) for s in samples)
    shots: dict[int, int] = {}
    for s in samples:
        shots[len(s.images)] = shots.get(len(s.images), 0) + 1
    targets = [s.target_tokens for s in samples]
    return {
        "samples": len(samples),
        "tokens": sum(lengths),
        "target_tokens": sum(targets),
        "sample_tokens": {"min": lengths[0], "median": lengths[len(lengths) // 2],
                          "max": lengths[-1]},
        "target_tokens_per_sample": {"min": min(targets), "max": max(targets)},
        "screenshots_per_sample": {str(k): v for k, v in sorted(shots.items())},
    }
