"""Generation as plain functions: prefill, one decode step, sampling, streaming, the loop.

The decode step (`decode_step`) is one sequence's token at a device slot: its inputs
are (1,) long tensors on the model's device, its shapes are fixed by the cache capacity,
and it reads nothing back to the host, so it runs eagerly, under
`torch.compile(fullgraph=True)`, or replayed from a CUDA graph (`Decoder`). The loop
(`generate`) keeps the token, slot and position on the device, samples on the device and
reads the generated ids back every `sync_every` tokens (1 on the CPU, where there is no
queue to keep full; 8 on CUDA), which is where end tokens and stop strings are checked.
A `cancel` hook is checked before every step.

Positions are 3D (MRoPE): during decode every axis is `cache slot + delta` (model.rope_index).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

import torch

from vlm.cache import KVCache
from vlm.hybrid_cache import HybridCache

log = logging.getLogger(__name__)

DECODE_MODES = ("eager", "compile", "cuda_graph")
CUDA_SYNC_EVERY = 8  # tokens between reads of generated ids on CUDA (the GPU runs ahead)

CancelHook = threading.Event | Callable[[], bool]


def cancel_check(cancel: CancelHook | None) -> Callable[[], bool]:
    """A zero-argument test for a cancel hook: a threading.Event or a callable."""
    if cancel is None:
        return lambda: False
    if isinstance(cancel, threading.Event):
        return cancel.is_set
    if callable(cancel):
        return lambda: bool(cancel())
    raise TypeError(f"cancel must be a threading.Event or a zero-argument callable, "
                    f"got {type(cancel).__name__}")


@torch.inference_mode()
def prefill(model, cache: KVCache, input_ids: torch.Tensor, positions: torch.Tensor, start: int,
            image_embeds=None, deepstack=None, all_logits: bool = False) -> torch.Tensor:
    """Run prompt tokens (T,) into the cache at slots start..start+T -> last logits (V,)."""
    cache.reserve(start + input_ids.shape[0])
    return model(input_ids, positions, cache, start, image_embeds, deepstack, all_logits)


def decode_step(model, cache: KVCache, token: torch.Tensor, slot: torch.Tensor,
                rope_position: torch.Tensor) -> torch.Tensor:
    """token (1,) at cache row `slot` (1,), MRoPE position `rope_position` (1,), all long
    tensors on the model's device -> logits (V,). The step that is compiled and captured."""
    return model.decode(token, slot, rope_position, cache)


def greedy_step(model, cache: KVCache, token: torch.Tensor, slot: torch.Tensor,
                rope_position: torch.Tensor) -> torch.Tensor:
    """The decode step with its argmax: -> the next token (1,) long, still on the device."""
    logits = decode_step(model, cache, token, slot, rope_position)
    return torch.argmax(logits, dim=-1, keepdim=True)


@torch.inference_mode()
def decode_one_token(model, cache: KVCache, token: torch.Tensor, slot: int,
                     delta: int) -> torch.Tensor:
    """token (1,) at cache slot `slot` (host ints, for tests and one-off calls) -> logits (V,)."""
    pos = torch.tensor([slot, slot + delta], dtype=torch.long, device=token.device)
    if not isinstance(cache, HybridCache):
        return decode_step(model, cache, token, pos[0:1], pos[1:2])
    cache.begin(slot)  # the step moves the DeltaNet states on: say where they end up
    logits = decode_step(model, cache, token, pos[0:1], pos[1:2])
    cache.end(slot + 1, snapshot=False)
    return logits


def sample_token(logits: torch.Tensor, temperature: float = 0.0, top_p: float = 1.0,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """logits (V,) -> (1,) long on their device. Greedy when temperature == 0, else
    softmax(logits / T) restricted to the top-p nucleus. Never reads back to the host."""
    if temperature <= 0:
        return torch.argmax(logits, dim=-1, keepdim=True)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_p, order = torch.sort(probs, descending=True)
        keep = sorted_p.cumsum(-1) - sorted_p < top_p  # always keeps the most likely token
        sorted_p = sorted_p * keep
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
    return torch.multinomial(probs, 1, generator=generator)


def sample(logits: torch.Tensor, temperature: float = 0.0, top_p: float = 1.0,
           generator: torch.Generator | None = None) -> int:
    """`sample_token` read back as an int (for callers outside the decode loop)."""
    return int(sample_token(logits, temperature, top_p, generator))


class TextStream:
    """Incremental detokenisation: hands `on_text` only text that is final.

    Text ending in U+FFFD (a multi-byte character split across tokens) is held back until
    the next token completes it, and so is a tail that could still become a stop string.
    """

    def __init__(self, decode: Callable[[list[int]], str], stop: list[str],
                 on_text: Callable[[str], None] | None):
        self.decode, self.stop, self.on_text = decode, [s for s in stop if s], on_text
        self.ids: list[int] = []
        self.text = ""
        self.sent = 0
        self.stopped = False

    def add(self, token: int) -> None:
        self.ids.append(token)
        text = self.decode(self.ids)
        for s in self.stop:
            i = text.find(s)
            if i >= 0:
                self.text, self.stopped = text[:i], True
                self._emit(len(self.text))
                return
        self.text = text
        if text.endswith("\ufffd"):
            return
        self._emit(len(text) - self._partial_stop(text))

    def finish(self) -> str:
        self._emit(len(self.text))
        return self.text

    def _partial_stop(self, text: str) -> int:
        hold = 0
        for s in self.stop:
            for n in range(min(len(s) - 1, len(text)), 0, -1):
                if text.endswith(s[:n]):
                    hold = max(hold, n)
                    break
        return hold

    def _emit(self, upto: int) -> None:
        if upto > self.sent:
            new = self.text[self.sent:upto]
            self.sent = upto
            if self.on_text is not None:
                self.on_text(new)


# -- running the decode step: eager, compiled, captured ------------------------------------


def _scalar_capture():
    """Dynamo setting for tracing the decode step: a host read inside a kernel reference
    (e.g. the MoE reference's expert ids) becomes a traced value instead of a graph break;
    on the CPU that read costs nothing."""
    return torch._dynamo.config.patch(capture_scalar_outputs=True)


def decode_graph_breaks(model, cache: KVCache, token: torch.Tensor, slot: torch.Tensor,
                        rope_position: torch.Tensor):
    """torch._dynamo.explain of the greedy decode step, traced as `Decoder` compiles it."""
    with _scalar_capture(), torch.inference_mode():
        return torch._dynamo.explain(greedy_step)(model, cache, token, slot,
                                                      rope_position)


def _recurrent_states(cache: KVCache) -> tuple[torch.Tensor, ...]:
    """What a decode step advances in place besides its own K/V row: the DeltaNet states."""
    return (cache.recurrent, cache.conv) if isinstance(cache, HybridCache) else ()


def _bound_buffers(cache: KVCache) -> tuple[int, ...]:
    """The addresses a captured step reads and writes: a graph replays only on these."""
    return tuple(t.data_ptr() for t in (cache.k, cache.v, *_recurrent_states(cache)))


class _CapturedStep:
    """One CUDA graph of the greedy decode step for one cache buffer (capacity bucket)."""

    def __init__(self, model, cache: KVCache, token, slot, rope_position, pool):
        self.buffer = _bound_buffers(cache)
        self.token, self.slot, self.rope = token.clone(), slot.clone(), rope_position.clone()
        side = torch.cuda.Stream(cache.device)
        side.wait_stream(torch.cuda.current_stream(cache.device))
        # warm-up runs (lazy init, kernel autotuning) rewrite the current row with the same
        # token's K/V, harmless; but they also advance recurrent states, put back after them
        states = [t.clone() for t in _recurrent_states(cache)]
        with torch.cuda.stream(side):
            for _ in range(2):
                greedy_step(model, cache, self.token, self.slot, self.rope)
            for t, saved in zip(_recurrent_states(cache), states):
                t.copy_(saved)
        torch.cuda.current_stream(cache.device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph, pool=pool):
            self.out = greedy_step(model, cache, self.token, self.slot, self.rope)

    def __call__(self, token, slot, rope_position) -> torch.Tensor:
        self.token.copy_(token)
        self.slot.copy_(slot)
        self.rope.copy_(rope_position)
        self.graph.replay()
        return self.out


class Decoder:
    """Runs a model's decode step in one of DECODE_MODES.

    "compile": `torch.compile(fullgraph=True)` of the greedy step and of the logits step
    (for sampling), traced on first use (the cache's capacity dim is marked dynamic, so
    a conversation that grows does not recompile). "cuda_graph": the greedy step captured
    once per cache buffer, i.e. per capacity bucket, and replayed; sampling runs eagerly.
    """

    def __init__(self, model, mode: str = "eager"):
        if mode not in DECODE_MODES:
            raise ValueError(f"unknown decode mode {mode!r}; use one of {DECODE_MODES}")
        self.model, self.mode = model, mode
        self._compiled: dict[str, Callable] = {}
        self._graphs: dict[int, _CapturedStep] = {}
        self._pool = None
        self._traced = False  # a compiled step has run once: later errors are real ones

    def _step(self, kind: str) -> Callable:
        fn = greedy_step if kind == "greedy" else decode_step
        if self.mode != "compile":
            return fn
        if kind not in self._compiled:
            self._compiled[kind] = torch.compile(fn, fullgraph=True)
        return self._compiled[kind]

    @contextlib.contextmanager
    def _tracing(self, cache: KVCache):
        if self.mode != "compile":
            yield
            return
        for buf in (cache.k, cache.v):
            torch._dynamo.maybe_mark_dynamic(buf, 2)
        with _scalar_capture():
            yield

    def logits(self, cache: KVCache, token, slot, rope_position) -> torch.Tensor:
        return self._run("logits", cache, token, slot, rope_position)

    def greedy(self, cache: KVCache, token, slot, rope_position) -> torch.Tensor:
        if self.mode == "cuda_graph":
            return self._captured(cache, token, slot, rope_position)(token, slot, rope_position)
        return self._run("greedy", cache, token, slot, rope_position)

    def _run(self, kind: str, cache: KVCache, token, slot, rope_position) -> torch.Tensor:
        try:
            with self._tracing(cache):
                return self._step(kind)(self.model, cache, token, slot, rope_position)
        except Exception as exc:
            if self.mode != "compile" or self._traced:
                raise
            # tracing fails before the step runs (no cache row written): e.g. no C++
            # compiler for inductor on this machine. The eager step gives the same tokens.
            log.warning("torch.compile of the decode step failed (%s: %s); decoding eagerly",
                        type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
            self.mode = "eager"
            return self._step(kind)(self.model, cache, token, slot, rope_position)
        finally:
            self._traced = self._traced or self.mode == "compile"

    def _captured(self, cache: KVCache, token, slot, rope_position) -> _CapturedStep:
        step = self._graphs.get(cache.capacity)
        bound = _bound_buffers(cache)
        if step is None or step.buffer != bound:
            if self._pool is None:
                self._pool = torch.cuda.graph_pool_handle()
            # a grown cache frees the old buffers: graphs for them can never run again
            self._graphs = {c: g for c, g in self._graphs.items() if g.buffer == bound}
            step = _CapturedStep(self.model, cache, token, slot, rope_position, self._pool)
            self._graphs[cache.capacity] = step
            log.info("captured the decode step for cache capacity %d", cache.capacity)
        return step


@dataclass
class Generation:
    tokens: list[int]  # generated ids, the end token included when one ended the reply
    fed: int  # how many of them were written into the cache (rows after the prompt)
    # decode steps run: `fed`, plus those that ran ahead of a sync past an end token (their
    # rows are past the reply; a recurrent state has folded them in)
    steps: int
    cancelled: bool = False


@torch.inference_mode()
def generate(decoder: Decoder, cache: KVCache, first_logits: torch.Tensor, slot: int,
             delta: int, *, max_new_tokens: int, stop_ids: list[int], stream: TextStream,
             temperature: float = 0.0, top_p: float = 1.0,
             generator: torch.Generator | None = None, cancel: CancelHook | None = None,
             sync_every: int | None = None) -> Generation:
    """Sample from `first_logits`, then decode until an end token, a stop string, the budget
    or `cancel`; the prompt ends at cache row `slot`.

    The cache must already hold slot + max_new_tokens rows (reserved before the prefill).
    An end token is in `tokens` but its text is not streamed. When `cancel` fires the loop
    stops before the next step and returns what was generated so far (all of it streamed).
    """
    if cache.capacity < slot + max_new_tokens - 1:
        raise ValueError(f"cache capacity {cache.capacity} < {slot + max_new_tokens - 1} "
                         "rows needed; reserve before the prefill")
    cancelled = cancel_check(cancel)
    device = first_logits.device
    if sync_every is None:
        sync_every = CUDA_SYNC_EVERY if device.type == "cuda" else 1
    ids = torch.empty(max_new_tokens, dtype=torch.long, device=device)  # generated, on device
    ids[0:1] = sample_token(first_logits, temperature, top_p, generator)
    pos = torch.tensor([slot, slot + delta], dtype=torch.long, device=device)  # one copy
    row, rope = pos[0:1].clone(), pos[1:2].clone()
    stop = set(stop_ids)
    tokens: list[int] = []
    made, steps = 1, 0  # ids written into `ids`; decode steps run (= tokens fed)
    ended = was_cancelled = False
    while True:
        if made - len(tokens) >= sync_every or made == max_new_tokens or cancelled():
            for tok in ids[len(tokens):made].tolist():  # the loop's only host reads
                tokens.append(tok)
                if tok in stop:
                    ended = True
                    break
                stream.add(tok)
                if stream.stopped:
                    ended = True
                    break
            if ended or made == max_new_tokens:
                break
            if cancelled():
                was_cancelled = True
                break
        token = ids[made - 1: made]
        if temperature <= 0:
            ids[made: made + 1] = decoder.greedy(cache, token, row, rope)
        else:
            logits = decoder.logits(cache, token, row, rope)
            ids[made: made + 1] = sample_token(logits, temperature, top_p, generator)
        row += 1
        rope += 1
        made += 1
        steps += 1
    return Generation(tokens, min(steps, len(tokens)), steps, was_cancelled)
