"""OpenAI chat-completion requests: validation into Qwen-format messages, and the errors.

Pure functions over decoded JSON (no HTTP here): `parse_request(body, model, max_tokens)`
returns a `ChatRequest` or raises `RequestError` carrying the HTTP status and the OpenAI
error fields (`message`, `param`, `code`). Images must be inline base64 data URLs; remote
URLs are refused, so the server never fetches anything. app/server.py turns errors into
responses.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from dataclasses import dataclass
from typing import Any

MAX_TOKENS_LIMIT = 32768
MAX_IMAGE_PIXELS = 50_000_000  # refuse decompression bombs before decoding them
_DATA_URL = re.compile(r"data:image/[\w.+-]+;base64,(.*)", re.S)
_ROLES = ("system", "user", "assistant")
# Request fields that would change the answer and that we cannot honour: refuse them.
_UNSUPPORTED = ("tools", "tool_choice", "functions", "function_call", "response_format")


class RequestError(Exception):
    """A request the server refuses, with its HTTP status and OpenAI error fields."""

    def __init__(
        self, status: int, message: str, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code


@dataclass
class ChatRequest:
    """A validated /v1/chat/completions request; messages already in Qwen format."""

    messages: list[dict]
    max_tokens: int
    temperature: float
    top_p: float
    stop: list[str] | None
    stream: bool
    include_usage: bool
    seed: int | None = None


def decode_image(url: Any, param: str):
    """A base64 data URL -> decoded PIL image; anything else -> RequestError(400)."""
    from PIL import Image

    if not isinstance(url, str):
        raise RequestError(400, f"{param} must be a string data URL", param)
    if url.startswith(("http://", "https://", "file:", "ftp:")):
        raise RequestError(
            400,
            f"{param}: this server does not fetch images from URLs; send the image inline "
            "as a base64 data URL (data:image/png;base64,...)",
            param,
            "image_url_not_supported",
        )
    match = _DATA_URL.fullmatch(url.strip())
    if match is None:
        raise RequestError(
            400, f"{param} must be a data URL like data:image/png;base64,...", param
        )
    try:
        data = base64.b64decode(re.sub(r"\s+", "", match.group(1)), validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(400, f"{param}: the base64 data is broken", param) from None
    try:
        image = Image.open(io.BytesIO(data))
        width, height = image.size
        if width * height > MAX_IMAGE_PIXELS:
            raise RequestError(
                400, f"{param}: image {width}x{height} has more than {MAX_IMAGE_PIXELS} pixels",
                param,
            )
        image.load()
    except RequestError:
        raise
    except Exception as exc:  # PIL raises many types for corrupt data
        raise RequestError(
            400, f"{param}: not a readable image ({type(exc).__name__}: {exc})", param
        ) from None
    # Mode kept as sent (RGBA too): the engine's processor converts it exactly as it would
    # a local image, so served and local replies agree.
    return image


def _content_part(part: Any, param: str) -> dict:
    if not isinstance(part, dict):
        raise RequestError(400, f"{param} must be an object", param)
    kind = part.get("type")
    if kind == "text":
        text = part.get("text")
        if not isinstance(text, str):
            raise RequestError(400, f"{param}.text must be a string", param)
        return {"type": "text", "text": text}
    if kind == "image_url":
        image_url = part.get("image_url")
        url = image_url.get("url") if isinstance(image_url, dict) else image_url
        # The processor applies the checkpoint's own min/max pixels, as vLLM does; an
        # image the dialect already resized is a fixed point of that resize.
        return {"type": "image", "image": decode_image(url, f"{param}.image_url.url")}
    raise RequestError(
        400, f"{param}.type must be 'text' or 'image_url', got {kind!r}", f"{param}.type"
    )


def parse_messages(raw: Any) -> list[dict]:
    """OpenAI chat messages -> Qwen-format messages with PIL images."""
    if not isinstance(raw, list) or not raw:
        raise RequestError(400, "messages must be a non-empty list", "messages")
    messages = []
    for i, message in enumerate(raw):
        param = f"messages[{i}]"
        if not isinstance(message, dict):
            raise RequestError(400, f"{param} must be an object", param)
        role = message.get("role")
        if role not in _ROLES:
            raise RequestError(
                400, f"{param}.role must be one of {', '.join(_ROLES)}, got {role!r}",
                f"{param}.role",
            )
        content = message.get("content")
        if isinstance(content, str):
            messages.append({"role": role, "content": content})
        elif isinstance(content, list) and content:
            parts = [_content_part(p, f"{param}.content[{j}]") for j, p in enumerate(content)]
            messages.append({"role": role, "content": parts})
        else:
            raise RequestError(
                400, f"{param}.content must be a string or a non-empty list of parts",
                f"{param}.content",
            )
    return messages


def _number(body: dict, name: str, default: float, low: float, high: float) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise RequestError(400, f"{name} must be a number in [{low:g}, {high:g}]", name)
    return float(value)


def parse_request(body: Any, model_name: str, default_max_tokens: int) -> ChatRequest:
    """Validate a decoded JSON body; raises RequestError with the offending field."""
    if not isinstance(body, dict):
        raise RequestError(400, "the request body must be a JSON object")
    model = body.get("model")
    if model not in (None, "", model_name):
        raise RequestError(
            404, f"model {model!r} is not served here; this server serves {model_name!r}",
            "model", "model_not_found",
        )
    for name in _UNSUPPORTED:
        if body.get(name) is not None:
            raise RequestError(400, f"{name} is not supported by this server", name)
    if body.get("n") not in (None, 1):
        raise RequestError(400, "only n=1 is supported", "n")
    if body.get("logprobs"):
        raise RequestError(400, "logprobs are not supported", "logprobs")
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is None:
        max_tokens = default_max_tokens
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or not (
        1 <= max_tokens <= MAX_TOKENS_LIMIT
    ):
        raise RequestError(400, f"max_tokens must be an integer in [1, {MAX_TOKENS_LIMIT}]",
                           "max_tokens")
    temperature = _number(body, "temperature", 0.0, 0.0, 2.0)
    top_p = _number(body, "top_p", 1.0, 0.0, 1.0)
    if top_p == 0.0:
        raise RequestError(400, "top_p must be greater than 0", "top_p")
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if stop is not None and (
        not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop)
    ):
        raise RequestError(400, "stop must be a string or a list of non-empty strings", "stop")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise RequestError(400, "stream must be true or false", "stream")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise RequestError(400, "seed must be an integer", "seed")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise RequestError(400, "stream_options must be an object", "stream_options")
    return ChatRequest(
        messages=parse_messages(body.get("messages")),
        max_tokens=max_tokens,
        temperature=temperature,
        top_p=top_p,
        stop=stop or None,
        stream=stream,
        include_usage=bool(options.get("include_usage")),
        seed=seed,
    )
