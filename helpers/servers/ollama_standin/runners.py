"""llama.cpp runners (xllamacpp's embedded server) loaded on demand, and generation on them."""
from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from helpers.formats import gguf
from helpers.formats.chat_format import compile_template, render_prompt, tools_in_system_message
from helpers.formats.tool_formats import PHI4_END, PHI4_START, StreamSplitter
from helpers.servers.ollama_standin.errors import OllamaError
from helpers.servers.ollama_standin.options import DEFAULT_OPTIONS, LOAD_OPTIONS, check_options
from helpers.servers.ollama_standin.store import Model, Store
from helpers.system.cpus import available_cpus, thread_cpus


@dataclass
class Runner:
    """A loaded GGUF in llama.cpp (xllamacpp's embedded server), with Ollama's load options."""

    server: object
    gguf: Path
    load: dict
    model: str = ""
    expires: float = 0.0
    busy: int = 0


class Runners:
    """GGUFs loaded on demand, unloaded after keep_alive; reloaded when a load option changes — once the requests
    running on the old settings have finished (as Ollama's scheduler waits for a runner to be idle), so no request
    runs with another request's num_ctx."""

    def __init__(self, parallel: int = 2):
        self.parallel = parallel
        self.loaded: dict[Path, Runner] = {}
        self.changed = threading.Condition()

    def acquire(self, model: Model, options: dict, keep_alive: float) -> tuple[Runner, float]:
        """The runner for ``model`` with ``options``' load settings; returns it and the seconds spent loading."""
        import xllamacpp

        load = {key: options[key] for key in LOAD_OPTIONS if key in options}
        with self.changed:
            self.expire()
            while (runner := self.loaded.get(model.gguf)) and runner.load != load and runner.busy:
                self.changed.wait()
            if runner and runner.load != load:
                del self.loaded[model.gguf]
                runner = None
            start = time.perf_counter()
            if runner is None:
                params = xllamacpp.CommonParams()
                params.model.path = str(model.gguf)
                # Ollama gives every parallel slot the full num_ctx
                params.n_ctx = load.get("num_ctx", DEFAULT_OPTIONS["num_ctx"]) * self.parallel
                params.n_parallel = self.parallel
                # the cores free now (Ollama: the physical cores), unless the request set num_thread
                params.cpuparams.n_threads = params.cpuparams_batch.n_threads = (load.get("num_thread")
                                                                                 or len(thread_cpus()))
                if "num_batch" in load:
                    params.n_batch = load["num_batch"]
                params.special = True  # special tokens in the output: <|tool_call|> is how tools are called
                params.warmup = False
                runner = Runner(xllamacpp.Server(params), model.gguf, load)
                self.loaded[model.gguf] = runner
            runner.model, runner.busy = model.name, runner.busy + 1
            runner.expires = float("inf") if keep_alive < 0 else time.time() + keep_alive
            return runner, time.perf_counter() - start

    def release(self, runner: Runner) -> None:
        with self.changed:
            runner.busy -= 1
            self.expire()
            self.changed.notify_all()

    def unload(self, gguf: Path) -> None:
        with self.changed:
            self.loaded.pop(gguf, None)
            self.changed.notify_all()

    def expire(self) -> None:
        for path, runner in list(self.loaded.items()):
            if runner.busy == 0 and runner.expires <= time.time():
                del self.loaded[path]


def llama_request(prompt: str, options: dict, fmt) -> dict:
    """A llama.cpp /completion request for ``prompt`` with Ollama options."""
    request = {"prompt": prompt, "n_predict": options["num_predict"], "temperature": options["temperature"],
               "top_k": options["top_k"], "top_p": options["top_p"], "min_p": options["min_p"],
               "repeat_penalty": options["repeat_penalty"], "repeat_last_n": options["repeat_last_n"],
               "cache_prompt": True}
    for ours, theirs in (("stop", "stop"), ("presence_penalty", "presence_penalty"),
                         ("frequency_penalty", "frequency_penalty"), ("typical_p", "typical_p"),
                         ("num_keep", "n_keep"), ("mirostat", "mirostat"), ("mirostat_tau", "mirostat_tau"),
                         ("mirostat_eta", "mirostat_eta")):
        if ours in options:
            request[theirs] = options[ours]
    if options["seed"] >= 0:
        request["seed"] = options["seed"]
    if fmt == "json":
        request["json_schema"] = {"type": "object"}
    elif isinstance(fmt, dict):
        request["json_schema"] = fmt
    elif fmt not in (None, ""):
        raise OllamaError(400, f"invalid format: {json.dumps(fmt)}")
    return request


@dataclass
class Outcome:
    content: str
    tool_calls: list[dict]
    done_reason: str
    stats: dict


# Ollama's answer when more requests wait than OLLAMA_MAX_QUEUE allows (server/sched.go), with status 503
BUSY = "server busy, please try again.  maximum pending requests exceeded"


class Service:
    """The stand-in's state: the store, the local library it pulls from, the runners, and the requests in flight
    (at most ``parallel`` generating and ``max_queue`` waiting, as Ollama's OLLAMA_NUM_PARALLEL / OLLAMA_MAX_QUEUE)."""

    def __init__(self, store: Store, library: Path, parallel: int = 2, max_queue: int = 512):
        self.store, self.library, self.runners = store, library, Runners(parallel)
        self.templates: dict[tuple, tuple] = {}
        self.hidden: dict[Path, tuple[str, ...]] = {}
        self.trained_context: dict[Path, int] = {}
        self.max_pending, self.pending = parallel + max_queue, 0

    def render(self, model: Model, messages: list[dict], tools: list[dict], override: str | None = None) -> str:
        """The prompt for ``messages`` by the model's Jinja chat template (or ``override``)."""
        if override is not None and not isinstance(override, str):
            raise OllamaError(400, "template must be a string")
        key = (model.gguf, model.template, override)
        if key not in self.templates:
            source = override or model.template or gguf.read_metadata(model.gguf).get("tokenizer.chat_template", "")
            if not source:
                raise OllamaError(400, f"{model.name} has no chat template")
            self.templates[key] = (compile_template(source), tools_in_system_message(source))
        template, system_tools = self.templates[key]
        return render_prompt(template, messages, tools, system_tools)

    def hidden_tokens(self, model: Model) -> tuple[str, ...]:
        """The GGUF's control tokens, never shown in an answer (Phi-4's tool-call markers are parsed instead)."""
        if model.gguf not in self.hidden:
            meta = gguf.read_metadata(model.gguf, arrays=True)
            self.hidden[model.gguf] = tuple(
                t for t, kind in zip(meta.get("tokenizer.ggml.tokens", []), meta.get("tokenizer.ggml.token_type", []))
                if kind == gguf.CONTROL and t not in (PHI4_START, PHI4_END))
        return self.hidden[model.gguf]

    async def run(self, model: Model, prompt: str, options: dict, fmt, keep_alive: float, tool_names: list[str] | None,
                  on_text=None, cancelled: threading.Event | None = None) -> Outcome:
        """Generate for ``prompt`` on the model's runner; ``on_text(piece)`` receives visible text as it streams.
        ``tool_names``: the offered tools (a call is held back and parsed), or None. Setting ``cancelled`` (the
        client went away) stops the generation at its next token. 503 when the queue is full."""
        self.check_queue()
        self.pending += 1
        try:
            return await self._run(model, prompt, options, fmt, keep_alive, tool_names, on_text,
                                   cancelled or threading.Event())
        finally:
            self.pending -= 1

    def check_queue(self) -> None:
        """503 (Ollama's words) when as many requests are in flight as the queue holds."""
        if self.pending >= self.max_pending:
            raise OllamaError(503, BUSY)

    async def _run(self, model: Model, prompt: str, options: dict, fmt, keep_alive: float,
                   tool_names: list[str] | None, on_text, cancelled: threading.Event) -> Outcome:
        start = time.perf_counter()
        runner, load_s = await asyncio.to_thread(self.runners.acquire, model, options, keep_alive)
        splitter = StreamSplitter(tool_names, hidden=self.hidden_tokens(model))
        loop, queue = asyncio.get_running_loop(), asyncio.Queue()
        collected: list[str] = []
        if on_text is None:  # not streaming: collect the visible text
            async def on_text(piece):
                collected.append(piece)
        request = {**llama_request(prompt, options, fmt), "stream": True}

        def deliver(chunk) -> bool | None:  # xllamacpp stops generating when the callback returns a truthy value
            loop.call_soon_threadsafe(queue.put_nowait, chunk)
            return cancelled.is_set() or None

        def generate():
            try:
                runner.server.handle_completions(request, deliver)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, None)

        worker = asyncio.ensure_future(asyncio.to_thread(generate))
        final, error = {}, None
        try:
            while (chunk := await queue.get()) is not None:
                if "error" in chunk:
                    error = chunk["error"]
                    continue
                piece = chunk["choices"][0]["text"] if chunk.get("choices") else ""
                visible = splitter.feed(piece)
                if visible:
                    await on_text(visible)
                if chunk.get("usage"):
                    final = chunk
            await worker
        finally:
            self.runners.release(runner)
            if keep_alive == 0:
                self.runners.unload(model.gguf)
        if error:
            message = error.get("message", str(error)) if isinstance(error, dict) else str(error)
            raise OllamaError(400 if "context" in message or "invalid" in message.lower() else 500, message)
        parsed = splitter.finish()
        rest, calls = parsed.content, parsed.calls or []
        if rest:
            await on_text(rest)
        timings, usage = final.get("timings", {}), final.get("usage", {})
        reason = final.get("choices", [{}])[0].get("finish_reason") or "stop"
        stats = {"total_duration": int((time.perf_counter() - start) * 1e9), "load_duration": int(load_s * 1e9),
                 "prompt_eval_count": usage.get("prompt_tokens", 0),
                 "prompt_eval_duration": int(timings.get("prompt_ms", 0) * 1e6),
                 "eval_count": usage.get("completion_tokens", 0), "eval_duration": int(timings.get("predicted_ms", 0) * 1e6)}
        return Outcome("".join(collected), calls, "length" if reason == "length" else "stop", stats)

    def options_for(self, model: Model, request_options) -> dict:
        """Ollama's defaults, the model's PARAMETERs and the request's options, with what a request may load bounded
        as Ollama bounds it: ``num_ctx`` to the context the model was trained with (llm/server.go), and here also
        ``num_thread`` to the CPUs this process may use and ``num_batch`` to the context."""
        options = {**DEFAULT_OPTIONS, **model.params, **check_options(request_options)}
        if model.gguf not in self.trained_context:
            meta = gguf.read_metadata(model.gguf)
            arch = meta.get("general.architecture", "")
            self.trained_context[model.gguf] = int(meta.get(f"{arch}.context_length") or options["num_ctx"])
        options["num_ctx"] = max(1, min(options["num_ctx"], self.trained_context[model.gguf]))
        if "num_thread" in options:
            options["num_thread"] = max(1, min(options["num_thread"], available_cpus()))
        if "num_batch" in options:
            options["num_batch"] = max(1, min(options["num_batch"], options["num_ctx"]))
        return options
