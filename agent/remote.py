"""A policy that asks an OpenAI-compatible server (vLLM, SGLang, `deskpilot serve`).

This is the path for models larger than one machine: vLLM or SGLang shard them over many
GPUs, and the agent only needs HTTP. The dialect has already resized every screenshot to
the model size, so images are sent losslessly (PNG data URLs) at exactly that size and the
model's coordinates mean the same thing as with the local engine — provided the server's
own processor does not shrink them again (its max_pixels must be at least the dialect's).

The API key comes from the environment (or the caller) and is only ever put in the
Authorization header: it is not logged, not in `repr`, and scrubbed from error messages.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from agent.policies import cancel_check
from agent.protocols import TextCallback

log = logging.getLogger(__name__)

DEFAULT_API_KEY_ENV = "DESKPILOT_API_KEY"
_MAX_BACKOFF_S = 30.0

# vLLM: "At most 5 image(s) may be provided in one request." (older: "... one prompt.")
# and "You set image=2 (or defaulted to 1) in `--limit-mm-per-prompt`, but passed 3 ..."
_IMAGE_LIMIT = re.compile(
    r"at most (\d+) image|image=(\d+)\D.*limit-mm-per-prompt|limit_mm_per_prompt", re.I | re.S
)
# vLLM: "This model's maximum context length is 4096 tokens. ..." / "... longer than the
# maximum model length of 4096"; SGLang: "... longer than the model's context length ...".
_CONTEXT_LENGTH = re.compile(
    r"maximum context length|maximum model length|model's context length|max_model_len"
    r"|context_length_exceeded",
    re.I,
)


class RemoteError(RuntimeError):
    """The server could not be reached or refused the request; the message says what to do."""


@dataclass
class RemoteReply:
    """The reply text, timings in seconds, and what the server said about it."""

    text: str
    timings: dict[str, float] = field(default_factory=dict)
    finish_reason: str | None = None
    usage: dict[str, int] | None = None
    cancelled: bool = False  # the caller's cancel hook fired: `text` is the reply so far


class _Retryable(Exception):
    """A failure worth another attempt (connection trouble, 5xx, 429)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def chat_completions_url(url: str) -> str:
    """The /chat/completions endpoint for a server address given in any usual form.

    Accepts "http://host:8000", "http://host:8000/v1" and the full endpoint."""
    url = url.strip().rstrip("/")
    parsed = httpx.URL(url) if url else None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"remote URL must look like http://host:port/v1, got {url!r}")
    if parsed.userinfo:
        # A URL ends up in logs and run records; a key inside it would leak there.
        raise ValueError(
            "remote URL must not contain a user name or password; put the API key in the "
            f"environment variable named by remote_api_key_env (default {DEFAULT_API_KEY_ENV})"
        )
    if url.endswith("/chat/completions"):
        return url
    if url.endswith("/v1"):
        return url + "/chat/completions"
    return url + "/v1/chat/completions"


def image_to_data_url(image: Any) -> str:
    """A PIL image (or a local image path) as a lossless base64 PNG data URL."""
    from PIL import Image

    if isinstance(image, str | Path):
        text = str(image)
        if text.startswith(("data:", "http://", "https://")):
            return text
        path = Path(text.removeprefix("file://"))
        with Image.open(path) as opened:
            image = opened.convert("RGB")
    if not isinstance(image, Image.Image):
        raise TypeError(f"image part must hold a PIL image or a path, got {type(image).__name__}")
    if image.mode not in ("RGB", "RGBA", "L"):
        # RGBA stays RGBA: the server flattens alpha the way the local engine does.
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    buffer = io.BytesIO()
    # Level 1: screenshots compress well anyway, and encoding time is on every step.
    image.save(buffer, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _convert_part(part: Any) -> dict:
    """One Qwen-format content part as an OpenAI content part."""
    if isinstance(part, str):
        return {"type": "text", "text": part}
    if not isinstance(part, dict):
        raise TypeError(f"message content part must be a dict, got {type(part).__name__}")
    kind = part.get("type")
    if kind == "text":
        return {"type": "text", "text": str(part.get("text", ""))}
    if kind == "image_url":
        return part
    if kind == "image" or (kind is None and "image" in part):
        image = part["image"]
        size = (part.get("resized_width"), part.get("resized_height"))
        if all(isinstance(s, int) for s in size) and getattr(image, "size", size) != size:
            # The local engine would resize to exactly this size; do it here so the
            # server sees the same pixels (and the same coordinate space).
            image = image.resize(size)
        return {"type": "image_url", "image_url": {"url": image_to_data_url(image)}}
    raise ValueError(f"unsupported message content part type {kind!r} for a remote model")


def to_openai_messages(messages: list[dict]) -> tuple[list[dict], int]:
    """Qwen chat messages (PIL images inline) -> OpenAI messages, and the image count.

    Text-only content lists are joined into a plain string: every OpenAI-compatible
    server accepts that for system and assistant turns, not all accept lists there."""
    out: list[dict] = []
    images = 0
    for message in messages:
        content = message.get("content", "")
        if isinstance(content, list):
            parts = [_convert_part(part) for part in content]
            images += sum(part["type"] == "image_url" for part in parts)
            if all(part["type"] == "text" for part in parts):
                content = "".join(part["text"] for part in parts)
            else:
                content = parts
        out.append({"role": message["role"], "content": content})
    return out, images


def _error_message(response: httpx.Response) -> str:
    """The human-readable message of an error response (OpenAI's, vLLM's or plain text)."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:500] or response.reason_phrase
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            return str(error.get("message") or error.get("detail") or body)
        if isinstance(error, str):
            return error
        if "detail" in body:
            return str(body["detail"])
    return str(body)[:500]


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return min(float(value), _MAX_BACKOFF_S) if value is not None else None
    except ValueError:
        return None


class RemotePolicy:
    """`Policy` over HTTP: POST /v1/chat/completions on an OpenAI-compatible server.

    `model=""` asks the server (GET /v1/models) and uses its only model. `api_key=None`
    reads the environment variable `api_key_env`; `api_key=""` sends no key. Connection
    errors, 5xx and 429 are retried `retries` times with exponential backoff starting at
    `backoff` seconds. `on_text` given (or `stream=True`) streams the reply over SSE.
    """

    def __init__(
        self,
        url: str,
        model: str = "",
        api_key: str | None = None,
        timeout: float = 120.0,
        retries: int = 3,
        max_tokens: int = 512,
        temperature: float = 0.0,
        *,
        api_key_env: str = DEFAULT_API_KEY_ENV,
        backoff: float = 1.0,
        stream: bool | None = None,
        top_p: float | None = None,
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        self.endpoint = chat_completions_url(url)
        self.base_url = self.endpoint.removesuffix("/chat/completions")
        self.model = model
        self.timeout = timeout
        self.retries = retries
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.backoff = backoff
        self.stream = stream
        self.api_key_env = api_key_env
        self._api_key = os.environ.get(api_key_env, "") if api_key is None else api_key
        self._client: httpx.Client | None = None

    def __repr__(self) -> str:
        key = "set" if self._api_key else "none"
        return f"RemotePolicy(url={self.base_url!r}, model={self.model!r}, api_key={key})"

    # -- the Policy protocol ------------------------------------------------------------

    def chat(
        self,
        messages: list[dict],
        *,
        on_text: TextCallback | None = None,
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        stop: str | list[str] | None = None,
        seed: int | None = None,
        cancel: Any = None,
        **options: Any,
    ) -> RemoteReply:
        """Send the messages and return the reply; `on_text` gets each new piece of text.

        `cancel` (a threading.Event or a zero-argument callable) is checked at every chunk
        of a streamed reply, and watched while waiting for one: when it fires the connection
        is closed (the server stops generating) and the reply so far comes back with
        `cancelled=True`. A cancel hook turns streaming on unless `stream=False` was set.
        Options other policies take but a server cannot use are ignored (like Engine.chat).
        """
        if options:
            log.debug("RemotePolicy.chat ignores options %s", sorted(options))
        openai_messages, n_images = to_openai_messages(messages)
        payload: dict[str, Any] = {
            "model": self.model or self._served_model(),
            "messages": openai_messages,
            "max_tokens": max_new_tokens or self.max_tokens,
            "temperature": self.temperature if temperature is None else temperature,
        }
        top_p = self.top_p if top_p is None else top_p
        if top_p is not None:
            payload["top_p"] = top_p
        if stop:
            payload["stop"] = [stop] if isinstance(stop, str) else list(stop)
        if seed is not None:
            payload["seed"] = seed
        cancelled = cancel_check(cancel)
        if cancelled():
            return RemoteReply("", cancelled=True)
        stream = self.stream if self.stream is not None else (
            on_text is not None or cancel is not None)
        if stream:
            payload["stream"] = True
            payload["stream_options"] = {"include_usage": True}
        body = json.dumps(payload).encode()
        log.info(
            "remote request to %s: model %s, %d messages, %d images, %d bytes",
            self.endpoint, payload["model"], len(openai_messages), n_images, len(body),
        )
        return self._with_retries(
            lambda: self._post(body, stream, on_text, n_images, cancelled), cancelled)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- HTTP -----------------------------------------------------------------------------

    def _http(self) -> httpx.Client:
        if self._client is None:
            headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
            timeout = httpx.Timeout(self.timeout, connect=min(10.0, self.timeout))
            self._client = httpx.Client(headers=headers, timeout=timeout)
        return self._client

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text

    def _with_retries(self, attempt_once, cancelled: Callable[[], bool] = lambda: False):
        delay = self.backoff
        for attempt in range(self.retries + 1):
            try:
                return attempt_once()
            except _Retryable as exc:
                if cancelled():
                    return RemoteReply("", cancelled=True)
                if attempt == self.retries:
                    tries = f"{self.retries + 1} attempt{'s' if self.retries else ''}"
                    raise RemoteError(f"{self._redact(str(exc))} (gave up after {tries})") from None
                wait = exc.retry_after if exc.retry_after is not None else delay
                log.warning("remote: %s; retrying in %.1f s", self._redact(str(exc)), wait)
                time.sleep(wait)
                delay = min(delay * 2, _MAX_BACKOFF_S)
        raise AssertionError("unreachable")

    def served_model_id(self) -> str:
        """The id of the model the requests go to: the one named, else the server's own
        (GET /v1/models, once). Raises RemoteError when the server cannot say."""
        return self.model or self._served_model()

    def _served_model(self) -> str:
        """The model id from GET /v1/models, when the caller did not name one."""

        def fetch() -> list[str]:
            with self._request("GET", self.base_url + "/models") as response:
                response.read()
                self._raise_for_status(response, 0)
                data = response.json().get("data", [])
            return [str(entry.get("id")) for entry in data if isinstance(entry, dict)]

        ids = self._with_retries(fetch)
        if len(ids) != 1:
            listed = ", ".join(ids) or "none"
            raise RemoteError(
                f"the server at {self.base_url} serves {len(ids)} models ({listed}): "
                "name one with the remote_model setting"
            )
        self.model = ids[0]
        log.info("remote: using the server's model %s", self.model)
        return self.model

    def _request(self, method: str, url: str, body: bytes | None = None):
        """A streamed request with transport failures mapped to retry / RemoteError."""
        headers = {"Content-Type": "application/json"} if body is not None else {}
        request = self._http().build_request(method, url, content=body, headers=headers)
        return _ResponseContext(self, request)

    def _post(
        self, body: bytes, stream: bool, on_text: TextCallback | None, n_images: int,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> RemoteReply:
        started = time.perf_counter()
        with self._request("POST", self.endpoint, body) as response, \
                _close_on_cancel(response, cancelled):
            if response.status_code != 200:
                response.read()
                self._raise_for_status(response, n_images)
            # Some servers and proxies answer a stream request with one JSON body.
            is_json = response.headers.get("content-type", "").startswith("application/json")
            if stream and not is_json:
                reply = self._read_stream(response, on_text, started, n_images, cancelled)
            else:
                response.read()
                reply = self._read_json(response)
                if stream and on_text is not None and reply.text:
                    on_text(reply.text)
        reply.timings["request"] = time.perf_counter() - started
        if reply.finish_reason == "length":
            log.warning("remote: the reply was cut at max_tokens; raise max_tokens if needed")
        return reply

    def _raise_for_status(self, response: httpx.Response, n_images: int) -> None:
        if response.status_code >= 400:
            message = _error_message(response)
            raise self._explain(response.status_code, message, n_images, _retry_after(response))

    def _explain(
        self, status: int, message: str, n_images: int, retry_after: float | None = None
    ) -> Exception:
        """The error to raise for a refusal: retryable, or a RemoteError saying what to do."""
        message = self._redact(message)
        where = f"the model server at {self.base_url}"
        if status == 429 or status >= 500:
            return _Retryable(f"{where} answered {status}: {message}", retry_after)
        if status in (401, 403):
            return RemoteError(
                f"{where} rejected the API key ({status}: {message}); set the environment "
                f"variable {self.api_key_env} (settings remote_api_key_env) to the server's key"
            )
        found = _IMAGE_LIMIT.search(message)
        if found:
            limit = next((g for g in found.groups() if g), None)
            wanted = max(n_images, 5)
            return RemoteError(
                f"{where} accepts {'at most ' + limit if limit else 'fewer'} images per "
                f"request but the agent sent {n_images} ({message}). Start vLLM with "
                f"`--limit-mm-per-prompt '{{\"image\": {wanted}}}'` (older vLLM: "
                f"image={wanted}), or lower the agent's history_n setting"
                f"{' to ' + limit if limit else ''}."
            )
        if _CONTEXT_LENGTH.search(message):
            return RemoteError(
                f"the request is longer than {where} allows ({message}). Start the server "
                "with a larger --max-model-len, or send fewer image tokens: lower the "
                "agent's max_pixels or history_n setting."
            )
        if status == 404:
            return RemoteError(
                f"{where} answered 404 ({message}): check the remote_url setting (it should "
                f"end in /v1) and the remote_model setting (now {self.model!r})"
            )
        if status == 413:
            return RemoteError(
                f"{where} refused the request as too large ({message}); lower max_pixels or "
                "history_n, or raise the server's body size limit (deskpilot serve --max-body-mb)"
            )
        return RemoteError(f"{where} refused the request ({status}): {message}")

    def _read_json(self, response: httpx.Response) -> RemoteReply:
        try:
            body = response.json()
            choice = body["choices"][0]
            text = choice["message"].get("content") or ""
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise RemoteError(
                f"the model server at {self.base_url} sent a reply that is not an OpenAI "
                f"chat completion: {response.text[:300]!r}"
            ) from None
        usage = body.get("usage") or None
        return RemoteReply(text, _server_timings(body), choice.get("finish_reason"), usage)

    def _read_stream(
        self,
        response: httpx.Response,
        on_text: TextCallback | None,
        started: float,
        n_images: int,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> RemoteReply:
        pieces: list[str] = []
        finish_reason = None
        usage = None
        server_timings: dict[str, float] = {}
        first_at = None
        events = _sse_events(response)
        stopped = False
        while True:
            if cancelled():
                stopped = True
                break
            try:
                event = next(events, None)
            except (httpx.TransportError, httpx.StreamError) as exc:
                if cancelled():  # _close_on_cancel closed the connection under the read
                    stopped = True
                    break
                if isinstance(exc, httpx.StreamError):
                    raise
                if not pieces:
                    raise  # nothing shown yet: the caller may retry the whole request
                # Retrying would stream the start of the reply to on_text a second time.
                raise RemoteError(
                    f"the model server at {self.base_url} dropped the connection mid-reply "
                    f"({type(exc).__name__})"
                ) from None
            if event is None:
                break
            if event.get("error"):
                status, message = _event_error(event)
                if pieces:
                    message = self._redact(message)
                    raise RemoteError(f"the model server failed mid-reply: {message}")
                raise self._explain(status, message, n_images)
            server_timings.update(_server_timings(event))
            usage = event.get("usage") or usage
            for choice in event.get("choices") or []:
                delta = choice.get("delta") or {}
                text = delta.get("content") or ""
                if text:
                    if first_at is None:
                        first_at = time.perf_counter()
                    pieces.append(text)
                    if on_text is not None:
                        on_text(text)
                finish_reason = choice.get("finish_reason") or finish_reason
        ended = time.perf_counter()
        timings = dict(server_timings)
        if first_at is not None:
            timings["first_token"] = first_at - started
            if "decode" not in timings:
                timings["decode"] = ended - first_at
        if usage and "tokens_per_s" not in timings and timings.get("decode"):
            tokens = usage.get("completion_tokens") or 0
            timings["tokens_per_s"] = max(tokens - 1, 0) / timings["decode"]
        if stopped:
            log.info("remote: reply cancelled after %d chunks; connection closed", len(pieces))
        return RemoteReply("".join(pieces), timings, finish_reason, usage, cancelled=stopped)


class _ResponseContext:
    """`with` wrapper around a streamed httpx request that maps transport failures.

    Connection refused/reset and protocol errors become `_Retryable`; a timeout becomes a
    RemoteError straight away (retrying a slow generation would only double the wait)."""

    def __init__(self, policy: RemotePolicy, request: httpx.Request) -> None:
        self.policy = policy
        self.request = request
        self.response: httpx.Response | None = None

    def __enter__(self) -> httpx.Response:
        try:
            self.response = self.policy._http().send(self.request, stream=True)
        except BaseException as exc:
            _map_transport_error(self.policy, exc)
            raise
        return self.response

    def __exit__(self, exc_type, exc, tb) -> bool:
        if self.response is not None:
            self.response.close()
        if exc is not None:
            _map_transport_error(self.policy, exc)
        return False


class _close_on_cancel:
    """While a response is open, a watcher thread closes it once `cancelled()` is true, so a
    read blocked on a slow server (a long prefill) ends too, not only the next chunk."""

    POLL_S = 0.05

    def __init__(self, response: httpx.Response, cancelled: Callable[[], bool]) -> None:
        self.response, self.cancelled = response, cancelled
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def _watch(self) -> None:
        while not self._done.wait(self.POLL_S):
            if self.cancelled():
                self.response.close()
                return

    def __enter__(self) -> _close_on_cancel:
        self._thread = threading.Thread(target=self._watch, name="remote-cancel", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> bool:
        self._done.set()
        if self._thread is not None:
            self._thread.join()
        return False


def _map_transport_error(policy: RemotePolicy, exc: BaseException) -> None:
    where = f"the model server at {policy.base_url}"
    if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout):
        raise RemoteError(
            f"{where} did not answer within {policy.timeout:g} s; raise the timeout or check "
            "that the server is not overloaded"
        ) from None
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        raise _Retryable(
            f"cannot reach {where} ({exc or type(exc).__name__}); is it running? Start it "
            "with `deskpilot serve MODEL` or vLLM, or fix the remote_url setting"
        ) from None
    if isinstance(exc, httpx.TransportError):
        raise _Retryable(f"{where} dropped the connection ({type(exc).__name__}: {exc})") from None


def _sse_events(response: httpx.Response) -> Iterator[dict]:
    """The JSON payloads of a server-sent-event stream, until `data: [DONE]`."""
    data_lines: list[str] = []
    for line in response.iter_lines():
        if line.startswith("data:"):
            data_lines.append(line[5:].removeprefix(" "))
            continue
        if line or not data_lines:
            continue  # comments (": ping"), event names, or a blank line between events
        data = "\n".join(data_lines)
        data_lines = []
        if data.strip() == "[DONE]":
            return
        yield _parse_event(data)
    if data_lines and "\n".join(data_lines).strip() != "[DONE]":
        yield _parse_event("\n".join(data_lines))


def _parse_event(data: str) -> dict:
    try:
        event = json.loads(data)
    except ValueError:
        event = None
    if not isinstance(event, dict):
        raise RemoteError(f"the model server sent a malformed stream event: {data[:200]!r}")
    return event


def _event_error(event: dict) -> tuple[int, str]:
    """(HTTP-like status, message) of an error event inside a stream (vLLM sends these)."""
    error = event["error"]
    if not isinstance(error, dict):
        return 500, str(error)
    code = error.get("code")
    status = code if isinstance(code, int) and 400 <= code < 600 else 500
    return status, str(error.get("message", error))


def _server_timings(body: dict) -> dict[str, float]:
    """Phase timings a `deskpilot serve` reply carries (an extension other servers omit)."""
    timings = body.get("timings")
    if not isinstance(timings, dict):
        return {}
    return {
        str(k): float(v)
        for k, v in timings.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }
