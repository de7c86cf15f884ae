"""Dialects beyond the parser: registry, image sizes, prompts, message layout, replies."""

from __future__ import annotations

import pytest
from PIL import Image
from qwen_vl_utils import smart_resize

from agent import actions as A
from agent.dialects import DIALECT_NAMES, dialect_for_checkpoint, get_dialect
from agent.protocols import Dialect, HistoryTurn

# Smallest images each dialect accepts: UI-TARS needs >= 100*28*28 pixels, Qwen3-VL and
# Qwen3.5 4*32*32.
SMALL = {"uitars-1.5": (280, 280), "uitars-1.0": (280, 280), "qwen3-vl": (64, 64),
         "qwen3.5": (64, 64)}


def image(name: str, shade: int) -> Image.Image:
    return Image.new("RGB", SMALL[name], (shade, shade, shade))


def images_in(messages: list[dict]) -> list[Image.Image]:
    return [p["image"] for m in messages for p in m["content"] if p["type"] == "image"]


def assistant_texts(messages: list[dict]) -> list[str]:
    return [m["content"][0]["text"] for m in messages if m["role"] == "assistant"]


# --- registry ---------------------------------------------------------------------------


def test_names_and_protocol():
    assert DIALECT_NAMES == ("uitars-1.5", "uitars-1.0", "qwen3-vl", "qwen3.5")
    for name in DIALECT_NAMES:
        dialect = get_dialect(name)
        assert isinstance(dialect, Dialect)
        assert dialect.name == name
        assert dialect.history_n == 5


def test_spaces_and_pixel_bounds():
    v15, v10, q3 = (get_dialect(n) for n in ("uitars-1.5", "uitars-1.0", "qwen3-vl"))
    assert (v15.space, v15.image_factor, v15.min_pixels, v15.max_pixels) == (
        "absolute",
        28,
        100 * 28 * 28,
        16384 * 28 * 28,
    )
    assert (v10.space, v10.image_factor, v10.max_pixels) == ("relative1000", 28, 2700 * 28 * 28)
    assert (q3.space, q3.image_factor, q3.min_pixels, q3.max_pixels) == (
        "relative1000",
        32,
        4 * 32 * 32,
        16384 * 32 * 32,
    )


def test_options():
    dialect = get_dialect("qwen3-vl", history_n=2, max_pixels=500_000, language="German")
    assert (dialect.history_n, dialect.max_pixels, dialect.language) == (2, 500_000, "German")
    with pytest.raises(ValueError, match="unknown dialect 'gpt'"):
        get_dialect("gpt")
    with pytest.raises(ValueError, match="history_n"):
        get_dialect("uitars-1.5", history_n=0)
    with pytest.raises(ValueError, match="max_pixels"):
        get_dialect("uitars-1.5", max_pixels=10)


# --- image sizes ------------------------------------------------------------------------


def test_model_size_1920x1080():
    assert get_dialect("uitars-1.5").model_size(1920, 1080) == (1932, 1092)
    assert get_dialect("qwen3-vl").model_size(1920, 1080) == (1920, 1088)
    assert get_dialect("uitars-1.0").model_size(1920, 1080) == (1932, 1092)  # under its max
    h, w = smart_resize(1440, 2560, factor=28, min_pixels=78400, max_pixels=2700 * 28 * 28)
    assert get_dialect("uitars-1.0").model_size(2560, 1440) == (w, h)
    assert w * h <= 2700 * 28 * 28 < 2560 * 1440


@pytest.mark.parametrize("name", DIALECT_NAMES)
@pytest.mark.parametrize("size", [(3840, 2160), (1280, 800), (100, 60), (2560, 1440)])
def test_model_size_respects_factor_and_bounds(name, size):
    dialect = get_dialect(name)
    w, h = dialect.model_size(*size)
    assert w % dialect.image_factor == 0 and h % dialect.image_factor == 0
    assert dialect.min_pixels <= w * h <= dialect.max_pixels


def test_max_pixels_option_shrinks_the_image():
    w, h = get_dialect("uitars-1.5", max_pixels=1000 * 28 * 28).model_size(1920, 1080)
    assert w * h <= 1000 * 28 * 28 and (w, h) != (1932, 1092)


@pytest.mark.parametrize("name", DIALECT_NAMES)
def test_smallest_max_pixels_still_builds_messages(name):
    # smart_resize floors when shrinking, so at max_pixels == min_pixels a 16:9 screen
    # ends up below min_pixels: the dialect must still accept its own model_size().
    first = get_dialect(name)
    dialect = get_dialect(name, max_pixels=first.min_pixels)
    size = dialect.model_size(1920, 1080)
    messages = dialect.build_messages("t", [], Image.new("RGB", size))
    assert images_in(messages)[-1].size == size


# --- prompts ----------------------------------------------------------------------------


def test_uitars15_prompt_structure():
    dialect = get_dialect("uitars-1.5", language="French")
    messages = dialect.build_messages("open the settings", [], image("uitars-1.5", 0))
    assert messages[0] == {
        "role": "system",
        "content": [{"type": "text", "text": "You are a helpful assistant."}],
    }
    assert messages[1]["role"] == "user"
    prompt = messages[1]["content"][0]["text"]
    sections = ["## Output Format", "## Action Space", "## Note", "## User Instruction"]
    positions = [prompt.index(s) for s in sections]
    assert positions == sorted(positions)
    assert "Thought: ...\nAction: ..." in prompt
    # the official COMPUTER_USE text (tests/test_uitars_prompt.py checks it line by line)
    assert "click(point='<point>x1 y1</point>')" in prompt
    for call in ("left_double(", "right_single(", "drag(", "hotkey(", "type(", "scroll(",
                 "wait()", "finished("):  # fmt: skip
        assert call in prompt
    assert "Use French in" in prompt
    assert prompt.rstrip().endswith("## User Instruction\nopen the settings")


def test_uitars10_prompt_uses_its_box_syntax():
    messages = get_dialect("uitars-1.0").build_messages("t", [], image("uitars-1.0", 0))
    assert "click(start_box='[x1, y1, x2, y2]')" in messages[1]["content"][0]["text"]


def test_qwen3vl_prompt_is_a_system_message_with_the_tool():
    dialect = get_dialect("qwen3-vl", language="Spanish")
    messages = dialect.build_messages("find the weather", [], image("qwen3-vl", 0))
    assert messages[0]["role"] == "system"
    assert '"name": "computer_use"' in messages[0]["content"][0]["text"]
    task = messages[1]["content"][0]["text"]
    assert messages[1]["role"] == "user" and "find the weather" in task and "Spanish" in task


# --- history layout ---------------------------------------------------------------------


@pytest.mark.parametrize("name", DIALECT_NAMES)
def test_image_parts_are_the_resized_images(name):
    dialect = get_dialect(name)
    new = image(name, 9)
    messages = dialect.build_messages("t", [], new)
    assert messages[-1] == {
        "role": "user",
        "content": [
            {
                "type": "image",
                "image": new,
                "resized_width": new.width,
                "resized_height": new.height,
            }
        ],
    }
    assert messages[-1]["content"][0]["image"] is new


@pytest.mark.parametrize("name", DIALECT_NAMES)
def test_unresized_image_is_refused(name):
    with pytest.raises(ValueError, match="model_size"):
        get_dialect(name).build_messages("t", [], Image.new("RGB", (1920, 1080)))


@pytest.mark.parametrize("name", DIALECT_NAMES)
def test_last_history_n_screenshots_and_every_reply(name):
    dialect = get_dialect(name, history_n=5)
    shots = [image(name, i) for i in range(8)]
    history = [HistoryTurn(shots[i], f"Thought: step {i}\nAction: wait()") for i in range(7)]
    messages = dialect.build_messages("t", history, shots[7])
    kept = images_in(messages)
    assert len(kept) == 5
    assert [im is shot for im, shot in zip(kept, shots[3:])] == [True] * 5
    assert messages[-1]["content"][0]["image"] is shots[7]
    assert [t.split("\n")[0] for t in assistant_texts(messages)] == [
        f"Thought: step {i}" for i in range(7)
    ]
    # every kept screenshot is directly followed by its own reply
    for i in range(3, 7):
        at = next(
            k
            for k, m in enumerate(messages)
            if m["content"][0]["type"] == "image" and m["content"][0]["image"] is shots[i]
        )
        assert messages[at + 1]["content"][0]["text"].startswith(f"Thought: step {i}")


@pytest.mark.parametrize("name", DIALECT_NAMES)
def test_feedback_follows_its_reply(name):
    dialect = get_dialect(name)
    history = [
        HistoryTurn(image(name, 1), "Action: clack()", feedback="unknown action 'clack'"),
        HistoryTurn(image(name, 2), "Action: call_user()", feedback="The password is hunter2"),
    ]
    messages = dialect.build_messages("t", history, image(name, 3))
    roles = [(m["role"], m["content"][0]["type"]) for m in messages[2:]]
    assert roles == [
        ("user", "image"),
        ("assistant", "text"),
        ("user", "text"),
        ("user", "image"),
        ("assistant", "text"),
        ("user", "text"),
        ("user", "image"),
    ]
    assert messages[4]["content"][0]["text"] == "unknown action 'clack'"
    assert messages[7]["content"][0]["text"] == "The password is hunter2"


@pytest.mark.parametrize("name", DIALECT_NAMES)
@pytest.mark.parametrize("history_n", [1, 3, 5])
def test_messages_are_append_only_until_a_screenshot_is_dropped(name, history_n):
    dialect = get_dialect(name, history_n=history_n)
    shots = [image(name, i) for i in range(history_n + 2)]
    history: list[HistoryTurn] = []
    previous = dialect.build_messages("task", history, shots[0])
    for step in range(1, history_n + 2):
        feedback = "parse error" if step % 2 else None
        history.append(HistoryTurn(shots[step - 1], f"Action: wait() #{step}", feedback))
        current = dialect.build_messages("task", history, shots[step])
        assert len(images_in(current)) == min(step + 1, history_n)
        if step < history_n:  # nothing dropped yet: a strict extension of the last step
            assert current[: len(previous)] == previous
            assert current[len(previous)]["role"] == "assistant"
        else:  # the oldest screenshot went: still every reply, in order
            assert current[: len(previous)] != previous
        assert len(assistant_texts(current)) == step
        previous = current


def test_uitars_history_replies_get_box_tokens_back():
    dialect = get_dialect("uitars-1.5")
    replies = [
        "Thought: a\nAction: click(start_box='(10,20)')",
        "Action: drag(start_box='<|box_start|>(1,2)<|box_end|>', end_box='(3, 4)')",
        "Action: type(content='(1,2)')",
    ]
    history = [HistoryTurn(image("uitars-1.5", i), r) for i, r in enumerate(replies)]
    texts = assistant_texts(dialect.build_messages("t", history, image("uitars-1.5", 9)))
    assert texts == [
        "Thought: a\nAction: click(start_box='<|box_start|>(10,20)<|box_end|>')",
        "Action: drag(start_box='<|box_start|>(1,2)<|box_end|>', "
        "end_box='<|box_start|>(3, 4)<|box_end|>')",
        "Action: type(content='(1,2)')",
    ]


def test_qwen3vl_history_replies_are_verbatim():
    reply = (
        'ok\n<tool_call>\n{"name": "computer_use", "arguments": {"action": "wait"}}\n</tool_call>'
    )
    dialect = get_dialect("qwen3-vl")
    messages = dialect.build_messages(
        "t", [HistoryTurn(image("qwen3-vl", 1), reply)], image("qwen3-vl", 2)
    )
    assert assistant_texts(messages) == [reply]


# --- format_reply -----------------------------------------------------------------------

P, Q = A.Point(10, 20), A.Point(300.5, 400)
UITARS_ACTIONS = [
    A.Click(point=P),
    A.DoubleClick(point=Q),
    A.RightClick(point=P),
    A.Hover(point=Q),
    A.Drag(start=P, end=Q),
    A.Scroll("down", point=P),
    A.Scroll("left"),
    A.Hotkey(("ctrl", "shift", "t")),
    A.Press(("shift",)),
    A.Release(("shift",)),
    A.Type('it\'s C:\\Users\\me "quoted"\nsecond line'),
    A.Type("submit me", enter=True),
    A.Wait(),
    A.Finished("The answer is 'x'\nbye"),
    A.Finished(),
    A.CallUser(),
    A.CallUser("need a password"),
    A.LongPress(point=P),
    A.OpenApp("Settings"),
    A.PressHome(),
    A.PressBack(),
]
QWEN_ACTIONS = [
    A.Click(point=P),
    A.DoubleClick(point=Q),
    A.TripleClick(point=P),
    A.RightClick(point=P),
    A.MiddleClick(point=Q),
    A.Hover(point=Q),
    A.Drag(start=P, end=Q),
    A.Scroll("up", point=P, amount=3),
    A.Scroll("right"),
    A.Hotkey(("ctrl", "c")),
    A.Type('it\'s C:\\Users\\me "quoted"\nsecond line'),
    A.Type("submit me", enter=True),
    A.Wait(2.0),
    A.Finished("The answer is 42"),
    A.Finished(),
]


@pytest.mark.parametrize("name", ["uitars-1.5", "uitars-1.0"])
@pytest.mark.parametrize("action", UITARS_ACTIONS, ids=lambda a: a.name)
def test_uitars_format_reply_round_trips(name, action):
    dialect = get_dialect(name)
    text = dialect.format_reply("I act.", [action])
    parsed = dialect.parse(text, (1932, 1092))
    assert parsed.thought == "I act."
    assert parsed.actions == (action,)


@pytest.mark.parametrize("action", QWEN_ACTIONS, ids=lambda a: a.name)
def test_qwen3vl_format_reply_round_trips(action):
    dialect = get_dialect("qwen3-vl")
    parsed = dialect.parse(dialect.format_reply("I act.", [action]), (1920, 1088))
    assert (parsed.thought, parsed.actions) == ("I act.", (action,))


@pytest.mark.parametrize("name", DIALECT_NAMES)
def test_format_reply_several_actions(name):
    dialect = get_dialect(name)
    actions = (A.Click(point=P), A.Type("hello", enter=True), A.Hotkey(("ctrl", "s")))
    assert dialect.parse(dialect.format_reply("", actions), (1932, 1092)).actions == actions


def test_uitars15_writes_box_tokens_and_uitars10_bare_points():
    v15 = get_dialect("uitars-1.5").format_reply("t", [A.Click(point=P)])
    assert v15 == "Thought: t\nAction: click(start_box='<|box_start|>(10,20)<|box_end|>')"
    v10 = get_dialect("uitars-1.0").format_reply("t", [A.Click(point=P)])
    assert v10 == "Thought: t\nAction: click(start_box='(10,20)')"


def test_uitars_never_writes_exponents():
    dialect = get_dialect("uitars-1.0")
    text = dialect.format_reply("t", [A.Click(point=A.Point(1e-05, 333.33333333333337))])
    assert "e-" not in text
    point = dialect.parse(text, (1932, 1092)).actions[0].point
    assert point == A.Point(0.00001, 333.33333333333337)


@pytest.mark.parametrize(
    "name, action",
    [
        ("uitars-1.5", A.TripleClick(point=P)),
        ("uitars-1.0", A.MiddleClick(point=P)),
        ("qwen3-vl", A.Press(("shift",))),
        ("qwen3-vl", A.OpenApp("x")),
        ("qwen3-vl", A.PressHome()),
    ],
)
def test_format_reply_refuses_what_the_dialect_cannot_say(name, action):
    with pytest.raises(ValueError, match="has no action"):
        get_dialect(name).format_reply("t", [action])


def test_format_reply_needs_an_action():
    for name in DIALECT_NAMES:
        with pytest.raises(ValueError):
            get_dialect(name).format_reply("t", [])


# --- checkpoint -> dialect --------------------------------------------------------------


@pytest.mark.parametrize(
    "config, expected",
    [
        ({"model_type": "qwen2_5_vl"}, "uitars-1.5"),
        ({"architectures": ["Qwen2_5_VLForConditionalGeneration"]}, "uitars-1.5"),
        ({"model_type": "qwen3_vl"}, "qwen3-vl"),
        ({"model_type": "qwen3_vl_moe"}, "qwen3-vl"),
        ({"architectures": ["Qwen3VLMoeForConditionalGeneration"]}, "qwen3-vl"),
        ({"model_type": "qwen2_vl"}, "uitars-1.0"),
    ],
)
def test_dialect_for_checkpoint(config, expected):
    assert dialect_for_checkpoint(config) == expected


@pytest.mark.parametrize("config", [{}, {"model_type": "llama"}, {"architectures": ["Bert"]}])
def test_unknown_checkpoint_is_a_clear_error(config):
    with pytest.raises(ValueError, match="cannot tell which dialect.*qwen2_5_vl"):
        dialect_for_checkpoint(config)
    with pytest.raises(TypeError):
        dialect_for_checkpoint("config.json")


def test_real_transformers_configs():
    from transformers import Qwen2_5_VLConfig, Qwen2VLConfig, Qwen3VLConfig, Qwen3VLMoeConfig

    assert dialect_for_checkpoint(Qwen2_5_VLConfig().to_dict()) == "uitars-1.5"
    assert dialect_for_checkpoint(Qwen2VLConfig().to_dict()) == "uitars-1.0"
    assert dialect_for_checkpoint(Qwen3VLConfig().to_dict()) == "qwen3-vl"
    assert dialect_for_checkpoint(Qwen3VLMoeConfig().to_dict()) == "qwen3-vl"


def test_importing_dialects_is_cheap():
    """No torch, PIL or qwen_vl_utils until an image is actually resized."""
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys, agent.dialects, app.commands.parse; "
        "print(sorted(m for m in ('torch', 'PIL', 'qwen_vl_utils', 'PySide6') if m in sys.modules))"
    )
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root
    )
    assert out.stdout.strip() == "[]"
