"""Prompt templates of the dialects.

UI-TARS-1.5 gets the official computer-use prompt word for word (the checkpoint was
trained on it), kept as data in uitars_computer_use.json with its source and licence.
For UI-TARS-1.0 the fixed format is kept as the model was trained on it: UI-TARS' section
headings (## Output Format, ## Action Space, ## Note, ## User Instruction) and its action
signatures. Qwen3-VL's `computer_use` tool schema and function-calling preamble are taken
from the Qwen3-VL cookbook's computer-use example (the schema is data the model reads as
JSON). The explanatory comments and notes of the 1.0 and Qwen3-VL prompts are our own
wording.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

UITARS_15_PROMPT_FILE = Path(__file__).with_name("uitars_computer_use.json")

# --- UI-TARS ------------------------------------------------------------------------------

_UITARS_HEAD = (
    "You are a GUI agent. You are given a task and your action history, with screenshots. "
    "You need to perform the next action to complete the task.\n"
    "\n"
    "## Output Format\n"
    "```\n"
    "Thought: ...\n"
    "Action: ...\n"
    "```\n"
    "\n"
    "## Action Space\n"
)

_UITARS_TAIL = (
    "\n"
    "## Note\n"
    "- Use {language} in `Thought` part.\n"
    "- In `Thought`, briefly plan, then say in one sentence which action you take next and "
    "on which element.\n"
    "\n"
    "## User Instruction\n"
    "{instruction}\n"
)

# UI-TARS-1.0: coordinates relative to the screenshot, 0..1000 on both axes.
UITARS_10_ACTION_SPACE = """\
click(start_box='[x1, y1, x2, y2]')
left_double(start_box='[x1, y1, x2, y2]')
right_single(start_box='[x1, y1, x2, y2]')
drag(start_box='[x1, y1, x2, y2]', end_box='[x3, y3, x4, y4]')
hotkey(key='')
type(content='') # End content with "\\n" to submit what you typed.
scroll(start_box='[x1, y1, x2, y2]', direction='down or up or right or left')
wait() # Pause 5 seconds, then look at a new screenshot.
finished()
call_user() # Hand control back to the user: the task cannot be done, or you need their help.
"""


UITARS_10_TEMPLATE = _UITARS_HEAD + UITARS_10_ACTION_SPACE + _UITARS_TAIL


@lru_cache(maxsize=1)
def uitars_15_template() -> str:
    """The official UI-TARS-1.5 COMPUTER_USE template, read once from its data file."""
    data = json.loads(UITARS_15_PROMPT_FILE.read_text(encoding="utf-8"))
    return data["template"]


def fill_uitars_prompt(template: str, instruction: str, language: str) -> str:
    """A UI-TARS template with {language} and {instruction} filled in.

    Plain replacement, not str.format: the task is the person's text and may hold braces,
    and the instruction goes in last so a task mentioning "{language}" stays as written.
    """
    return template.replace("{language}", language).replace("{instruction}", instruction)


# --- Qwen3-VL -----------------------------------------------------------------------------

# The cookbook's ComputerUse tool, with the resolution fixed at 1000x1000 because Qwen3-VL
# answers in coordinates relative to the image, 0..1000.
QWEN3VL_TOOL: dict = {
    "type": "function",
    "function": {
        "name": "computer_use",
        "description": (
            "Use a mouse and keyboard to interact with a computer, and take screenshots.\n"
            "* This is an interface to a desktop GUI. You do not have access to a terminal or "
            "applications menu. You must click on desktop icons to start applications.\n"
            "* Some applications may take time to start or process actions, so you may need "
            "to wait and take successive screenshots to see the results of your actions. E.g. "
            "if you click on Firefox and a window doesn't open, try wait and taking another "
            "screenshot.\n"
            "* The screen's resolution is 1000x1000.\n"
            "* Whenever you intend to move the cursor to click on an element like an icon, you "
            "should consult a screenshot to determine the coordinates of the element before "
            "moving the cursor.\n"
            "* If you tried clicking on a program or link but it failed to load, even after "
            "waiting, try adjusting your cursor position so that the tip of the cursor "
            "visually falls on the element that you want to click.\n"
            "* Make sure to click any buttons, links, icons, etc with the cursor tip in the "
            "center of the element. Don't click boxes on their edges."
        ),
        "parameters": {
            "properties": {
                "action": {
                    "description": (
                        "The action to perform. The available actions are:\n"
                        "* `key`: Performs key down presses on the arguments passed in order, "
                        "then performs key releases in reverse order.\n"
                        "* `type`: Type a string of text on the keyboard.\n"
                        "* `mouse_move`: Move the cursor to a specified (x, y) pixel coordinate "
                        "on the screen.\n"
                        "* `left_click`: Click the left mouse button at a specified (x, y) pixel "
                        "coordinate on the screen.\n"
                        "* `left_click_drag`: Click and drag the cursor to a specified (x, y) "
                        "pixel coordinate on the screen.\n"
                        "* `right_click`: Click the right mouse button at a specified (x, y) "
                        "pixel coordinate on the screen.\n"
                        "* `middle_click`: Click the middle mouse button at a specified (x, y) "
                        "pixel coordinate on the screen.\n"
                        "* `double_click`: Double-click the left mouse button at a specified "
                        "(x, y) pixel coordinate on the screen.\n"
                        "* `triple_click`: Triple-click the left mouse button at a specified "
                        "(x, y) pixel coordinate on the screen (simulated as double-click since "
                        "it's the closest action).\n"
                        "* `scroll`: Performs a scroll of the mouse scroll wheel.\n"
                        "* `hscroll`: Performs a horizontal scroll (mapped to regular scroll).\n"
                        "* `wait`: Wait specified seconds for the change to happen.\n"
                        "* `terminate`: Terminate the current task and report its completion "
                        "status.\n"
                        "* `answer`: Answer a question."
                    ),
                    "enum": [
                        "key",
                        "type",
                        "mouse_move",
                        "left_click",
                        "left_click_drag",
                        "right_click",
                        "middle_click",
                        "double_click",
                        "triple_click",
                        "scroll",
                        "hscroll",
                        "wait",
                        "terminate",
                        "answer",
                    ],
                    "type": "string",
                },
                "keys": {"description": "Required only by `action=key`.", "type": "array"},
                "text": {
                    "description": "Required only by `action=type` and `action=answer`.",
                    "type": "string",
                },
                "coordinate": {
                    "description": (
                        "(x, y): The x (pixels from the left edge) and y (pixels from the top "
                        "edge) coordinates to move the mouse to."
                    ),
                    "type": "array",
                },
                "pixels": {
                    "description": (
                        "The amount of scrolling to perform. Positive values scroll up, "
                        "negative values scroll down. Required only by `action=scroll` and "
                        "`action=hscroll`."
                    ),
                    "type": "number",
                },
                "time": {
                    "description": "The seconds to wait. Required only by `action=wait`.",
                    "type": "number",
                },
                "status": {
                    "description": "The status of the task. Required only by `action=terminate`.",
                    "type": "string",
                    "enum": ["success", "failure"],
                },
            },
            "required": ["action"],
            "type": "object",
        },
    },
}

# The Nous-style function-calling preamble Qwen3-VL's chat format uses for tools.
_QWEN_TOOLS_PREAMBLE = (
    "You are a helpful assistant.\n"
    "\n"
    "# Tools\n"
    "\n"
    "You may call one or more functions to assist with the user query.\n"
    "\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n"
    "<tools>\n"
    "{tools}\n"
    "</tools>\n"
    "\n"
    "For each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\n"
    "<tool_call>\n"
    '{{"name": <function-name>, "arguments": <args-json-object>}}\n'
    "</tool_call>"
)

_QWEN_TASK = (
    "Task: {task}\n"
    "\n"
    "You see the screen in the screenshots that follow. Each time, make the next move with "
    "the computer_use tool. Before the tool call, write a sentence or two in {language}: what "
    "you see and what you do next. left_click_drag drags from wherever the cursor is, so put "
    "a mouse_move to the start point before it in the same reply. When the task is done, "
    "call terminate with status "
    '"success" (use answer first if the task asks for information); if it cannot be done, '
    'call terminate with status "failure".'
)


def qwen3vl_system_prompt() -> str:
    return _QWEN_TOOLS_PREAMBLE.format(tools=json.dumps(QWEN3VL_TOOL, ensure_ascii=False))


def qwen3vl_task(task: str, language: str) -> str:
    return _QWEN_TASK.format(task=task, language=language)
