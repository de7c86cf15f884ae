"""An OpenAI-compatible HTTP server around `vlm.Engine` (`deskpilot serve`).

Lets the model stay warm in one process while the app restarts, or run on another
machine; the agent's `RemotePolicy` (and any OpenAI client) talks to it like to vLLM.

Endpoints: POST /v1/chat/completions (images as base64 data URLs in `image_url` parts;
`stream: true` as server-sent events ending in `data: [DONE]`), GET /v1/models, GET
/health. One generation runs at a time (the model owns the GPU): requests wait in FIFO
order on an asyncio lock and run on a single worker thread. Every malformed request gets
an OpenAI-style JSON error (`{"error": {"message", "type", "param", "code"}}`) and the
server keeps serving. Remote image URLs are refused: the server never fetches anything.

Differences from OpenAI, on purpose: `temperature` defaults to 0 (greedy, what an agent
wants); replies carry an extra `timings` object (preprocess/vision/prefill/decode seconds
and tokens_per_s) that `RemotePolicy` records.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from app.server_requests import (  # noqa: F401 - re-exported: the server's request API
    MAX_IMAGE_PIXELS,
    MAX_TOKENS_LIMIT,
    ChatRequest,
    RequestError,
    decode_image,
    parse_messages,
    parse_request,
)

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024  # a few full-HD PNG screenshots with headroom
DEFAULT_MAX_TOKENS = 512
_DRAIN_BYTES = 64 * 1024 * 1024  # read (and drop) this much of an oversized body, then 413


_ERROR_TYPES = {401: "authentication_error", 404: "not_found_error", 500: "server_error",
                503: "service_unavailable"}
LOADING_RETRY_AFTER_S = 2


def error_response(error: RequestError) -> JSONResponse:
    kind = _ERROR_TYPES.get(error.status, "invalid_request_error")
    body = {"message": error.message, "type": kind, "param": error.param, "code": error.code}
    # 503 only means "still loading": tell clients (RemotePolicy does) when to come back.
    headers = {"Retry-After": str(LOADING_RETRY_AFTER_S)} if error.status == 503 else None
    return JSONResponse({"error": body}, status_code=error.status, headers=headers)


class ChatServer:
    """The request handlers, the single model worker, and the queue in front of it.

    `engine` is a `vlm.Engine`, or anything with its `chat` signature returning `.text`
    (and ideally `.token_ids` and `.timings`), such as agent.policies.ScriptPolicy.

    `engine=None` with `load_in_background` answers at once while a big checkpoint loads:
    /health says "loading" with the progress, chat requests get 503 and Retry-After.
    """

    def __init__(
        self,
        engine: Any = None,
        *,
        model_name: str | None = None,
        api_key: str | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        default_max_tokens: int = DEFAULT_MAX_TOKENS,
    ) -> None:
        self.engine = engine
        self.model_name = model_name or str(getattr(engine, "name", "") or "deskpilot")
        self._api_key = api_key or None
        self.max_body_bytes = max_body_bytes
        self.default_max_tokens = default_max_tokens
        self.created = int(time.time())
        # One worker thread: the model never runs two generations at once, even if a
        # disconnected stream's generation is still finishing.
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="deskpilot-model")
        self._lock: asyncio.Lock | None = None
        self.served = 0
        self.load_progress = 0.0 if engine is None else 1.0
        self.load_error: str | None = None

    def load_in_background(
        self,
        loader: Callable[[Callable[[int, int], None]], Any],
        on_failure: Callable[[], None] | None = None,
    ) -> threading.Thread:
        """Run `loader(progress)` on a thread; its Engine serves requests once it returns."""

        def progress(done: int, total: int) -> None:
            self.load_progress = done / total if total else 0.0

        def run() -> None:
            try:
                engine = loader(progress)
            except Exception as exc:
                self.load_error = f"{type(exc).__name__}: {exc}"
                log.error("could not load the model: %s", self.load_error)
                if on_failure is not None:
                    on_failure()
                return
            self.engine = engine
            self.load_progress = 1.0
            log.info("model loaded; serving %s", self.model_name)

        thread = threading.Thread(target=run, name="deskpilot-load", daemon=True)
        thread.start()
        return thread

    def _check_ready(self) -> None:
        if self.load_error is not None:
            raise RequestError(500, f"the model failed to load: {self.load_error}")
        if self.engine is None:
            raise RequestError(
                503, f"the model is still loading ({self.load_progress:.0%}); retry shortly",
                code="model_loading",
            )

    def app(self) -> Starlette:
        routes = [
            Route("/v1/chat/completions", self.chat_completions, methods=["POST"]),
            Route("/v1/models", self.models, methods=["GET"]),
            Route("/health", self.health, methods=["GET"]),
        ]
        handlers = {HTTPException: self._http_error, Exception: self._internal_error}
        return Starlette(routes=routes, exception_handlers=handlers)

    # -- handlers ---------------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        """200 once the model can answer; 503 while it loads or after it failed to."""
        if self.load_error is not None:
            body = {"status": "error", "model": self.model_name, "error": self.load_error}
            return JSONResponse(body, status_code=503)
        if self.engine is None:
            body = {"status": "loading", "model": self.model_name,
                    "progress": round(self.load_progress, 3)}
            return JSONResponse(body, status_code=503)
        return JSONResponse({"status": "ok", "model": self.model_name})

    async def models(self, request: Request) -> Response:
        try:
            self._check_key(request)
        except RequestError as error:
            return error_response(error)
        entry = {"id": self.model_name, "object": "model", "created": self.created,
                 "owned_by": "deskpilot"}
        return JSONResponse({"object": "list", "data": [entry]})

    async def chat_completions(self, request: Request) -> Response:
        try:
            self._check_key(request)
            body = await self._read_json(request)  # read first: a reply mid-upload is a reset
            self._check_ready()
            chat = parse_request(body, self.model_name, self.default_max_tokens)
        except RequestError as error:
            log.info("refused a request: %d %s", error.status, error.message)
            return error_response(error)
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        if chat.stream:
            return StreamingResponse(
                self._stream(chat, completion_id),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        try:
            result = await self._generate(chat, on_text=None)
        except RequestError as error:
            return error_response(error)
        body = self._completion_body(chat, completion_id, result)
        return JSONResponse(body)

    # -- request plumbing ---------------------------------------------------------------

    def _check_key(self, request: Request) -> None:
        if self._api_key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), self._api_key.encode()
        ):
            raise RequestError(
                401, "missing or wrong API key (send Authorization: Bearer KEY)",
                code="invalid_api_key",
            )

    async def _read_json(self, request: Request) -> Any:
        limit = self.max_body_bytes
        too_large = RequestError(
            413, f"request body is larger than the server's limit of {limit} bytes "
            "(deskpilot serve --max-body-mb)", code="request_too_large",
        )
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit + _DRAIN_BYTES:
            raise too_large  # not worth draining; the connection is closed after the reply
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size <= limit:
                chunks.append(chunk)
            elif size > limit + _DRAIN_BYTES:
                break
        if size > limit:
            # Reading the rest first lets an ordinary client see the 413 instead of a
            # connection reset in the middle of its upload.
            raise too_large
        try:
            return json.loads(b"".join(chunks))
        except (ValueError, UnicodeDecodeError) as exc:
            raise RequestError(400, f"the request body is not valid JSON: {exc}") from None

    async def _generate(self, chat: ChatRequest, on_text: Callable[[str], None] | None,
                        cancel: threading.Event | None = None):
        """Run one generation on the worker thread, after those queued before it. `cancel`
        (set when the client goes away) is the engine's cancel hook: it stops within a
        token."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        cancel = cancel or threading.Event()
        loop = asyncio.get_running_loop()
        async with self._lock:
            if cancel.is_set():
                raise asyncio.CancelledError
            future = loop.run_in_executor(self._worker, self._run_engine, chat, on_text,
                                          cancel)
            try:
                return await asyncio.shield(future)
            except asyncio.CancelledError:
                cancel.set()  # the request was abandoned: stop generating for it
                # Keep the lock until the model is really free.
                await asyncio.wait([future])
                raise

    def _run_engine(self, chat: ChatRequest, on_text, cancel: threading.Event):
        started = time.perf_counter()
        # seed only matters when sampling; an engine without it still serves greedy requests
        extra = {"seed": chat.seed} if chat.seed is not None and chat.temperature > 0 else {}
        try:
            result = self.engine.chat(
                chat.messages,
                max_new_tokens=chat.max_tokens,
                temperature=chat.temperature,
                top_p=chat.top_p,
                on_text=on_text,
                stop=chat.stop,
                cancel=cancel,
                **extra,
            )
        except Exception as exc:
            log.exception("generation failed")
            raise RequestError(500, f"generation failed: {type(exc).__name__}: {exc}") from None
        if getattr(result, "cancelled", False):  # its client left: nobody was served
            log.info("generation cancelled after %d tokens", _n_tokens(result))
            return result
        self.served += 1
        stats = getattr(self.engine, "last_stats", None)
        if isinstance(stats, dict) and "prompt_tokens" in stats:
            result.prompt_tokens = int(stats["prompt_tokens"])
        log.info(
            "generated %d tokens in %.2f s", _n_tokens(result), time.perf_counter() - started
        )
        return result

    def _finish_reason(self, chat: ChatRequest, result: Any) -> str:
        return "length" if _n_tokens(result) >= chat.max_tokens else "stop"

    def _usage(self, result: Any) -> dict:
        completion = _n_tokens(result)
        # vlm.Engine keeps the last generation's counts in last_stats (read under the lock).
        prompt = int(result.prompt_tokens if hasattr(result, "prompt_tokens") else 0)
        return {"prompt_tokens": prompt, "completion_tokens": completion,
                "total_tokens": prompt + completion}

    def _completion_body(self, chat: ChatRequest, completion_id: str, result: Any) -> dict:
        return {
            "id": completion_id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model_name,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": result.text},
                "finish_reason": self._finish_reason(chat, result),
                "logprobs": None,
            }],
            "usage": self._usage(result),
            "timings": _timings(result),
        }

    async def _stream(self, chat: ChatRequest, completion_id: str) -> AsyncIterator[str]:
        """SSE chunks in OpenAI's format: role, content deltas, finish, [usage], [DONE]."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str] = asyncio.Queue()
        gone = threading.Event()

        def on_text(piece: str) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, piece)

        def chunk(delta: dict, finish: str | None = None, **extra: Any) -> str:
            body = {
                "id": completion_id, "object": "chat.completion.chunk",
                "created": int(time.time()), "model": self.model_name,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish,
                             "logprobs": None}],
                **extra,
            }
            return f"data: {json.dumps(body)}\n\n"

        task = asyncio.ensure_future(self._generate(chat, on_text, gone))
        # A disconnected client's generation ends (cancelled) with nobody awaiting it.
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        try:
            yield chunk({"role": "assistant", "content": ""})
            while True:
                getter = asyncio.ensure_future(queue.get())
                await asyncio.wait([getter, task], return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    break
                yield chunk({"content": getter.result()})
            while not queue.empty():  # text queued just before the generation returned
                yield chunk({"content": queue.get_nowait()})
            try:
                result = task.result()
            except RequestError as error:
                payload = {"message": error.message, "type": "server_error", "code": error.status}
                yield f"data: {json.dumps({'error': payload})}\n\n"
            else:
                yield chunk({}, self._finish_reason(chat, result), timings=_timings(result))
                if chat.include_usage:
                    body = {"id": completion_id, "object": "chat.completion.chunk",
                            "created": int(time.time()), "model": self.model_name,
                            "choices": [], "usage": self._usage(result)}
                    yield f"data: {json.dumps(body)}\n\n"
            yield "data: [DONE]\n\n"
        finally:
            if not task.done():
                gone.set()  # the client left: the engine stops before its next token
                log.info("client disconnected; stopping its generation")

    # -- errors -------------------------------------------------------------------------

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return error_response(RequestError(exc.status_code, str(exc.detail)))

    async def _internal_error(self, request: Request, exc: Exception) -> Response:
        log.exception("internal error", exc_info=exc)
        return error_response(RequestError(500, f"internal error: {type(exc).__name__}"))


def _n_tokens(result: Any) -> int:
    """Generated tokens; 0 for a policy that reports none (a scripted one, in tests)."""
    return len(getattr(result, "token_ids", None) or ())


def _timings(result: Any) -> dict[str, float]:
    timings = getattr(result, "timings", None) or {}
    if not isinstance(timings, dict):
        timings = dict(vars(timings))
    return {k: float(v) for k, v in timings.items() if isinstance(v, int | float)}


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening socket; port 0 picks a free one (read it back with getsockname)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def serve(
    server: ChatServer,
    sock: socket.socket,
    *,
    loader: Callable[[Callable[[int, int], None]], Any] | None = None,
    log_level: str = "info",
) -> None:
    """Run the server on an already bound socket until interrupted (Ctrl-C).

    With `loader`, the model loads while the server already answers; if loading fails the
    server stops (and `server.load_error` says why)."""
    import uvicorn

    config = uvicorn.Config(
        server.app(), log_level=log_level, timeout_graceful_shutdown=5, lifespan="off"
    )
    http = uvicorn.Server(config)
    if loader is not None:
        server.load_in_background(loader, on_failure=lambda: setattr(http, "should_exit", True))
    http.run(sockets=[sock])
