"""The SLM Engine: an OpenAI-compatible server on ONNX Runtime, for onnxruntime-genai builds.

Run: ``python -m helpers.slm_engine --model FOLDER --port 8080`` where FOLDER is an
onnxruntime-genai build (``genai_config.json``, ``model.onnx``) that ships its
``tokenizer.json`` and ``chat_template.jinja`` (nothing is fetched at run time).

- ``POST /v1/chat/completions``: chat with sampling (temperature, top_p, top_k, seed,
  max_tokens, stop), SSE streaming with ``usage``, and function calling: the model's own chat
  template renders the tools, whatever the model writes for a call (Phi-4's ``<|tool_call|>``,
  ``<tool_call>``, a fenced JSON block: helpers/tool_formats.py) comes back as OpenAI
  ``tool_calls`` (streamed too), ``tool`` messages feed results back;
- ``POST /v1/completions``: a raw prompt in, the text out (special tokens kept on request) —
  what the model wrote before any parser;
- ``GET /v1/models``, ``GET /health`` (model, variant, provider, readiness),
  ``GET /metrics`` (Prometheus text), and the seed's ``POST /reasoning``;
- continuous batching: up to ``--max-batch`` requests decode together, one forward pass per
  token for all of them (``Engine``), behind a bounded queue; a full queue answers 429, a bad
  request 4xx JSON in OpenAI's error shape — never a 500.

The container image (compose/onnx-engine/Dockerfile) holds only this module,
``helpers/chat_format.py``, ``helpers/tool_formats.py`` and their wheels: CPU onnxruntime,
onnx (to edit the graph in memory), tokenizers, jinja2, fastapi, uvicorn.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import queue
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from helpers.chat_format import compile_template, openai_tool_calls, render_prompt, tools_in_system_message
from helpers.tool_formats import PHI4_END, PHI4_START, StreamSplitter

# The seed's /reasoning task types, as system prompts (those phi4-nano was trained with).
TASK_SYSTEMS = {
    "reasoning": "You are a mathematical reasoning assistant. Show your work step by step.",
    "math": "You are a mathematical reasoning assistant. Show your work step by step.",
    "coding": "You are a coding assistant.",
}


def available_cpus(cgroup: Path = Path("/sys/fs/cgroup")) -> int:
    """The CPUs this process may use: its affinity, capped by a cgroup CPU quota (``docker run --cpus``)."""
    import os

    cpus = len(os.sched_getaffinity(0))
    for quota_file, period_file in ((cgroup / "cpu.max", None),  # cgroup v2: "<quota> <period>"
                                    (cgroup / "cpu" / "cpu.cfs_quota_us", cgroup / "cpu" / "cpu.cfs_period_us")):
        try:
            fields = quota_file.read_text().split()
            quota, period = fields[0], (fields[1] if period_file is None else period_file.read_text().strip())
        except (OSError, IndexError):
            continue
        if quota not in ("max", "-1"):
            cpus = min(cpus, max(1, int(int(quota) / int(period) + 0.5)))
    return cpus


class EngineError(Exception):
    """A request the engine refuses, with its HTTP status and OpenAI error type."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.param = status, message, kind, param


# ----------------------------------------------------------------------------- request bodies

def _stop_list(value) -> list[str]:
    stops = [value] if isinstance(value, str) else (value or [])
    if len(stops) > 4 or any(not s for s in stops):
        raise ValueError("stop: at most 4 non-empty strings")
    return stops


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class FunctionSpec(_Body):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    parameters: dict = Field(default_factory=lambda: {"type": "object", "properties": {}})


class Tool(_Body):
    type: Literal["function"] = "function"
    function: FunctionSpec


class ToolCallFunction(_Body):
    name: str
    arguments: str | dict = "{}"


class ToolCallIn(_Body):
    id: str = ""
    type: Literal["function"] = "function"
    function: ToolCallFunction


class TextPart(_Body):
    type: Literal["text"]
    text: str


class Message(_Body):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    tool_calls: list[ToolCallIn] | None = None
    tool_call_id: str | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""


class StreamOptions(_Body):
    include_usage: bool = False


class ChatRequest(_Body):
    model: str
    messages: list[Message] = Field(min_length=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = Field(0, ge=0)  # 0: no top-k cut
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    min_tokens: int = Field(0, ge=0)  # vLLM's extension: EOS is suppressed until this many tokens
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    tools: list[Tool] | None = None
    tool_choice: Literal["auto", "none", "required"] | dict | None = None
    n: int = Field(1, ge=1, le=1)

    @field_validator("stop")
    @classmethod
    def _stops(cls, value):
        return _stop_list(value)

    @model_validator(mode="after")
    def _turns(self):
        """A user turn has content; a tool turn answers an assistant's tool calls (OpenAI's rules: 400)."""
        answering = False  # the turns since the last assistant message with tool_calls are tool results
        for i, m in enumerate(self.messages):
            if m.role == "user" and m.content is None:
                raise ValueError(f"messages.{i}: a user message needs content")
            if m.role == "tool" and not answering:
                raise ValueError(f"messages.{i}: a message with role 'tool' must answer a preceding assistant "
                                 "message with 'tool_calls'")
            answering = (m.role == "assistant" and bool(m.tool_calls)) or (m.role == "tool" and answering)
        return self


class CompletionRequest(_Body):
    model: str
    prompt: str = Field(min_length=1)
    max_tokens: int = Field(16, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    stop: str | list[str] | None = None
    skip_special_tokens: bool = True  # vLLM's extension: False keeps special tokens in the text
    stream: Literal[False] = False

    @field_validator("stop")
    @classmethod
    def _stops(cls, value):
        return _stop_list(value)


class ReasoningRequest(_Body):
    prompt: str = Field(min_length=1)
    task_type: Literal["reasoning", "math", "coding"] = "reasoning"
    max_length: int = Field(200, ge=1)
    temperature: float = Field(0.3, ge=0.0, le=2.0)


# ----------------------------------------------------------------------------- generation

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


def load_session(folder: Path, decoder: dict, threads: int):
    """An ONNX Runtime session on a genai build's decoder (``genai_config.json``'s entry), its LM head cut to each row's last position, with
    ``threads`` intra-op threads and no second pool.

    Left alone, ONNX Runtime sizes its pool by physical cores; on a 2-vCPU machine that reports them
    differently it ran one thread: Qwen2.5-Coder-0.5B fp32 decoded at 6.8 tok/s with the default and
    12.9 with 2 threads (PyTorch: 10.5 with its default of 2).
    """
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(folder / decoder["filename"]), load_external_data=False)  # weights stay in their file
    last_position_logits(model.graph, decoder["outputs"]["logits"])
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Every decode step has new shapes (one more past position): with ONNX Runtime's CPU memory arena on, Qwen fp32
    # decoded at 6.7-8.3 tok/s, with it off at 10.7 (onnxruntime-genai's own loop: 11.5; docs/onnx.md)
    options.enable_cpu_mem_arena = False
    options.add_session_config_entry("session.model_external_initializers_file_folder_path", str(folder))
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def last_position_logits(graph, logits: str) -> bool:
    """Make the graph compute logits for each row's last position only, the one the engine samples from: genai's
    builds compute them for every prompt position (Qwen: 600 MB of logits for a 1,000-token prompt, and 4-6 % of
    the pass). A Slice goes before the LM head's MatMul; False (graph unchanged) where no MatMul is found."""
    from onnx import TensorProto, helper

    producers = {out: node for node in graph.node for out in node.output}
    node = producers.get(logits)
    while node is not None and node.op_type not in ("MatMul", "MatMulNBits"):
        node = producers.get(node.input[0])  # a bias Add or a Cast after the LM head
    if node is None:
        return False
    hidden, sliced = node.input[0], node.input[0] + "/last_position"
    constants = [helper.make_tensor(f"{sliced}/{name}", TensorProto.INT64, [1], [value])
                 for name, value in (("starts", -1), ("ends", 2**62), ("axes", 1))]
    graph.initializer.extend(constants)
    graph.node.insert(list(graph.node).index(node),
                      helper.make_node("Slice", [hidden, *(c.name for c in constants)], [sliced], name=sliced))
    node.input[0] = sliced
    output = next(o for o in graph.output if o.name == logits)
    output.type.tensor_type.shape.dim[1].dim_value = 1
    return True


_NUMPY_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64,
                "tensor(int32)": np.int32}


class KVCache:
    """Keys and values of the running sequences, one row each (rows 0..n-1), right-padded to ``capacity``.

    onnxruntime-genai's builder emits ONNX Runtime's GroupQueryAttention, which reads row b's first
    ``seqlens_k[b]`` positions (the row's attention-mask sum) and, when past and present are the same buffer,
    writes the new position in place. So one step copies no cache, and a row never attends to another row's
    positions: a sequence's tokens do not depend on what else is in the batch (tests/test_slm_engine.py).
    """

    def __init__(self, decoder: dict, dtype, limit: int):
        inputs, outputs = decoder["inputs"], decoder["outputs"]
        self.names = [(inputs[f"past_{kind}_names"] % i, outputs[f"present_{kind}_names"] % i)
                      for i in range(decoder["num_hidden_layers"]) for kind in ("key", "value")]
        self.heads, self.head_size, self.dtype, self.limit = decoder["num_key_value_heads"], decoder["head_size"], dtype, limit
        self.rows, self.capacity, self.arrays = 0, 0, []
        self.generation = 0  # bumped when the arrays are replaced: bindings to the old ones are stale

    def ensure(self, rows: int, length: int) -> None:
        """Room for ``rows`` sequences of ``length`` tokens; grows by doubling (a copy, seldom)."""
        if rows <= self.rows and length <= self.capacity:
            return
        new_rows = self.rows if rows <= self.rows else max(rows, min(2 * self.rows, rows + 8))
        capacity = self.capacity if length <= self.capacity else min(self.limit, max(length, 2 * self.capacity, 256))
        arrays = [np.zeros((new_rows, self.heads, capacity, self.head_size), self.dtype) for _ in self.names]
        for old, new in zip(self.arrays, arrays):
            new[:self.rows, :, :self.capacity] = old
        self.rows, self.capacity, self.arrays = new_rows, capacity, arrays
        self.generation += 1

    def move(self, source: int, target: int) -> None:
        """Row ``source``'s keys and values into row ``target`` (a request left; the last row takes its place)."""
        for array in self.arrays:
            array[target] = array[source]

    def bind(self, binding, start: int, stop: int) -> None:
        """Rows ``start:stop`` as both past and present of every layer: views of the arrays, which stay alive
        until the cache grows (and bindings of an older ``generation`` are not run again)."""
        import onnxruntime as ort

        for (past, present), array in zip(self.names, self.arrays):
            value = ort.OrtValue.ortvalue_from_numpy(array[start:stop])
            binding.bind_ortvalue_input(past, value)
            binding.bind_ortvalue_output(present, value)


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
        self.length = len(job.ids)  # tokens in the cache
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
    joins after its prompt pass and leaves at any step, its cache row taken by the last row. ONNX Runtime
    runs the model directly (onnxruntime-genai's generators decode one request each, and its og.Engine failed
    here: docs/onnx.md); the run releases the GIL, so the event loop streams and answers /health meanwhile.
    """

    def __init__(self, folder: Path, served_name: str, max_batch: int = 16, max_queue: int = 16,
                 stream_interval: float = 0.005, context: int | None = None, threads: int | None = None):
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
        self.threads = threads or available_cpus()
        self.session = load_session(folder, config["decoder"], self.threads)
        self.load_seconds = time.perf_counter() - start
        types = {i.name: _NUMPY_TYPES.get(i.type) for i in self.session.get_inputs()}
        decoder = config["decoder"]
        self.cache = KVCache(decoder, types[decoder["inputs"]["past_key_names"] % 0], self.context_length)
        fed = {decoder["inputs"]["input_ids"], decoder["inputs"]["attention_mask"], *(p for p, _ in self.cache.names)}
        unknown = sorted(set(types) - fed)
        if unknown:  # a build for another execution provider, or a layout this engine does not drive
            raise SystemExit(f"{folder}: the model also takes {unknown}; the engine feeds input_ids, attention_mask "
                             "and the KV cache (a CPU build of onnxruntime-genai's builder)")
        self.id_type, self.mask_type = types[decoder["inputs"]["input_ids"]], types[decoder["inputs"]["attention_mask"]]
        self.input_names, self.logits_name = decoder["inputs"], decoder["outputs"]["logits"]
        logits_output = next(o for o in self.session.get_outputs() if o.name == self.logits_name)
        self.logits_type = _NUMPY_TYPES[logits_output.type]
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
        self.max_queue, self.max_batch = max_queue, max_batch
        self.pending = 0
        self.lock = threading.Lock()
        self.stats = {"requests": 0, "rejected_busy": 0, "prompt_tokens": 0, "completion_tokens": 0,
                      "generation_seconds": 0.0, "queue_seconds": 0.0}
        self.batch_sizes = [0] * (max_batch + 1)  # decode steps per number of sequences in the step
        self.recent: deque[tuple[float, int]] = deque(maxlen=4096)  # (time, tokens) of recent steps
        threading.Thread(target=self._decode, daemon=True).start()

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
        """Admit queued requests while the batch has room (a prompt pass each), then one step for all."""
        running: list[Sequence] = []
        while True:
            while len(running) < self.max_batch:
                try:
                    job = self.jobs.get(block=not running)
                except queue.Empty:
                    break
                self._admit(job, running)
            if running:
                self._step(running)

    def _admit(self, job: Job, running: list[Sequence]) -> None:
        """Run ``job``'s prompt into the next free cache row and take its first token."""
        self.stats["queue_seconds"] += time.perf_counter() - job.queued_at
        sequence, row = Sequence(self, job), len(running)
        if job.cancelled.is_set():  # the client left while the request waited
            self._retire(sequence)
            return
        try:
            self.cache.ensure(row + 1, len(job.ids))
            ids = np.array([job.ids], self.id_type)
            logits = self._forward(row, ids, np.ones(ids.shape, self.mask_type))
            sequence.take(logits[0])
        except Exception as err:  # noqa: BLE001 - the request gets the error, the engine lives on
            self._fail([sequence], err)
            self._retire(sequence)
            return
        if sequence.running:
            running.append(sequence)
        else:
            self._retire(sequence)

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


# ----------------------------------------------------------------------------- the HTTP API

def _error(status: int, message: str, kind: str = "invalid_request_error", param: str | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": status}}, status_code=status)


def _validation_message(err: RequestValidationError) -> str:
    parts = []
    for e in err.errors()[:5]:
        where = ".".join(str(p) for p in e.get("loc", ()) if p != "body")
        parts.append(f"{where or 'body'}: {e.get('msg')}")
    return "; ".join(parts) or "invalid request body"


def _messages_for_template(messages: list[Message]) -> list[dict]:
    out = []
    for m in messages:
        role = "system" if m.role == "developer" else m.role
        entry = {"role": role, "content": m.text()}
        if m.tool_calls:
            entry["tool_calls"] = [{"id": c.id, "type": "function", "function": {
                "name": c.function.name, "arguments": _arguments(c.function.arguments)}} for c in m.tool_calls]
        out.append(entry)
    return out


def _arguments(arguments: str | dict) -> dict:
    if isinstance(arguments, dict):
        return arguments
    try:
        value = json.loads(arguments or "{}")
    except json.JSONDecodeError as err:
        raise EngineError(400, f"tool call arguments are not valid JSON: {err}", param="messages") from err
    if not isinstance(value, dict):
        raise EngineError(400, "tool call arguments must be a JSON object", param="messages")
    return value


def create_app(engine: Engine) -> FastAPI:
    app = FastAPI(title="SLM Engine (ONNX Runtime)")
    created = int(time.time())

    @app.exception_handler(EngineError)
    async def _engine_error(request, err: EngineError):
        return _error(err.status, err.message, err.kind, err.param)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, err: RequestValidationError):
        return _error(400, _validation_message(err))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request, err: StarletteHTTPException):
        return _error(err.status_code, str(err.detail), "not_found_error" if err.status_code == 404 else "invalid_request_error")

    @app.exception_handler(Exception)
    async def _unexpected(request, err: Exception):  # last resort: a JSON error, and the server keeps serving
        return _error(500, f"internal error: {type(err).__name__}", "server_error")

    @app.get("/health")
    async def health():
        return {"status": "ok", "ready": True, "model": engine.served_name, "variant": engine.folder.name,
                "provider": "CPUExecutionProvider", "onnxruntime": engine.ort_version,
                "context_length": engine.context_length, "load_seconds": round(engine.load_seconds, 3),
                "threads": engine.threads,
                "queue": {"in_flight": engine.pending, "max_batch": engine.max_batch, "max_queue": engine.max_queue}}

    @app.get("/")
    async def root():
        return {"name": "SLM Engine", "model": engine.served_name,
                "endpoints": ["/v1/chat/completions", "/v1/completions", "/v1/models", "/reasoning", "/health",
                          "/metrics"]}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": engine.served_name, "object": "model", "created": created,
                                            "owned_by": "slm-engine", "max_model_len": engine.context_length}]}

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics():
        lines = []
        for name, value in engine.stats.items():
            metric = f"slm_engine_{name}_total"
            lines += [f"# TYPE {metric} counter", f"{metric} {value}"]
        lines += ["# TYPE slm_engine_requests_in_flight gauge", f"slm_engine_requests_in_flight {engine.pending}",
                  "# HELP slm_engine_generation_tokens_per_second generated tokens per second over the last 10 s",
                  "# TYPE slm_engine_generation_tokens_per_second gauge",
                  f"slm_engine_generation_tokens_per_second {engine.tokens_per_second():.2f}"]
        return "\n".join(lines + _histogram("slm_engine_batch_size", "sequences per decode step",
                                             engine.batch_sizes)) + "\n"

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatRequest, request: Request):
        if body.model != engine.served_name:
            raise EngineError(404, f"The model `{body.model}` does not exist.", "not_found_error", "model")
        tools = [t.model_dump() for t in body.tools or []]
        choice = body.tool_choice
        if isinstance(choice, dict) or choice == "required":
            raise EngineError(400, "tool_choice: only 'auto' and 'none' are supported by this engine", param="tool_choice")
        use_tools = tools if choice != "none" else None
        ids = engine.render(_messages_for_template(body.messages), use_tools)
        max_tokens = engine.check_length(ids, body.max_completion_tokens or body.max_tokens)
        sampling = Sampling(max_tokens, body.temperature, body.top_p, body.top_k, body.seed, body.stop or [],
                            body.min_tokens)
        events = _start(engine, ids, sampling, [t["function"]["name"] for t in use_tools] if use_tools else None,
                        engine.chat_hidden)
        rid, now = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        if body.stream:
            usage = bool(body.stream_options and body.stream_options.include_usage)
            return StreamingResponse(_sse(events, rid, now, engine.served_name, usage, request),
                                     media_type="text/event-stream")
        text, end = await _collect(events)
        message = {"role": "assistant", "content": text if (text or not end["tool_calls"]) else None}
        if end["tool_calls"]:
            message["tool_calls"] = openai_tool_calls(end["tool_calls"])
        return {"id": rid, "object": "chat.completion", "created": now, "model": engine.served_name,
                "choices": [{"index": 0, "message": message, "finish_reason": end["finish"], "logprobs": None}],
                "usage": _usage(end)}

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest):
        if body.model != engine.served_name:
            raise EngineError(404, f"The model `{body.model}` does not exist.", "not_found_error", "model")
        ids = engine.encode(body.prompt, "prompt")
        max_tokens = engine.check_length(ids, body.max_tokens)
        started = _start(engine, ids, Sampling(max_tokens, body.temperature, stops=body.stop or []),
                         hidden=engine.specials if body.skip_special_tokens else ())
        text, end = await _collect(started)
        return {"id": f"cmpl-{uuid.uuid4().hex[:24]}", "object": "text_completion", "created": int(time.time()),
                "model": engine.served_name, "usage": _usage(end),
                "choices": [{"index": 0, "text": text, "finish_reason": end["finish"], "logprobs": None}]}

    @app.post("/reasoning")
    async def reasoning(body: ReasoningRequest):
        messages = [{"role": "system", "content": TASK_SYSTEMS[body.task_type]}, {"role": "user", "content": body.prompt}]
        ids = engine.render(messages, None)
        max_tokens = engine.check_length(ids, body.max_length)
        start = time.perf_counter()
        text, end = await _collect(_start(engine, ids, Sampling(max_tokens, body.temperature), hidden=engine.specials))
        return {"generated_text": text, "task_type": body.task_type, "inference_time": round(time.perf_counter() - start, 4),
                "model": engine.served_name, "usage": _usage(end), "finish_reason": end["finish"]}

    return app


def _start(engine: Engine, ids: list[int], sampling: Sampling, tool_names: list[str] | None = None,
           hidden: tuple[str, ...] = ()) -> tuple[asyncio.Queue, Job]:
    loop = asyncio.get_running_loop()
    events: asyncio.Queue = asyncio.Queue()
    job = Job(ids, sampling, lambda event: loop.call_soon_threadsafe(events.put_nowait, event), tool_names, hidden)
    engine.submit(job)
    return events, job


async def _next(events: asyncio.Queue) -> dict:
    event = await events.get()
    if event["type"] == "error":
        raise EngineError(500, f"generation failed: {event['message']}", "server_error")
    return event


async def _collect(started) -> tuple[str, dict]:
    events, job = started
    pieces = []
    try:
        while (event := await _next(events))["type"] != "end":
            pieces.append(event["text"])
    finally:
        job.cancelled.set()  # a dropped request stops generating
    return "".join(pieces), event


def _histogram(name: str, help_text: str, counts: list[int]) -> list[str]:
    """Prometheus histogram lines for ``counts[size]`` observations of each size (buckets 1, 2, 4, ...)."""
    lines, bound = [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"], 1
    while bound < len(counts) * 2:
        lines.append(f'{name}_bucket{{le="{bound}"}} {sum(counts[:bound + 1])}')
        bound *= 2
    lines += [f'{name}_bucket{{le="+Inf"}} {sum(counts)}', f"{name}_sum {sum(i * c for i, c in enumerate(counts))}",
              f"{name}_count {sum(counts)}"]
    return lines


def _usage(end: dict) -> dict:
    return {"prompt_tokens": end["prompt_tokens"], "completion_tokens": end["completion_tokens"],
            "total_tokens": end["prompt_tokens"] + end["completion_tokens"]}


async def _sse(started, rid: str, created: int, model: str, include_usage: bool, request: Request):
    events, job = started

    def chunk(delta: dict, finish: str | None = None, usage: dict | None = None) -> str:
        body = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}
        if usage:
            body["usage"] = usage
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    try:
        yield chunk({"role": "assistant", "content": ""})
        while True:
            try:
                event = await _next(events)
            except EngineError as err:
                yield f"data: {json.dumps({'error': {'message': err.message, 'type': err.kind}})}\n\n"
                break
            if event["type"] == "text":
                yield chunk({"content": event["text"]})
                continue
            for call in openai_tool_calls(event["tool_calls"]):
                yield chunk({"tool_calls": [call]})
            yield chunk({}, event["finish"])
            if include_usage:
                yield chunk({}, usage=_usage(event))
            break
        yield "data: [DONE]\n\n"
    finally:
        job.cancelled.set()  # the client went away: stop generating


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="an onnxruntime-genai model folder")
    parser.add_argument("--served-model-name", required=True)
    parser.add_argument("--context", type=int, help="tokens of context to serve (default: the build's)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--max-batch", type=int, default=16, help="requests decoded together (vLLM's --max-num-seqs)")
    parser.add_argument("--max-queue", type=int, default=16, help="requests waiting beyond those; more get 429")
    parser.add_argument("--stream-interval", type=float, default=0.005, help="seconds between streamed chunks at most")
    parser.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads (default: the CPUs available)")
    args = parser.parse_args(argv)
    if not (args.model / "genai_config.json").exists():
        raise SystemExit(f"{args.model} is not an onnxruntime-genai model folder (no genai_config.json)")
    engine = Engine(args.model, args.served_model_name, args.max_batch, args.max_queue, args.stream_interval,
                    args.context, args.threads)
    print(f"SLM Engine: {args.model.name} loaded in {engine.load_seconds:.2f} s as {args.served_model_name!r}", flush=True)
    uvicorn.run(create_app(engine), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
