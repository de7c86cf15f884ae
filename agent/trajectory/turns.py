"""The chat turns of a recorded step exactly as the model saw them, and how to join turns.

This is the one place that turns a steps.jsonl record back into chat messages: the
exports (agent/trajectory/export.py) build on it and the trainer's sample builder
(train/) is to, so a model trained either way sees what the agent saw. Pure Python:
no torch (PIL only inside `shown_reply`).

Contracts
---------
`step_messages(run, step) -> list[dict]`
    The messages sent to the model at `step` (a record of `run.steps`, `run` from
    agent.trajectory.loader.load_run), followed by the step's raw reply as a final
    assistant message. Qwen chat format: every message is
    `{"role": str, "content": [part, ...]}` with parts `{"type": "text", "text": str}` or
    `{"type": "image", "image": "<absolute path of the run's image file>"}`. Nothing is
    merged, reordered or rewritten: two user messages in a row stay two messages, earlier
    replies are the text the dialect showed back (UI-TARS-1.5 box tokens included), the
    last message is `step["reply"]` as the model wrote it. A recorded string content
    becomes one text part. Raises ValueError for a step without messages or reply, or
    with a part that is neither text nor image; FileNotFoundError for a missing image.

`reply_steps(run, step) -> list[dict | None]`
    For each assistant message of `step["messages"]`, in order, the earlier step whose
    reply it is (None where a hand-edited run has more replies than earlier steps). The
    loop keeps every earlier reply, one per step, even when history_n drops its
    screenshot, so they are matched by position, not by text (the dialect may have
    normalised the text).

`shown_reply(dialect, reply) -> str`
    `reply` the way `dialect` shows a reply back to the model in later prompts (taken
    from the dialect's own prompt builder, so the two cannot disagree). For UI-TARS this
    restores the <|box_start|>/<|box_end|> special tokens the model generates around
    points and a decoder that skips special tokens drops; other dialects return it as is.
    The exports write every reply, history and target, this way (one convention).

`merge_same_role_turns(messages, separator=chatml_boundary) -> list[dict]`
    For formats that forbid two turns of one role in a row (LLaMA-Factory sharegpt,
    ms-swift, Qwen-VL finetune): each run of consecutive same-role messages becomes one
    message whose content is their parts with a text part holding the separator between
    each pair. With the separator the chat template itself puts between two such
    messages, the merged conversation renders to exactly the same text (and, since
    tokenizers split special tokens out of plain text, the same token ids). `separator`
    is a string, a mapping role -> string, or a function (first_role, second_role) -> str
    such as `chatml_boundary` or `template_boundary(render)`. Keys other than role and
    content are kept from the first message; merging messages that disagree on one of
    them (e.g. a per-message "loss") raises ValueError rather than guess.

`join_turns(messages, separator=chatml_boundary) -> dict`
    All of `messages`, whatever their roles, as one message of the first one's role,
    joined by the boundary text between each pair: used to carry context (earlier
    replies that must not be trained) inside a user turn in formats that train every
    assistant turn. Renders to the same text as the original messages.

`template_boundary(render) -> (first_role, second_role) -> str`
    The boundary text a chat template produces between the end of one message's content
    and the start of the next's, found by rendering sentinel messages with `render`
    (e.g. `lambda m: tokenizer.apply_chat_template(m, tokenize=False)`).

`chatml_boundary(first_role, second_role) -> str`
    That text for the Qwen ChatML templates every deskpilot dialect speaks (Qwen2-VL,
    Qwen2.5-VL / UI-TARS, Qwen3-VL): "<|im_end|>\\n<|im_start|>{second_role}\\n".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

Boundary = Callable[[str, str], str]

_SENTINEL_A = "DESKPILOTSENTINELFIRST"
_SENTINEL_B = "DESKPILOTSENTINELSECOND"


# --- the step's messages ----------------------------------------------------------------


def _parts(content: Any, run, step: dict) -> list[dict]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    parts: list[dict] = []
    for part in content:
        kind = part.get("type")
        if kind == "image":
            parts.append({"type": "image", "image": str(run.file(part["image"]).resolve())})
        elif kind == "text":
            parts.append({"type": "text", "text": part.get("text", "")})
        else:
            raise ValueError(
                f"{run.path}, step {step.get('index')}: unsupported message part {kind!r}"
            )
    return parts


def step_messages(run, step: dict) -> list[dict]:
    """The messages the model saw at `step`, then its reply (see the module docstring)."""
    if not step.get("messages"):
        raise ValueError(f"{run.path}, step {step.get('index')}: no recorded messages")
    if not step.get("reply"):
        raise ValueError(f"{run.path}, step {step.get('index')}: no recorded reply")
    messages = [
        {"role": m.get("role", "user"), "content": _parts(m.get("content"), run, step)}
        for m in step["messages"]
    ]
    messages.append({"role": "assistant", "content": [{"type": "text", "text": step["reply"]}]})
    return messages


def reply_steps(run, step: dict) -> list[dict | None]:
    """The earlier step behind each assistant message of `step` (see the module docstring)."""
    position = next(
        (i for i, s in enumerate(run.steps) if s is step),
        next((i for i, s in enumerate(run.steps) if s.get("index") == step.get("index")), None),
    )
    if position is None:
        raise ValueError(f"{run.path}: step {step.get('index')} is not a step of this run")
    n_replies = sum(1 for m in step.get("messages") or [] if m.get("role") == "assistant")
    earlier = run.steps[max(0, position - n_replies) : position]
    return [None] * (n_replies - len(earlier)) + list(earlier)


def shown_reply(dialect, reply: str) -> str:
    """`reply` as `dialect` shows replies to the model (see the module docstring)."""
    from PIL import Image

    from agent.protocols import HistoryTurn

    side = dialect.image_factor  # the smallest image the dialect's builder accepts
    image = Image.new("RGB", (side, side))
    built = dialect.build_messages("task", [HistoryTurn(image, reply)], image)
    (shown,) = [m for m in built if m["role"] == "assistant"]
    return "".join(p["text"] for p in shown["content"] if p.get("type") == "text")


# --- joining turns ----------------------------------------------------------------------


def chatml_boundary(first_role: str, second_role: str) -> str:
    """Qwen ChatML: what lies between two messages' contents."""
    return f"<|im_end|>\n<|im_start|>{second_role}\n"


def template_boundary(render: Callable[[list[dict]], str]) -> Boundary:
    """The boundary function of the chat template behind `render` (messages -> text)."""
    cache: dict[tuple[str, str], str] = {}

    def boundary(first_role: str, second_role: str) -> str:
        key = (first_role, second_role)
        if key not in cache:
            text = render([
                {"role": first_role, "content": [{"type": "text", "text": _SENTINEL_A}]},
                {"role": second_role, "content": [{"type": "text", "text": _SENTINEL_B}]},
            ])
            start = text.find(_SENTINEL_A)
            end = text.find(_SENTINEL_B, start + len(_SENTINEL_A))
            if start < 0 or end < 0:
                raise ValueError(
                    f"the chat template does not render {first_role} and {second_role} "
                    "message text verbatim; cannot find the text between two turns"
                )
            cache[key] = text[start + len(_SENTINEL_A) : end]
        return cache[key]

    return boundary


def _boundary_of(separator: str | Mapping[str, str] | Boundary) -> Boundary:
    if isinstance(separator, str):
        return lambda first, second: separator
    if isinstance(separator, Mapping):
        return lambda first, second: separator[second]
    return separator


def _content(message: dict) -> list[dict]:
    content = message.get("content")
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return list(content)


def _extras(message: dict) -> dict:
    return {k: v for k, v in message.items() if k not in ("role", "content")}


def join_turns(messages: list[dict], separator: str | Mapping[str, str] | Boundary
               = chatml_boundary) -> dict:
    """`messages` as one message of the first one's role (see the module docstring)."""
    if not messages:
        raise ValueError("join_turns needs at least one message")
    boundary = _boundary_of(separator)
    first = messages[0]
    parts = _content(first)
    for previous, message in zip(messages, messages[1:]):
        parts.append({"type": "text", "text": boundary(previous["role"], message["role"])})
        parts.extend(_content(message))
    return {"role": first["role"], "content": parts, **_extras(first)}


def merge_same_role_turns(
    messages: list[dict], separator: str | Mapping[str, str] | Boundary = chatml_boundary
) -> list[dict]:
    """Consecutive messages of one role joined by `separator` (see the module docstring)."""
    out: list[dict] = []
    run: list[dict] = []
    for message in [*messages, None]:
        if run and (message is None or message["role"] != run[0]["role"]):
            extras = [_extras(m) for m in run]
            if any(e != extras[0] for e in extras[1:]):
                raise ValueError(
                    f"cannot merge consecutive {run[0]['role']} turns that differ in "
                    f"{sorted({k for e in extras for k in e})}: {extras}"
                )
            out.append(join_turns(run, separator))
            run = []
        if message is not None:
            run.append(message)
    return out
