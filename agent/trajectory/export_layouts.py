"""One exported sample as a record of each training format (see export.py for the rules).

A sample arrives as chat messages in the agent.trajectory.turns format, image paths
relative to the export folder, every assistant message carrying `loss` (is it a target)
and `failed` (did its reply fail to parse). Each writer keeps the turn structure the model
saw as far as its format allows, and where the format forbids something (two turns of
one role in a row, an assistant turn that is not trained) it joins turns with the exact
text the chat template puts between them (turns.merge_same_role_turns / join_turns), so
the trainer renders the same tokens the model saw.
"""

from __future__ import annotations

from agent.trajectory.turns import chatml_boundary, join_turns, merge_same_role_turns

IMAGE_PLACEHOLDER = "<image>"
UITARS_IMAGE = "<|vision_start|><|image_pad|><|vision_end|>"


def _text(message: dict, image_token: str) -> str:
    return "".join(
        image_token if part["type"] == "image" else part["text"] for part in message["content"]
    )


def _plain(message: dict) -> dict:
    return {"role": message["role"], "content": message["content"]}


def _is_target(message: dict) -> bool:
    return message["role"] == "assistant" and bool(message.get("loss"))


def _fold_context(messages: list[dict]) -> list[dict]:
    """Everything between the system prompt and the first target as one user turn.

    For per-run samples in formats that train every assistant turn (LLaMA-Factory without
    mask_history): the replies before the sample's own (earlier stretches of the run, a
    failed reply and its feedback) are context the model saw, not targets."""
    first = next(i for i, m in enumerate(messages) if _is_target(m))
    start = 1 if messages[0]["role"] == "system" else 0
    context = [_plain(m) for m in messages[start:first]]
    if not context:
        return messages
    if context[0]["role"] != "user":
        raise ValueError("the context before the first target does not start with a user turn")
    return messages[:start] + [join_turns(context, chatml_boundary)] + messages[first:]


def llamafactory_record(sample) -> dict:
    """ShareGPT messages + images. Per-step samples keep earlier replies as assistant turns
    (trained with `mask_history: true`, so only the last reply is a target); per-run
    samples fold the context into the first user turn (trained with mask_history false)."""
    messages = sample.messages
    if sample.per_run:
        messages = _fold_context(messages)
    merged = merge_same_role_turns([_plain(m) for m in messages], chatml_boundary)
    return {
        "messages": [
            {"role": m["role"], "content": _text(m, IMAGE_PLACEHOLDER)} for m in merged
        ],
        "images": sample.images,
    }


def swift_record(sample) -> dict:
    """ms-swift messages + images, per-message `loss` on assistant turns."""
    messages = [
        {**_plain(m), "loss": bool(m.get("loss"))} if m["role"] == "assistant" else _plain(m)
        for m in sample.messages
    ]
    out = []
    for m in merge_same_role_turns(messages, chatml_boundary):
        record = {"role": m["role"], "content": _text(m, IMAGE_PLACEHOLDER)}
        if m["role"] == "assistant":
            record["loss"] = m["loss"]
        out.append(record)
    return {"messages": out, "images": sample.images}


def qwenvl_record(sample) -> dict:
    """Qwen-VL finetune: "image" + "conversations" (human/gpt).

    Its data processor labels every assistant turn and has no system role (a system turn
    would be read as a gpt turn), so the system prompt opens the first human turn, and a
    sample whose conversation holds a failed reply is refused (it would be trained)."""
    failed = [m for m in sample.messages if m["role"] == "assistant" and m.get("failed")]
    if failed:
        raise ValueError(
            "Qwen-VL finetune trains every gpt turn, and this sample's conversation holds a "
            "reply that failed to parse"
        )
    messages = [_plain(m) for m in sample.messages]
    system = [m for m in messages if m["role"] == "system"]
    rest = [m for m in messages if m["role"] != "system"]
    if system and rest and rest[0]["role"] == "user":
        folded = [p for m in system for p in m["content"]]
        rest[0] = {"role": "user", "content": [*folded, {"type": "text", "text": "\n"},
                                               *rest[0]["content"]]}
    names = {"user": "human", "assistant": "gpt"}
    conversations = [
        {"from": names[m["role"]], "value": _text(m, IMAGE_PLACEHOLDER)}
        for m in merge_same_role_turns(rest, chatml_boundary)
    ]
    record: dict = {}
    images = sample.images
    if images:
        record["image"] = images[0] if len(images) == 1 else images
    record["conversations"] = conversations
    return record


def uitars_record(sample) -> dict:
    """UI-TARS training example: every turn as the model saw it, with its loss_mask."""
    messages = [
        {"role": m["role"], "content": _text(m, UITARS_IMAGE), "loss_mask": int(_is_target(m))}
        for m in sample.messages
    ]
    return {"messages": messages, "images": sample.images}


LAYOUTS = {
    "llamafactory": (llamafactory_record, ".json"),
    "swift": (swift_record, ".jsonl"),
    "qwenvl": (qwenvl_record, ".json"),
    "uitars": (uitars_record, ".jsonl"),
}


def llamafactory_dataset_info(dataset_name: str, file_name: str) -> dict:
    return {
        dataset_name: {
            "file_name": file_name,
            "formatting": "sharegpt",
            "columns": {"messages": "messages", "images": "images"},
            "tags": {
                "role_tag": "role",
                "content_tag": "content",
                "user_tag": "user",
                "assistant_tag": "assistant",
                "system_tag": "system",
            },
        }
    }


def record_images(record: dict) -> list[str]:
    """The image paths of a record of any format."""
    images = record.get("images", record.get("image", []))
    return [images] if isinstance(images, str) else list(images)


def record_placeholders(record: dict, fmt: str) -> int:
    """How many image placeholders a record of `fmt` holds (a trainer wants one per image)."""
    token = UITARS_IMAGE if fmt == "uitars" else IMAGE_PLACEHOLDER
    turns = record.get("messages") or record.get("conversations") or []
    return sum(str(t.get("content", t.get("value", ""))).count(token) for t in turns)
