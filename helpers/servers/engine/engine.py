"""Generation: sampling, a running request (``Sequence``) and the ``Engine`` whose thread decodes them all."""
from __future__ import annotations

import json
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from helpers.formats.chat_format import compile_template, render_prompt, tools_in_system_message
from helpers.formats.tool_formats import PHI4_END, PHI4_START, StreamSplitter
from helpers.servers.engine.kv_cache import NUMPY_TYPES, KVCache, load_session
from helpers.system.cpus import thread_cpus


class EngineError(Exception):
    """A request the engine refuses, with its HTTP status and OpenAI error type."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.param = status, message, kind, param


@dataclass
class Sampling:
    max_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    stops: list[str] = field(default_factory=list)
    min_tokens: int = 0


@dataclass
class Job:
    """One generation: its prompt, sampling, and a callback that receives events from the decoding thread."""

    ids: list[int]
    sampling: Sampling
    emit: object  # callable(event: dict)
    tool_names: list[str] | None = None  # offered tools: a tool call is held back and parsed
    hidden: tuple[str, ...] = ()  # special tokens left out of the text
    cancelled: threading.Event = field(default_factory=threading.Event)
    queued_at: float = field(default_factory=time.perf_counter)


def pick(logits: np.ndarray, s: Sampling, rng: np.random.Generator) -> int:
    """The next token: greedy at temperature 0, else sampled after the top-k and top-p cuts."""
    if s.temperature == 0:
        return int(logits.argmax())
    scaled = logits.astype(np.float64) / s.temperature
    candidates = np.arange(len(scaled))
    if 0 < s.top_k < len(scaled):
        candidates = np.argpartition(-scaled, s.top_k - 1)[:s.top_k]
    probs = np.exp(scaled[candidates] - scaled[candidates].max())
    probs /= probs.sum()
    if s.top_p < 1.0:
        # the nucleus (the likeliest tokens whose probabilities reach top_p) almost always lies in the top few
        # thousand: sorting a 150k vocabulary for every token would cost ~10 ms
        head = np.argpartition(-probs, 4095)[:4096] if len(probs) > 4096 else np.arange(len(probs))
        if probs[head].sum() < s.top_p:
            head = np.arange(len(probs))
        order = head[np.argsort(-probs[head], kind="stable")]
        keep = order[:min(len(order), int(np.searchsorted(np.cumsum(probs[order]), s.top_p)) + 1)]
        candidates, probs = candidates[keep], probs[keep] / probs[keep].sum()
    return int(candidates[rng.choice(len(probs), p=probs)])


class Sequence:
    """A running request: its sampler, detokenizer, tool-call splitter and stop strings, and what it has sent."""

    def __init__(self, engine: "Engine", job: Job):
        from tokenizers.decoders import DecodeStream

        self.engine, self.job, self.s = engine, job, job.sampling
        self.rng = np.random.default_rng(self.s.seed)
        self.length = 0  # tokens in the cache: the prompt enters chunk by chunk
        self.row = -1  # its cache row while its prompt is read (a running sequence's row is its place in the batch)
        self.last: int | None = None  # the token the next step feeds
        self.step = DecodeStream(skip_special_tokens=False).step
        self.splitter = StreamSplitter(job.tool_names, hidden=job.hidden)
        self.text, self.sent, self.last_emit, self.tokens = "", 0, -1.0, 0
        self.finish, self.stopped, self.running = "length", False, True
        self.started = time.perf_counter()

    def take(self, logits: np.ndarray) -> None:
        """Choose the next token from this sequence's logits; stream its text; end on EOS, a stop string,
        ``max_tokens`` or a client that went away."""
        if self.tokens < self.s.min_tokens:
            logits = logits.copy()
            logits[list(self.engine.eos)] = -np.inf
        token = pick(logits, self.s, self.rng)
        self.tokens += 1
        self.last = token
        if token in self.engine.eos:
            self.finish, self.running = "stop", False
            return
        piece = self.step(self.engine.tokenizer, token)
        if piece:
            self.text += self.splitter.feed(piece)
            safe = len(self.text)
            if self.s.stops:
                hit = min((self.text.find(stop) for stop in self.s.stops if stop in self.text), default=-1)
                if hit >= 0:
                    self.text, self.finish, self.stopped, self.running = self.text[:hit], "stop", True, False
                    return
                safe -= _held_back(self.text, self.s.stops)
            now = time.perf_counter()
            if safe > self.sent and now - self.last_emit >= self.engine.stream_interval:
                self.job.emit({"type": "text", "text": self.text[self.sent:safe]})
                self.sent, self.last_emit = safe, now
        if self.tokens >= self.s.max_tokens or self.job.cancelled.is_set():
            self.running = False

    def end(self) -> dict:
        """Send the rest of the text, the parsed tool calls and the counts; the figures for /metrics."""
        parsed = self.splitter.finish()
        if not self.stopped:
            self.text += parsed.content
        if len(self.text) > self.sent:
            self.job.emit({"type": "text", "text": self.text[self.sent:]})
        calls, seconds = parsed.calls, time.perf_counter() - self.started
        self.job.emit({"type": "end", "finish": "tool_calls" if calls else self.finish, "tool_calls": calls or [],
                       "prompt_tokens": len(self.job.ids), "completion_tokens": self.tokens, "seconds": seconds})
        return {"prompt_tokens": len(self.job.ids), "completion_tokens": self.tokens, "generation_seconds": seconds}


class Engine:
    """A converted model, its tokenizer and chat template, and the thread that decodes every running request.

    Continuous batching: each step, one forward pass gives every running sequence its next token; a request
    joins after its prompt pass and leaves at any step, its cache row taken by the last row. Chunked prefill:
    a prompt enters in chunks of at most ``prefill_chunk`` tokens, up to ``prefill_budget`` prompt tokens per step
    (default: one chunk) before the decode step, so a long prompt pauses the running streams for one chunk at a
    time rather than for the whole. A budget of many chunks reads every waiting prompt first (vLLM's
    ``--max-num-batched-tokens``): newcomers start later, running streams are paused less often. ONNX Runtime
    runs the model directly (onnxruntime-genai's generators decode one request each, and its og.Engine failed
    here: docs/onnx.md); the run releases the GIL, so the event loop streams and answers /health meanwhile.
    """

    def __init__(self, folder: Path, served_name: str, max_batch: int = 16, max_queue: int = 16,
                 stream_interval: float = 0.005, context: int | None = None, threads: int | None = None,
                 prefill_chunk: int = 128, prefill_budget: int | None = None, device: str = "cpu"):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.folder, self.served_name, self.ort_version = folder, served_name, ort.__version__
        # Text produced faster than this is sent in one chunk (the first piece goes out at once): a
        # tiny model makes a token every ~0.2 ms, and one SSE event per token would cost more than
        # the token; a real model's tokens (tens of ms) still stream one by one. Like vLLM's --stream-interval.
        self.stream_interval = stream_interval
        config = json.loads((folder / "genai_config.json").read_text())["model"]
        # served with the model card's context where it is smaller than what the build allows
        self.context_length = min(int(config["context_length"]), context or int(config["context_length"]))
        eos = config["eos_token_id"]
        self.eos = set(eos if isinstance(eos, list) else [eos])
        start = time.perf_counter()
        self.threads = threads or len(thread_cpus())  # the cores free at start
        self.session = load_session(folder, config["decoder"], self.threads, device)
        self.load_seconds = time.perf_counter() - start
        self.provider = self.session.get_providers()[0]
        types = {i.name: NUMPY_TYPES.get(i.type) for i in self.session.get_inputs()}
        decoder = config["decoder"]
        self.cache = KVCache(decoder, types[decoder["inputs"]["past_key_names"] % 0], self.context_length, device)
        fed = {decoder["inputs"]["input_ids"], decoder["inputs"]["attention_mask"], *(p for p, _ in self.cache.names)}
        unknown = sorted(set(types) - fed)
        if unknown:  # a build for another execution provider, or a layout this engine does not drive
            raise SystemExit(f"{folder}: the model also takes {unknown}; the engine feeds input_ids, attention_mask "
                             "and the KV cache (a CPU or CUDA build of onnxruntime-genai's builder)")
        self.id_type, self.mask_type = types[decoder["inputs"]["input_ids"]], types[decoder["inputs"]["attention_mask"]]
        self.input_names, self.logits_name = decoder["inputs"], decoder["outputs"]["logits"]
        logits_output = next(o for o in self.session.get_outputs() if o.name == self.logits_name)
        self.logits_type = NUMPY_TYPES[logits_output.type]
        self.last_position_only = logits_output.shape[1] == 1  # load_session cut the LM head
        self.vocab = int(config["vocab_size"])
        self.bindings: dict[tuple[int, int], tuple] = {}  # (rows, cache generation) -> decode binding, logits
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        # special tokens never reach a chat answer, except Phi-4's tool-call markers, which the parser reads
        self.specials = tuple(t.content for t in self.tokenizer.get_added_tokens_decoder().values() if t.special)
        self.chat_hidden = tuple(t for t in self.specials if t not in (PHI4_START, PHI4_END))
        source = _chat_template(folder)
        self.template, self.system_tools = compile_template(source), tools_in_system_message(source)
        self.jobs: queue.Queue[Job] = queue.Queue()
        self.max_queue, self.max_batch, self.prefill_chunk = max_queue, max_batch, max(1, prefill_chunk)
        self.prefill_budget = max(1, prefill_budget or self.prefill_chunk)
        self.pending = 0
        self.lock = threading.Lock()
        self.stats = {"requests": 0, "rejected_busy": 0, "prompt_tokens": 0, "completion_tokens": 0,
                      "generation_seconds": 0.0, "queue_seconds": 0.0, "prefill_steps": 0, "prefill_tokens": 0}
        self.batch_sizes = [0] * (max_batch + 1)  # decode steps per number of sequences in the step
        self.prefill_sizes = [0] * (self.prefill_chunk + 1)  # prefill steps per number of prompt tokens fed
        self.recent: deque[tuple[float, int]] = deque(maxlen=4096)  # (time, tokens) of recent steps
        self.decoder = threading.Thread(target=self._decode, name="decoder", daemon=True)
        self.decoder.start()

    # -- prompts

    def render(self, messages: list[dict], tools: list[dict] | None) -> list[int]:
        """Token ids of the chat prompt, tools in the system turn, ready for the assistant's answer."""
        try:
            text = render_prompt(self.template, messages, tools, self.system_tools)
        except ValueError as err:  # the template's raise_exception
            raise EngineError(400, str(err), param="messages") from err
        return self.encode(text, "messages")

    def encode(self, text: str, param: str) -> list[int]:
        """Token ids of ``text``; 400 when it is not Unicode text (JSON's ``"\\ud800"``, a lone surrogate)."""
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as err:
            raise EngineError(400, f"{param} hold a lone UTF-16 surrogate ({text[err.start]!r}), which is not "
                                   "Unicode text", param=param) from err
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def check_length(self, ids: list[int], max_tokens: int | None) -> int:
        """The number of tokens to generate; 400 when the prompt leaves no room in the context."""
        room = self.context_length - len(ids)
        if room <= 0 or (max_tokens is not None and max_tokens > room):
            raise EngineError(400, f"This model's maximum context length is {self.context_length} tokens. However, "
                                   f"you requested {len(ids) + (max_tokens or 0)} tokens ({len(ids)} in the messages, "
                                   f"{max_tokens or 0} in the completion).", param="messages")
        return max_tokens if max_tokens is not None else min(room, 1024)

    # -- the queue and the batch

    def submit(self, job: Job) -> None:
        with self.lock:
            if self.pending >= self.max_queue + self.max_batch:
                self.stats["rejected_busy"] += 1
                raise EngineError(429, f"the engine is busy ({self.pending} requests in flight); retry shortly",
                                  kind="rate_limit_error")
            self.pending += 1
            self.stats["requests"] += 1
        self.jobs.put(job)

    def tokens_per_second(self, window: float = 10.0) -> float:
        """Generated tokens per second over the last ``window`` seconds."""
        now, steps = time.perf_counter(), list(self.recent)
        recent = [(t, n) for t, n in steps if now - t <= window]
        return sum(n for _, n in recent) / window if recent else 0.0

    def _decode(self) -> None:
        """Each step: prompt chunks of the requests waiting (one request at a time, in arrival order, while the batch
        has room), up to ``prefill_budget`` tokens; then one decode step for every running request."""
        running: list[Sequence] = []
        reading: Sequence | None = None
        while True:
            budget = self.prefill_budget
            while budget > 0:
                if reading is None:
                    if len(running) >= self.max_batch:
                        break
                    try:
                        job = self.jobs.get(block=not running)
                    except queue.Empty:
                        break
                    self.stats["queue_seconds"] += time.perf_counter() - job.queued_at
                    reading = Sequence(self, job)
                fed, done = self._prefill(reading, running, min(budget, self.prefill_chunk))
                budget -= fed
                if done:
                    reading = None
            if running:
                self._step(running)

    def _prefill(self, sequence: Sequence, running: list[Sequence], chunk_size: int) -> tuple[int, bool]:
        """Feed the next chunk (at most ``chunk_size`` tokens) of ``sequence``'s prompt into the cache row after the
        running ones; after the last chunk take its first token and let it join ``running``. (Prompt tokens fed,
        whether it is done reading or has left.)"""
        if sequence.job.cancelled.is_set():  # the client left while the request waited or was read
            self._retire(sequence)
            return 0, True
        row = len(running)
        try:
            if 0 <= sequence.row != row:  # a running request left meanwhile: its row moves up behind them
                self.cache.move(sequence.row, row)
            sequence.row = row
            chunk = sequence.job.ids[sequence.length:sequence.length + chunk_size]
            self.cache.ensure(row + 1, sequence.length + len(chunk))
            logits = self._forward(row, np.array([chunk], self.id_type),
                                   np.ones((1, sequence.length + len(chunk)), self.mask_type))
            sequence.length += len(chunk)
            self.stats["prefill_steps"] += 1
            self.stats["prefill_tokens"] += len(chunk)
            self.prefill_sizes[len(chunk)] += 1
            if sequence.length < len(sequence.job.ids):
                return len(chunk), False
            sequence.take(logits[0])
        except Exception as err:  # noqa: BLE001 - the request gets the error, the engine lives on
            self._fail([sequence], err)
            self._retire(sequence)
            return 0, True
        if sequence.running:
            running.append(sequence)
        else:
            self._retire(sequence)
        return len(chunk), True

    def _step(self, running: list[Sequence]) -> None:
        """One forward pass for every running sequence (right-padded to the longest), a token each."""
        lengths = np.array([s.length for s in running])
        try:
            self.cache.ensure(len(running), int(lengths.max()) + 1)
            mask = (np.arange(lengths.max() + 1) <= lengths[:, None]).astype(self.mask_type)
            logits = self._forward(0, np.array([[s.last] for s in running], self.id_type), mask)
        except Exception as err:  # noqa: BLE001
            self._fail(running, err)
            for sequence in running:
                self._retire(sequence)
            running.clear()
            return
        self.batch_sizes[len(running)] += 1
        self.recent.append((time.perf_counter(), len(running)))
        for sequence, row in zip(running, logits):
            sequence.length += 1
            try:
                sequence.take(row)
            except Exception as err:  # noqa: BLE001
                self._fail([sequence], err)
        for row in range(len(running) - 1, -1, -1):  # leavers' rows go to the last row's sequence
            if not running[row].running:
                self._retire(running[row])
                if row != len(running) - 1:
                    self.cache.move(len(running) - 1, row)
                    running[row] = running[-1]
                running.pop()

    def _forward(self, start: int, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Logits of each row's last position, for cache rows ``start:start + len(ids)``. A decode step (a token
        per row, from row 0) keeps its binding and logits buffer per batch size until the cache grows: binding
        afresh every step (and reading every output back) cost phi4-nano ~14 % of its speed."""
        import onnxruntime as ort

        rows, decode = len(ids), ids.shape[1] == 1 and start == 0
        key = (rows, self.cache.generation)
        if decode and key in self.bindings:
            binding, logits = self.bindings[key]
        else:
            positions = 1 if self.last_position_only else ids.shape[1]
            binding, logits = self.session.io_binding(), np.empty((rows, positions, self.vocab), self.logits_type)
            self.cache.bind(binding, start, start + rows)
            binding.bind_ortvalue_output(self.logits_name, ort.OrtValue.ortvalue_from_numpy(logits))
            if decode:
                self.bindings = {k: v for k, v in self.bindings.items() if k[1] == self.cache.generation}
                self.bindings[key] = binding, logits
        binding.bind_cpu_input(self.input_names["input_ids"], ids)
        binding.bind_cpu_input(self.input_names["attention_mask"], mask)
        self.session.run_with_iobinding(binding)
        return logits[:, -1]

    def _retire(self, sequence: Sequence) -> None:
        """A sequence has left: its end event if it ended by generating (not if it failed, ``running`` None, or
        never ran), its counts, and a free place in the queue."""
        figures = sequence.end() if sequence.running is False else {}
        with self.lock:
            for name, value in figures.items():
                self.stats[name] += value
            self.pending -= 1

    @staticmethod
    def _fail(sequences: list[Sequence], err: Exception) -> None:
        """End ``sequences`` with an error event instead of an end event (the engine lives on)."""
        for sequence in sequences:
            sequence.job.emit({"type": "error", "message": f"{type(err).__name__}: {err}"})
            sequence.running = None


def _held_back(text: str, stops: list[str]) -> int:
    """How many trailing characters could still start a stop string (not emitted yet)."""
    longest = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:n]):
                longest = max(longest, n)
                break
    return longest


def _chat_template(folder: Path) -> str:
    path = folder / "chat_template.jinja"
    if path.exists():
        return path.read_text()
    template = json.loads((folder / "tokenizer_config.json").read_text()).get("chat_template")
    if not template:
        raise SystemExit(f"{folder} has no chat template (chat_template.jinja or tokenizer_config.json)")
    return template
