"""A local stand-in for the Ollama server: Ollama's REST API on llama.cpp. It is NOT Ollama.

The real Ollama server cannot be installed on the machines this lab's CI runs on
(docs/ollama-standin.md), so the local runtime serves the part of Ollama's API that
the official ``ollama`` client uses in notebook 02, on llama.cpp — the engine Ollama
itself runs — through the ``xllamacpp`` bindings. The docker runtime always runs the
official ``ollama/ollama`` image.

    python -m helpers.ollama_standin --models DIR --library DIR --port 11434

Implemented, after Ollama's API documentation: ``/api/tags``, ``/api/show`` (with
``model_info`` read from the GGUF), ``/api/pull`` (from a local library folder, with
streamed progress), ``/api/create`` (FROM + SYSTEM + PARAMETER -> a stored variant whose
system prompt and options apply), ``/api/copy``, ``/api/delete``, ``/api/generate``,
``/api/chat`` (tools; tool-call arguments as JSON objects), ``/api/ps``, ``/api/version``,
NDJSON streaming, ``options`` with Ollama's defaults and type checks, ``keep_alive``, and
the OpenAI-compatible ``/v1/chat/completions`` and ``/v1/models``. Errors are Ollama's
``{"error": "..."}`` with its status codes.

Differences from Ollama, on purpose: prompt templates are the GGUF's Jinja chat template
(Ollama converts them to Go templates); ``context`` (deprecated) is not returned; models
come from a local library folder instead of registry.ollama.ai.
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

from helpers import gguf_files
from helpers.paths import file_sha256
from helpers.chat_format import compile_template, openai_tool_calls, render_prompt, tools_in_system_message
from helpers.tool_formats import PHI4_END, PHI4_START, StreamSplitter

VERSION = "0.0.0-standin"

# Ollama's option names and types (api.Options), and the defaults Ollama documents for its Modelfile.
OPTION_TYPES = {
    "numa": bool, "num_ctx": int, "num_batch": int, "num_gpu": int, "main_gpu": int, "low_vram": bool,
    "vocab_only": bool, "use_mmap": bool, "use_mlock": bool, "num_thread": int, "num_keep": int, "seed": int,
    "num_predict": int, "top_k": int, "top_p": float, "min_p": float, "typical_p": float, "repeat_last_n": int,
    "temperature": float, "repeat_penalty": float, "presence_penalty": float, "frequency_penalty": float,
    "penalize_newline": bool, "stop": list, "mirostat": int, "mirostat_tau": float, "mirostat_eta": float,
    "tfs_z": float,
}
DEFAULT_OPTIONS = {"num_ctx": 4096, "num_predict": -1, "temperature": 0.8, "top_k": 40, "top_p": 0.9, "min_p": 0.0,
                   "repeat_penalty": 1.1, "repeat_last_n": 64, "seed": -1}
LOAD_OPTIONS = ("num_ctx", "num_thread", "num_batch")  # changing these reloads the runner, as in Ollama
TYPE_NAMES = {int: "integer", float: "float32", bool: "boolean", list: "array"}  # api.Options.FromMap's words
MEDIA = {"model": "application/vnd.ollama.image.model", "system": "application/vnd.ollama.image.system",
         "params": "application/vnd.ollama.image.params", "template": "application/vnd.ollama.image.template"}


class OllamaError(Exception):
    """An error answered as Ollama does: ``{"error": message}`` with an HTTP status."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def model_name(name: str) -> str:
    """Ollama's name normalisation: ``phi4-mini`` -> ``phi4-mini:latest``."""
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][\w.\-/]*(:[\w.\-]+)?", name or ""):
        raise OllamaError(400, f'invalid model name "{name}"' if name else "model is required")
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def _type_ok(kind: type, value) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind is list:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return kind is float or float(value).is_integer()  # JSON has one number type: 2.0 is an integer


def check_options(options) -> dict:
    """Options with Ollama's type checks (api.Options.FromMap): an unknown key is ignored (and logged); a
    wrong type is an error that Ollama's handlers answer with 500 (handleScheduleError's default branch,
    v0.18.2), so the stand-in does too."""
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise OllamaError(400, "options must be an object")
    checked = {}
    for key, value in options.items():
        kind = OPTION_TYPES.get(key)
        if kind is None:
            print(f"warning: invalid option provided: {key}", flush=True)
            continue
        if kind is list and isinstance(value, str):  # Ollama accepts a single stop string too
            value = [value]
        if not _type_ok(kind, value):
            raise OllamaError(500, f'option "{key}" must be of type {TYPE_NAMES[kind]}')
        checked[key] = int(value) if kind is int else value
    return checked


def keep_alive_seconds(value) -> float:
    """Ollama's keep_alive: a duration ("5m", "30s", "1h"), seconds, 0 (unload now) or negative (forever)."""
    if value is None:
        return 300.0
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    match = re.fullmatch(r"(-?\d+(?:\.\d+)?)(ms|s|m|h)?", str(value).strip())
    if not match:
        raise OllamaError(400, f"time: invalid duration \"{value}\"")
    return float(match.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[match.group(2)]


# ----------------------------------------------------------------------------- the model store

@dataclass
class Model:
    """A stored model: its manifest resolved to a GGUF file, system prompt, parameters and template."""

    name: str
    digest: str
    gguf: Path
    size: int
    modified_at: str
    system: str = ""
    params: dict = field(default_factory=dict)
    template: str = ""
    parent: str = ""


class Store:
    """Models on disk in Ollama's layout: ``blobs/sha256-<hex>`` and ``manifests/<name>/<tag>``."""

    def __init__(self, root: Path):
        self.root = root
        (root / "blobs").mkdir(parents=True, exist_ok=True)
        (root / "manifests").mkdir(parents=True, exist_ok=True)

    def blob(self, digest: str) -> Path:
        return self.root / "blobs" / digest.replace(":", "-")

    def put_bytes(self, data: bytes, media: str) -> dict:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if not self.blob(digest).exists():
            self.blob(digest).write_bytes(data)
        return {"mediaType": media, "digest": digest, "size": len(data)}

    def _manifest_path(self, name: str) -> Path:
        repo, tag = model_name(name).rsplit(":", 1)
        return self.root / "manifests" / repo / tag

    def manifest(self, name: str) -> dict | None:
        path = self._manifest_path(name)
        return json.loads(path.read_text()) if path.exists() else None

    def write_manifest(self, name: str, layers: list[dict]) -> None:
        config = self.put_bytes(json.dumps({"model_format": "gguf", "layers": [l["digest"] for l in layers]}).encode(),
                                "application/vnd.docker.container.image.v1+json")
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                    "config": config, "layers": layers}
        path = self._manifest_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(manifest))

    def names(self) -> list[str]:
        return sorted(f"{p.parent.relative_to(self.root / 'manifests')}:{p.name}"
                      for p in (self.root / "manifests").glob("**/*") if p.is_file())

    def model(self, name: str) -> Model:
        name = model_name(name)
        manifest = self.manifest(name)
        if manifest is None:
            raise OllamaError(404, f'model "{name}" not found, try pulling it first')
        layers = {layer["mediaType"]: layer for layer in manifest["layers"]}
        text = {kind: self.blob(layers[media]["digest"]).read_text() for kind, media in MEDIA.items()
                if kind != "model" and media in layers}
        path = self._manifest_path(name)
        raw = path.read_bytes()
        gguf = self.blob(layers[MEDIA["model"]]["digest"])
        return Model(name=name, digest=hashlib.sha256(raw).hexdigest(), gguf=gguf,
                     size=sum(layer["size"] for layer in manifest["layers"]),
                     modified_at=datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).isoformat(),
                     system=text.get("system", ""), params=json.loads(text.get("params", "{}")),
                     template=text.get("template", ""), parent=manifest.get("parent", ""))

    def delete(self, name: str) -> None:
        path = self._manifest_path(name)
        if not path.exists():
            raise OllamaError(404, f"model '{model_name(name)}' not found")
        path.unlink()
        used = set()
        for other in self.names():  # Ollama prunes the layers no manifest uses any more
            manifest = self.manifest(other)
            used |= {layer["digest"] for layer in manifest["layers"]} | {manifest["config"]["digest"]}
        for blob in (self.root / "blobs").iterdir():
            if blob.name.replace("-", ":", 1) not in used:
                blob.unlink()


# ----------------------------------------------------------------------------- llama.cpp runners

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
    """GGUFs loaded on demand, unloaded after keep_alive; reloaded when a load option changes."""

    def __init__(self, parallel: int = 2):
        self.parallel = parallel
        self.loaded: dict[Path, Runner] = {}
        self.lock = threading.Lock()

    def acquire(self, model: Model, options: dict, keep_alive: float) -> tuple[Runner, float]:
        """The runner for ``model`` with ``options``' load settings; returns it and the seconds spent loading."""
        import xllamacpp

        load = {key: options[key] for key in LOAD_OPTIONS if key in options}
        with self.lock:
            self.expire()
            runner = self.loaded.get(model.gguf)
            if runner and runner.load != load and runner.busy == 0:
                del self.loaded[model.gguf]
                runner = None
            start = time.perf_counter()
            if runner is None:
                params = xllamacpp.CommonParams()
                params.model.path = str(model.gguf)
                # Ollama gives every parallel slot the full num_ctx
                params.n_ctx = load.get("num_ctx", DEFAULT_OPTIONS["num_ctx"]) * self.parallel
                params.n_parallel = self.parallel
                params.cpuparams.n_threads = params.cpuparams_batch.n_threads = load.get("num_thread", 2)
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
        with self.lock:
            runner.busy -= 1
            self.expire()

    def unload(self, gguf: Path) -> None:
        with self.lock:
            self.loaded.pop(gguf, None)

    def expire(self) -> None:
        for path, runner in list(self.loaded.items()):
            if runner.busy == 0 and runner.expires <= time.time():
                del self.loaded[path]


# ----------------------------------------------------------------------------- generation

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


class Service:
    """The stand-in's state: the store, the local library it pulls from, and the runners."""

    def __init__(self, store: Store, library: Path, parallel: int = 2):
        self.store, self.library, self.runners = store, library, Runners(parallel)
        self.templates: dict[tuple, tuple] = {}
        self.hidden: dict[Path, tuple[str, ...]] = {}

    def render(self, model: Model, messages: list[dict], tools: list[dict], override: str | None = None) -> str:
        """The prompt for ``messages`` by the model's Jinja chat template (or ``override``)."""
        key = (model.gguf, model.template, override)
        if key not in self.templates:
            source = override or model.template or gguf_files.read_metadata(model.gguf).get("tokenizer.chat_template", "")
            if not source:
                raise OllamaError(400, f"{model.name} has no chat template")
            self.templates[key] = (compile_template(source), tools_in_system_message(source))
        template, system_tools = self.templates[key]
        return render_prompt(template, messages, tools, system_tools)

    def hidden_tokens(self, model: Model) -> tuple[str, ...]:
        """The GGUF's control tokens, never shown in an answer (Phi-4's tool-call markers are parsed instead)."""
        if model.gguf not in self.hidden:
            meta = gguf_files.read_metadata(model.gguf, arrays=True)
            self.hidden[model.gguf] = tuple(
                t for t, kind in zip(meta.get("tokenizer.ggml.tokens", []), meta.get("tokenizer.ggml.token_type", []))
                if kind == gguf_files.CONTROL and t not in (PHI4_START, PHI4_END))
        return self.hidden[model.gguf]

    async def run(self, model: Model, prompt: str, options: dict, fmt, keep_alive: float, tool_names: list[str] | None,
                  on_text=None) -> Outcome:
        """Generate for ``prompt`` on the model's runner; ``on_text(piece)`` receives visible text as it streams.
        ``tool_names``: the offered tools (a call is held back and parsed), or None."""
        start = time.perf_counter()
        runner, load_s = await asyncio.to_thread(self.runners.acquire, model, options, keep_alive)
        splitter = StreamSplitter(tool_names, hidden=self.hidden_tokens(model))
        loop, queue = asyncio.get_running_loop(), asyncio.Queue()
        collected: list[str] = []
        if on_text is None:  # not streaming: collect the visible text
            async def on_text(piece):
                collected.append(piece)
        request = {**llama_request(prompt, options, fmt), "stream": True}

        def deliver(chunk) -> None:  # must return None: xllamacpp stops streaming when a callback returns a truthy value
            loop.call_soon_threadsafe(queue.put_nowait, chunk)

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
        return {**DEFAULT_OPTIONS, **model.params, **check_options(request_options)}


# ----------------------------------------------------------------------------- the HTTP API

def _messages(raw, system: str) -> list[dict]:
    """Ollama chat messages -> template messages (tool-call arguments as objects); the model's
    SYSTEM comes first unless the conversation has its own system message."""
    if not isinstance(raw, list) or not all(isinstance(m, dict) for m in raw):
        raise OllamaError(400, "messages must be a list of objects")
    out = []
    for m in raw:
        role, content = m.get("role"), m.get("content") or ""
        if role not in ("system", "user", "assistant", "tool") or not isinstance(content, str):
            raise OllamaError(400, f"invalid message: role {role!r} with content of type {type(content).__name__}")
        entry = {"role": role, "content": content}
        if m.get("tool_calls"):
            calls = m["tool_calls"]
            if not isinstance(calls, list) or not all(isinstance(c, dict) and isinstance(c.get("function"), dict)
                                                      for c in calls):
                raise OllamaError(400, "tool_calls must be a list of {function: {name, arguments}}")
            entry["tool_calls"] = [{"function": {"name": c["function"].get("name", ""),
                                                 "arguments": c["function"].get("arguments") or {}}} for c in calls]
        out.append(entry)
    if system and not any(m["role"] == "system" for m in out):
        out.insert(0, {"role": "system", "content": system})
    return out


def _tools(raw) -> list[dict]:
    """Tools as Ollama decodes them into its Go structs (api.Tool): known fields only, in struct order —
    which is what its templates then render, whatever order the client sent."""
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(t, dict) and isinstance(t.get("function"), dict)
                                            and isinstance(t["function"].get("name"), str) for t in raw):
        raise OllamaError(400, "tools must be a list of {type: function, function: {name, description, parameters}}")
    out = []
    for tool in raw:
        function, params = tool["function"], tool["function"].get("parameters") or {}
        if not isinstance(params, dict):
            raise OllamaError(400, "tool parameters must be a JSON Schema object")
        ordered = {key: params[key] for key in ("type", "$defs", "items", "required") if params.get(key)}
        ordered["properties"] = params.get("properties") or {}
        spec = {"name": function["name"], **({"description": function["description"]} if function.get("description") else {}),
                "parameters": ordered}
        out.append({"type": tool.get("type", "function"), "function": spec})
    return out


async def _body(request: Request) -> dict:
    raw = await request.body()
    if not raw.strip():
        raise OllamaError(400, "missing request body")
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise OllamaError(400, f"invalid JSON: {err}") from err
    if not isinstance(body, dict):
        raise OllamaError(400, "request body must be a JSON object")
    return body


def _ndjson(stream):
    async def lines():
        async for item in stream:
            yield json.dumps(item) + "\n"
    return StreamingResponse(lines(), media_type="application/x-ndjson")


def _pieces(produce):
    """Run ``produce(on_text)`` and yield ("text", piece) as it streams, then ("done", result) or ("error", err)."""
    queue: asyncio.Queue = asyncio.Queue()

    async def on_text(piece):
        await queue.put(("text", piece))

    async def runner():
        try:
            await queue.put(("done", await produce(on_text)))
        except OllamaError as err:
            await queue.put(("error", err))

    async def events():
        task = asyncio.ensure_future(runner())
        try:
            while True:
                kind, value = await queue.get()
                yield kind, value
                if kind != "text":
                    break
        finally:
            await task
    return events()


def create_app(service: Service) -> FastAPI:
    app = FastAPI(title="Ollama API stand-in on llama.cpp (not Ollama)")

    @app.exception_handler(OllamaError)
    async def _ollama_error(request, err: OllamaError):
        return JSONResponse({"error": err.message}, status_code=err.status)

    @app.exception_handler(Exception)
    async def _unexpected(request, err: Exception):
        return JSONResponse({"error": f"{type(err).__name__}: {err}"}, status_code=500)

    @app.get("/", response_class=PlainTextResponse)
    @app.head("/", response_class=PlainTextResponse)
    async def root():
        return "Ollama API stand-in (llama.cpp) is running"

    @app.get("/api/version")
    async def version():
        return {"version": VERSION}

    @app.get("/api/tags")
    async def tags():
        models = [service.store.model(name) for name in service.store.names()]
        return {"models": [{"name": m.name, "model": m.name, "modified_at": m.modified_at, "size": m.size,
                            "digest": m.digest, "details": gguf_files.describe(m.gguf)} for m in models]}

    @app.post("/api/show")
    async def show(request: Request):
        body = await _body(request)
        model = service.store.model(body.get("model") or body.get("name") or "")
        meta = gguf_files.read_metadata(model.gguf, arrays=bool(body.get("verbose")))
        if not body.get("verbose"):
            meta = {k: ([] if k.startswith("tokenizer.ggml.") and isinstance(v, int) and k.split(".")[-1] in
                        ("tokens", "token_type", "merges") else v) for k, v in meta.items()}
        template = model.template or meta.get("tokenizer.chat_template", "")
        params = "\n".join(f"{key:<30} {json.dumps(v)}" for key, value in model.params.items()
                           for v in (value if isinstance(value, list) else [value]))
        modelfile = "\n".join(["# Modelfile generated by the Ollama stand-in", f"FROM {model.gguf}",
                               f'TEMPLATE """{template}"""',
                               *([f'SYSTEM """{model.system}"""'] if model.system else []),
                               *[f"PARAMETER {line}" for line in params.splitlines()]])
        capabilities = ["completion"] + (["tools"] if "tool" in template else [])
        return {"modelfile": modelfile, "parameters": params, "template": template, "system": model.system,
                "details": gguf_files.describe(model.gguf),
                "model_info": {k: v for k, v in meta.items() if k != "tokenizer.chat_template"},
                "capabilities": capabilities, "modified_at": model.modified_at}

    @app.api_route("/api/delete", methods=["DELETE"])
    async def delete(request: Request):
        body = await _body(request)
        service.store.delete(body.get("model") or body.get("name") or "")
        return JSONResponse(None, status_code=200)

    @app.post("/api/copy")
    async def copy(request: Request):
        body = await _body(request)
        source = service.store.manifest(model_name(body.get("source") or ""))
        if source is None:
            raise OllamaError(404, f"model '{body.get('source')}' not found")
        service.store.write_manifest(model_name(body.get("destination") or ""), source["layers"])
        return JSONResponse(None, status_code=200)

    @app.get("/api/ps")
    async def ps():
        service.runners.expire()
        out = []
        for runner in service.runners.loaded.values():
            try:
                model = service.store.model(runner.model)
            except OllamaError:
                continue
            expires = datetime.fromtimestamp(min(runner.expires, time.time() + 10 * 365 * 86400), timezone.utc)
            out.append({"name": model.name, "model": model.name, "size": runner.gguf.stat().st_size,
                        "digest": model.digest, "details": gguf_files.describe(model.gguf),
                        "expires_at": expires.isoformat(), "size_vram": 0,
                        "context_length": runner.load.get("num_ctx", DEFAULT_OPTIONS["num_ctx"])})
        return {"models": out}

    @app.post("/api/pull")
    async def pull(request: Request):
        body = await _body(request)
        name = model_name(body.get("model") or body.get("name") or "")
        repo, tag = name.rsplit(":", 1)
        source = service.library / repo / tag
        if not (source / "model.gguf").exists():
            raise OllamaError(404, f"pull model manifest: file does not exist (no {repo}:{tag} in the local library "
                                   f"{service.library})")

        async def statuses():
            yield {"status": "pulling manifest"}
            gguf = source / "model.gguf"
            digest = "sha256:" + await asyncio.to_thread(file_sha256, gguf)
            total, done = gguf.stat().st_size, 0
            target = service.store.blob(digest)
            if not target.exists():
                partial = target.with_suffix(".partial")
                with open(gguf, "rb") as src, open(partial, "wb") as dst:
                    while chunk := src.read(1 << 20):
                        dst.write(chunk)
                        done += len(chunk)
                        yield {"status": f"pulling {digest[7:19]}", "digest": digest, "total": total, "completed": done}
                partial.rename(target)
            yield {"status": f"pulling {digest[7:19]}", "digest": digest, "total": total, "completed": total}
            yield {"status": "verifying sha256 digest"}
            if "sha256:" + await asyncio.to_thread(file_sha256, target) != digest:
                yield {"error": "digest mismatch"}
                return
            layers = [{"mediaType": MEDIA["model"], "digest": digest, "size": total}]
            for kind, filename in (("params", "params.json"), ("system", "system.txt"), ("template", "template.jinja")):
                if (source / filename).exists():
                    layers.append(service.store.put_bytes((source / filename).read_bytes(), MEDIA[kind]))
            yield {"status": "writing manifest"}
            service.store.write_manifest(name, layers)
            yield {"status": "success"}

        if body.get("stream", True):
            return _ndjson(statuses())
        last = {}
        async for last in statuses():
            if "error" in last:
                raise OllamaError(500, last["error"])
        return last

    @app.post("/api/create")
    async def create(request: Request):
        body = await _body(request)
        name = model_name(body.get("model") or body.get("name") or "")
        base_name = body.get("from")
        if not base_name:
            raise OllamaError(400, "neither 'from' nor 'files' was specified")
        base = service.store.model(base_name)
        params = {**base.params, **check_options(body.get("parameters"))}
        system = body.get("system", base.system)
        template = body.get("template", base.template)
        if not all(isinstance(v, str) for v in (system, template)):
            raise OllamaError(400, "system and template must be strings")
        if template:
            compile_template(template)  # a broken template fails here, not at the first chat
        events = [{"status": "using existing layer " + layer["digest"]}
                  for layer in service.store.manifest(base.name)["layers"] if layer["mediaType"] == MEDIA["model"]]
        layers = [next(layer for layer in service.store.manifest(base.name)["layers"] if layer["mediaType"] == MEDIA["model"])]
        for kind, value in (("params", json.dumps(params) if params else ""), ("system", system), ("template", template)):
            if value:
                layer = service.store.put_bytes(value.encode(), MEDIA[kind])
                layers.append(layer)
                events.append({"status": f"creating new layer {layer['digest']}" if kind != "params"
                               else f"creating {kind} layer"})
        events += [{"status": "writing manifest"}]
        service.store.write_manifest(name, layers)
        events.append({"status": "success"})
        if body.get("stream", True):
            async def replay():
                for event in events:
                    yield event
            return _ndjson(replay())
        return events[-1]

    async def _generate_like(body: dict, chat: bool):
        """Shared by /api/chat and /api/generate: resolve, render, run; streaming or not."""
        model = service.store.model(body.get("model") or "")
        options = service.options_for(model, body.get("options"))
        keep = keep_alive_seconds(body.get("keep_alive"))
        stream = body.get("stream", True)
        if chat:
            tools = _tools(body.get("tools"))
            messages = _messages(body.get("messages", []), model.system)
            empty = not any(m["role"] != "system" for m in messages)
        else:
            tools, prompt = [], body.get("prompt") or ""
            if not isinstance(prompt, str):
                raise OllamaError(400, "prompt must be a string")
            system = body.get("system", model.system)
            messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
            empty = not prompt
        base = {"model": model.name, "created_at": now_iso()}
        if empty:  # load (or, with keep_alive 0, unload) the model
            if keep == 0:
                service.runners.unload(model.gguf)
                reason = "unload"
            else:
                runner, _ = await asyncio.to_thread(service.runners.acquire, model, options, keep)
                service.runners.release(runner)
                reason = "load"
            done = {**base, **({"message": {"role": "assistant", "content": ""}} if chat else {"response": ""}),
                    "done_reason": reason, "done": True}
            return done
        if body.get("raw") and not chat:
            prompt_text = body.get("prompt")
        else:
            prompt_text = service.render(model, messages, tools, body.get("template"))
        tool_names = [t["function"]["name"] for t in tools] or None
        fmt = body.get("format")

        def pack(text: str = "", calls=None) -> dict:
            if chat:
                message = {"role": "assistant", "content": text}
                if calls:
                    message["tool_calls"] = [{"function": {"name": c["name"], "arguments": c["arguments"]}} for c in calls]
                return {**base, "message": message}
            return {**base, "response": text}

        if not stream:
            outcome = await service.run(model, prompt_text, options, fmt, keep, tool_names)
            return {**pack(outcome.content, outcome.tool_calls), "done_reason": outcome.done_reason, "done": True,
                    **outcome.stats}

        async def chunks():
            async for kind, value in _pieces(lambda on_text: service.run(model, prompt_text, options, fmt, keep,
                                                                         tool_names, on_text)):
                if kind == "text":
                    yield {**pack(value), "done": False}
                elif kind == "error":
                    yield {"error": value.message}
                else:
                    if value.tool_calls:
                        yield {**pack("", value.tool_calls), "done": False}
                    yield {**pack(""), "done_reason": value.done_reason, "done": True, **value.stats}
        return _ndjson(chunks())

    @app.post("/api/chat")
    async def chat(request: Request):
        return await _generate_like(await _body(request), chat=True)

    @app.post("/api/generate")
    async def generate(request: Request):
        return await _generate_like(await _body(request), chat=False)

    # -- Ollama's OpenAI-compatible endpoints

    @app.get("/v1/models")
    async def v1_models():
        return {"object": "list", "data": [{"id": name, "object": "model", "created": 0, "owned_by": "library"}
                                           for name in service.store.names()]}

    @app.post("/v1/chat/completions")
    async def v1_chat(request: Request):
        try:
            body = await _body(request)
            model = service.store.model(body.get("model") or "")
            options = {"temperature": body.get("temperature", 1.0), "top_p": body.get("top_p", 1.0)}
            options = {k: v for k, v in options.items() if v is not None}
            for ours, theirs in (("num_predict", "max_tokens"), ("seed", "seed"), ("stop", "stop")):
                if body.get(theirs) is not None:
                    options[ours] = body[theirs]
            options = service.options_for(model, options)
            tools = _tools(body.get("tools"))
            messages = _messages([_from_openai(m) for m in body.get("messages") or []], model.system)
            prompt_text = service.render(model, messages, tools)
            tool_names = [t["function"]["name"] for t in tools] or None
        except OllamaError as err:
            return JSONResponse({"error": {"message": err.message, "type": "invalid_request_error", "param": None,
                                           "code": None}}, status_code=err.status)
        rid, created = f"chatcmpl-{uuid.uuid4().int % 1000}", int(time.time())
        if not body.get("stream"):
            outcome = await service.run(model, prompt_text, options, None, 300.0, tool_names)
            message = {"role": "assistant", "content": outcome.content}
            if outcome.tool_calls:
                message["tool_calls"] = openai_tool_calls(outcome.tool_calls)
            finish = "tool_calls" if outcome.tool_calls else outcome.done_reason
            return {"id": rid, "object": "chat.completion", "created": created, "model": model.name,
                    "system_fingerprint": "fp_ollama", "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                    "usage": {"prompt_tokens": outcome.stats["prompt_eval_count"],
                              "completion_tokens": outcome.stats["eval_count"],
                              "total_tokens": outcome.stats["prompt_eval_count"] + outcome.stats["eval_count"]}}

        async def sse():
            def chunk(delta, finish=None):
                return "data: " + json.dumps({"id": rid, "object": "chat.completion.chunk", "created": created,
                                              "model": model.name, "system_fingerprint": "fp_ollama",
                                              "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}) + "\n\n"
            async for kind, value in _pieces(lambda on_text: service.run(model, prompt_text, options, None, 300.0,
                                                                         tool_names, on_text)):
                if kind == "text":
                    yield chunk({"role": "assistant", "content": value})
                elif kind == "error":
                    yield "data: " + json.dumps({"error": {"message": value.message}}) + "\n\n"
                else:
                    if value.tool_calls:
                        yield chunk({"role": "assistant", "tool_calls": openai_tool_calls(value.tool_calls)})
                    yield chunk({}, "tool_calls" if value.tool_calls else value.done_reason)
            yield "data: [DONE]\n\n"
        return StreamingResponse(sse(), media_type="text/event-stream")

    return app


def _from_openai(message) -> dict:
    """An OpenAI chat message as an Ollama one (tool-call arguments parsed into objects)."""
    if not isinstance(message, dict):
        raise OllamaError(400, "messages must be objects")
    out = {"role": message.get("role"), "content": message.get("content") or ""}
    if message.get("tool_calls"):
        calls = []
        for call in message["tool_calls"]:
            function = (call or {}).get("function") or {}
            arguments = function.get("arguments") or "{}"
            try:
                arguments = json.loads(arguments) if isinstance(arguments, str) else arguments
            except json.JSONDecodeError as err:
                raise OllamaError(400, f"tool call arguments are not JSON: {err}") from err
            calls.append({"function": {"name": function.get("name", ""), "arguments": arguments}})
        out["tool_calls"] = calls
    return out


def publish(library: Path, name: str, gguf: Path, params: dict | None = None, system: str = "") -> Path:
    """Put a GGUF into the local library as ``name`` (``repo:tag``), for ``/api/pull`` to fetch."""
    repo, tag = model_name(name).rsplit(":", 1)
    folder = library / repo / tag
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "model.gguf"
    if not target.exists() or not target.samefile(gguf):
        target.unlink(missing_ok=True)
        try:  # a hard link: no second copy, and unlike a symlink it resolves inside a container's mount
            os.link(gguf, target)
        except OSError:  # another filesystem
            shutil.copy2(gguf, target)
    if params:
        (folder / "params.json").write_text(json.dumps(params))
    if system:
        (folder / "system.txt").write_text(system)
    return folder


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, required=True, help="where pulled/created models are stored")
    parser.add_argument("--library", type=Path, required=True, help="a local folder that /api/pull fetches from")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=11434)
    parser.add_argument("--parallel", type=int, default=2, help="requests served at once per model (OLLAMA_NUM_PARALLEL)")
    args = parser.parse_args(argv)
    print(f"Ollama API stand-in on llama.cpp (not Ollama), models in {args.models}, library {args.library}", flush=True)
    uvicorn.run(create_app(Service(Store(args.models), args.library, args.parallel)), host=args.host, port=args.port,
                log_level="warning")


if __name__ == "__main__":
    main()
