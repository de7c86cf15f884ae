"""The local model behind the agent: `vlm.load(path) -> Engine`, `Engine.chat(messages)`.

An Engine owns one model, its processor, one KV cache and a small cache of encoded images.
Agent prompts are append-only between steps, so each `chat` reuses the longest prefix of
the previous conversation whose K/V are already cached (same tokens, same images at the
same places) and prefills only the rest; an image whose pixels were encoded recently is
not sent through the vision tower again. `Engine` satisfies `agent.protocols.Policy` by
shape: `chat(messages, on_text=..., cancel=..., **options)` returns an object with
`.text`/`.timings`/`.cancelled`.

Everything an entry point needs is a plain argument: `on_text` streams the reply, `cancel`
(a threading.Event or a zero-argument callable) stops it within one token. How the decode
step runs is `decode=` (see generate.Decoder): "auto" replays CUDA graphs on CUDA and runs
eagerly on the CPU, where tracing with torch.compile costs tens of seconds per model and
pays only over long sessions (`deskpilot bench step` turns it on); DESKPILOT_DECODE
overrides "auto".
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from vlm.cache import bucket
from vlm.config import ModelConfig
from vlm.generate import (
    DECODE_MODES,
    CancelHook,
    Decoder,
    TextStream,
    cancel_check,
    generate,
    prefill,
)
from vlm.hybrid_cache import HybridCache, prefill_split_at_turn
from vlm.model import QwenVL, rope_index
from vlm.processor import ImageInput, ImageSettings, Processor, Prompt
from vlm.weights import ProgressFn, load_weights, read_config, resolve_checkpoint

log = logging.getLogger(__name__)

DECODE_ENV = "DESKPILOT_DECODE"  # eager | compile | cuda_graph | auto
_DTYPES = {"bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float16": torch.float16,
           "fp16": torch.float16, "float32": torch.float32, "fp32": torch.float32}


@dataclass
class ChatResult:
    text: str  # the reply, without the end token
    token_ids: list[int]  # generated ids (the end token included when one ended the reply)
    timings: dict[str, float] = field(default_factory=dict)  # seconds, and tokens_per_s
    cancelled: bool = False  # `cancel` fired: `text` is the reply so far


def pick_device_dtype(device=None, dtype=None) -> tuple[torch.device, torch.dtype]:
    """None/"auto": CUDA when present; bf16 on CUDA, fp32 on CPU."""
    if device in (None, "auto"):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was requested but PyTorch sees no CUDA GPU")
    if dtype in (None, "auto"):
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    elif isinstance(dtype, str):
        if dtype not in _DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; use one of {sorted(_DTYPES)} or 'auto'")
        dtype = _DTYPES[dtype]
    return device, dtype


def resolve_decode_mode(decode: str | None, device: torch.device) -> str:
    """"auto"/None -> DESKPILOT_DECODE when set, else cuda_graph on CUDA, eager on the CPU."""
    if decode in (None, "auto"):
        decode = os.environ.get(DECODE_ENV, "").strip().lower() or "auto"
    if decode == "auto":
        return "cuda_graph" if device.type == "cuda" else "eager"
    if decode not in DECODE_MODES:
        raise ValueError(f"unknown decode mode {decode!r}; use one of {DECODE_MODES} or 'auto'")
    if decode == "cuda_graph" and device.type != "cuda":
        raise ValueError("decode mode 'cuda_graph' needs the model on a CUDA device")
    return decode


def load(path_or_hub_id: str | os.PathLike, device=None, dtype=None,
         progress: ProgressFn | None = None, decode: str | None = None) -> Engine:
    """Load a checkpoint folder (or hub id) into an Engine ready to chat."""
    folder = resolve_checkpoint(path_or_hub_id, progress)
    cfg = read_config(folder)
    device, dtype = pick_device_dtype(device, dtype)
    t0 = time.perf_counter()
    with torch.device("meta"):
        model = QwenVL(cfg)
    load_weights(model, cfg, folder, dtype=dtype, device=device, progress=progress)
    model.eval()
    processor = Processor(folder, cfg.image_token_id, ImageSettings.for_model(cfg))
    log.info("loaded %s on %s (%s) in %.1fs", folder, device, dtype, time.perf_counter() - t0)
    return Engine(model, processor, cfg, name=str(path_or_hub_id), decode=decode)


class Engine:
    def __init__(self, model: QwenVL, processor: Processor, cfg: ModelConfig, *,
                 name: str = "", vision_cache_size: int = 8, decode: str | None = None):
        self.model, self.processor, self.cfg = model, processor, cfg
        self.name = name
        self.device = model.lm_head.weight.device
        self.decoder = Decoder(model, resolve_decode_mode(decode, self.device))
        self.sync_every: int | None = None  # tokens between host reads (None: per device)
        self.vision_cache_size = vision_cache_size
        self._vision: OrderedDict[str, tuple[torch.Tensor, list[torch.Tensor]]] = OrderedDict()
        self._cache = None
        self._cached_ids: list[int] = []  # tokens whose K/V sit in the cache, in order
        self._cached_images: dict[int, tuple[int, str]] = {}  # start -> (end, image key)
        self.last_stats: dict[str, int] = {}
        self.last_logits: torch.Tensor | None = None
        self._encoded_now = 0
        self._lock = threading.Lock()  # one conversation state: calls run one at a time

    @property
    def model_type(self) -> str:
        return self.cfg.model_type

    @property
    def config_dict(self) -> dict:
        return self.cfg.raw

    def reset(self, release_cache: bool = False) -> None:
        """Forget the cached conversation (the next chat prefills everything); with
        `release_cache` also free the cache buffers, so the next chat allocates only the
        capacity it needs (decode attention reads every row of the capacity)."""
        self._cached_ids, self._cached_images = [], {}
        if release_cache:
            self._cache = None
        elif self._cache is not None:
            self._cache.length = 0

    def reserve(self, rows: int) -> None:
        """Size the cache for a conversation of `rows` tokens now, between replies (so a
        benchmark's warm-up traces or captures the decode step at that capacity)."""
        with self._lock:
            if self._cache is None:
                self._cache = self.model.new_cache(bucket(rows))
            self._cache.reserve(rows)

    def chat(self, messages: list[dict], max_new_tokens: int = 256, temperature: float = 0.0,
             top_p: float = 1.0, on_text: Callable[[str], None] | None = None,
             stop: list[str] | None = None, seed: int | None = None, ignore_end: bool = False,
             cancel: CancelHook | None = None, **options) -> ChatResult:
        """Reply to `messages` (Qwen chat format, PIL images inline).

        Greedy when temperature == 0; `seed` makes sampling reproducible; `stop` strings end
        the reply (excluded from it); `ignore_end` keeps decoding past end tokens (for
        benchmarks that need exactly `max_new_tokens`). `on_text` receives new text only.
        `cancel` (threading.Event or zero-argument callable) is checked before every decode
        step: when it fires the reply so far is returned with `cancelled=True`.
        """
        if options:
            log.debug("Engine.chat ignores options %s", sorted(options))
        if not messages:
            raise ValueError("Engine.chat needs at least one message")
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        if temperature < 0 or not 0 < top_p <= 1:
            raise ValueError(f"need temperature >= 0 and 0 < top_p <= 1, got {temperature}, "
                             f"{top_p}")
        cancelled = cancel_check(cancel)  # refuses a bad hook before any work
        with self._lock:
            return self._chat(messages, max_new_tokens, temperature, top_p, on_text, stop, seed,
                              ignore_end, cancelled)

    def _chat(self, messages, max_new_tokens, temperature, top_p, on_text, stop, seed,
              ignore_end, cancelled) -> ChatResult:
        timings: dict[str, float] = {}
        t = self._clock()
        prompt = self.processor(messages)
        timings["preprocess"] = self._clock() - t

        ids = prompt.input_ids
        spans = self._image_spans(prompt)
        start = self._reusable_prefix(ids, spans)
        if isinstance(self._cache, HybridCache):
            # recurrent (DeltaNet) states resume only where one was kept (vlm/hybrid_cache.py)
            start = self._cache.resume(start)
        # from here on cache rows past `start` change: if anything below raises (a stopped
        # run, a failing on_text), the next call must not trust them
        self._cached_ids = ids[:start]
        self._cached_images = {s: (e, img.key) for s, e, img in spans if e <= start}

        t = self._clock()
        new_images = [img for s, _, img in spans if s >= start]
        image_embeds, deepstack = self._encode(new_images)
        timings["vision"] = self._clock() - t

        t = self._clock()
        positions, delta = rope_index(ids, [img.grid for img in prompt.images],
                                      self.cfg.image_token_id, self.cfg.vision.spatial_merge_size)
        # all the rows this reply can need, now: the decode step never reallocates
        needed = len(ids) + max_new_tokens
        if self._cache is None:
            self._cache = self.model.new_cache(bucket(needed))
        self._cache.reserve(needed)
        if isinstance(self._cache, HybridCache):  # keep a resumable state before the reply
            logits = prefill_split_at_turn(self.model, self._cache, ids, positions.to(self.device),
                                           start, image_embeds, deepstack,
                                           self.processor.tokenizer.convert_tokens_to_ids(
                                               "<|im_start|>"))
        else:
            suffix = torch.tensor(ids[start:], device=self.device)
            logits = prefill(self.model, self._cache, suffix,
                             positions[:, start:].to(self.device), start, image_embeds, deepstack)
        timings["prefill"] = self._clock() - t
        self.last_logits = logits  # (V,) of the last prompt token, for inspection
        self._cached_ids = list(ids)
        self._cached_images = {s: (e, img.key) for s, e, img in spans}

        t = self._clock()
        gen = None if seed is None else torch.Generator(self.device).manual_seed(seed)
        stream = TextStream(self.processor.decode, list(stop or []), on_text)
        log.debug("decoding up to %d tokens after a %d-token prompt (%s)", max_new_tokens,
                  len(ids), self.decoder.mode)
        hybrid = isinstance(self._cache, HybridCache)
        if hybrid:  # decode steps advance the DeltaNet states out of the host's sight:
            # record that they are in flux, then where they ended
            self._cache.begin(len(ids))
        run = generate(self.decoder, self._cache, logits, len(ids), delta,
                       max_new_tokens=max_new_tokens,
                       stop_ids=[] if ignore_end else self.processor.end_token_ids,
                       stream=stream, temperature=temperature, top_p=top_p, generator=gen,
                       cancel=cancelled, sync_every=self.sync_every)
        if hybrid:
            self._cache.end(len(ids) + run.steps, snapshot=False)
        out = run.tokens
        text = stream.finish()
        timings["decode"] = self._clock() - t
        timings["tokens_per_s"] = len(out) / timings["decode"] if timings["decode"] > 0 else 0.0

        self._cached_ids = ids + out[: run.fed]
        self._cache.length = len(self._cached_ids)
        self.last_stats = {"prompt_tokens": len(ids), "reused_tokens": start,
                           "prefilled_tokens": len(ids) - start,
                           "generated_tokens": len(out), "images": len(spans),
                           "images_encoded": self._encoded_now}
        if run.cancelled:
            log.info("reply cancelled after %d tokens", len(out))
        return ChatResult(text, out, timings, cancelled=run.cancelled)

    # -- prefix reuse ---------------------------------------------------------------------

    def _image_spans(self, prompt: Prompt) -> list[tuple[int, int, ImageInput]]:
        """(start, end, image) of each image's placeholder run in the prompt."""
        spans, i, ids, img_id = [], 0, prompt.input_ids, self.cfg.image_token_id
        images = iter(prompt.images)
        while i < len(ids):
            if ids[i] == img_id:
                img = next(images)
                spans.append((i, i + img.num_tokens, img))
                i += img.num_tokens
            else:
                i += 1
        return spans

    def _reusable_prefix(self, ids: list[int], spans) -> int:
        """Length of the cached prefix valid for `ids`: same tokens, and the same image (by
        pixel hash) in every placeholder run inside it; at least one token is left to run."""
        old = self._cached_ids
        n = 0
        limit = min(len(old), len(ids) - 1)
        while n < limit and old[n] == ids[n]:
            n += 1
        for s, e, img in spans:
            if s >= n:
                break
            if self._cached_images.get(s) != (e, img.key) or e > n:
                n = s
                break
        return n

    # -- vision ---------------------------------------------------------------------------

    def _encode(self, images: list[ImageInput]):
        """Vision features for `images` in order, encoding only those not cached, in one
        packed call -> (embeds (M, H) | None, [deepstack (M, H)] | None)."""
        self._encoded_now = 0
        if not images:
            return None, None
        todo = {img.key: img for img in images if img.key not in self._vision}
        if todo:
            todo_list = list(todo.values())
            pixels = torch.cat([img.pixels for img in todo_list]).to(self.device)
            with torch.inference_mode():
                merged, ds = self.model.encode_images(pixels, [img.grid for img in todo_list])
            sizes = [img.num_tokens for img in todo_list]
            for j, (img, emb) in enumerate(zip(todo_list, merged.split(sizes))):
                self._vision[img.key] = (emb, [level.split(sizes)[j] for level in ds])
            self._encoded_now = len(todo_list)
        for img in images:
            self._vision.move_to_end(img.key)
        while len(self._vision) > max(self.vision_cache_size, len(images)):
            self._vision.popitem(last=False)
        embeds = torch.cat([self._vision[img.key][0] for img in images])
        levels = len(self._vision[images[0].key][1])
        deepstack = [torch.cat([self._vision[img.key][1][lv] for img in images])
                     for lv in range(levels)]
        return embeds, deepstack

    def _clock(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()
