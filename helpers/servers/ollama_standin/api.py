"""The stand-in's HTTP API (FastAPI): Ollama's native endpoints and its OpenAI-compatible ones."""
from __future__ import annotations

import asyncio
import fnmatch
import ipaddress
import json
import socket
import threading
import time
import traceback
import uuid
from datetime import datetime, timezone

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

from helpers.formats import gguf
from helpers.formats.chat_format import compile_template, openai_tool_calls
from helpers.servers.ollama_standin.errors import OllamaError, now_iso
from helpers.servers.ollama_standin.options import DEFAULT_OPTIONS, check_options, keep_alive_seconds
from helpers.servers.ollama_standin.runners import Service
from helpers.servers.ollama_standin.store import MEDIA, inside, model_name, name_parts
from helpers.system.paths import file_sha256

VERSION = "0.0.0-standin"


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
    try:  # JSON may carry a lone UTF-16 surrogate ("\ud800"): not Unicode text, and llama.cpp cannot parse it
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as err:
        raise OllamaError(400, "invalid JSON: a lone UTF-16 surrogate is not Unicode text") from err
    return body


def _ndjson(stream):
    async def lines():
        async for item in stream:
            yield json.dumps(item) + "\n"
    return StreamingResponse(lines(), media_type="application/x-ndjson")


def _pieces(produce):
    """Run ``produce(on_text, cancelled)`` and yield ("text", piece) as it streams, then ("done", result) or ("error",
    err). A client that goes away closes the stream, which cancels the generation."""
    queue: asyncio.Queue = asyncio.Queue()
    cancelled = threading.Event()

    async def on_text(piece):
        await queue.put(("text", piece))

    async def runner():
        try:
            await queue.put(("done", await produce(on_text, cancelled)))
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
            cancelled.set()
            await task
    return events()


async def _finish(request: Request, produce):
    """``produce(None, cancelled)`` to its end, cancelled when the client goes away before it (a request that is
    not streamed would otherwise hold its slot until the whole answer is made for nobody)."""
    cancelled = threading.Event()
    task = asyncio.ensure_future(produce(None, cancelled))
    while not task.done():
        await asyncio.wait({task}, timeout=0.25)
        if not task.done() and await request.is_disconnected():
            cancelled.set()
    return task.result()


# Origins Ollama allows by default (envconfig.AllowedOrigins), OLLAMA_ORIGINS adds to them
DEFAULT_ORIGINS = tuple(f"{scheme}://{host}{port}" for host in ("localhost", "127.0.0.1", "0.0.0.0")
                        for scheme in ("http", "https") for port in ("", ":*")) + (
    "app://*", "file://*", "tauri://*", "vscode-webview://*", "vscode-file://*")


def origin_allowed(origin: str, extra: tuple[str, ...] = ()) -> bool:
    """Whether a browser page from ``origin`` may call the server (Ollama's CORS rule: its list, wildcards allowed)."""
    return any(fnmatch.fnmatchcase(origin, allowed) for allowed in DEFAULT_ORIGINS + extra)


def host_allowed(host: str) -> bool:
    """Whether a request addressed to ``host`` (its Host header) may reach a server that listens on loopback:
    an IP that is loopback, private or unspecified, ``localhost``, this machine's name, or a name under .localhost,
    .local or .internal (Ollama's allowedHostsMiddleware) — a DNS-rebinding page's host is none of them."""
    if host.startswith("["):  # an IPv6 address, with or without a port
        name = host[1:host.find("]")] if "]" in host else host[1:]
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    name = name.lower()
    try:
        address = ipaddress.ip_address(name)
        return address.is_loopback or address.is_private or address.is_unspecified
    except ValueError:
        pass
    return name in ("", "localhost", socket.gethostname().lower()) or name.endswith((".localhost", ".local", ".internal"))


class LocalOnly:
    """ASGI middleware, as Ollama guards its API: a request from a browser page whose Origin is not allowed is 403
    (a page elsewhere cannot drive the server, even with a body a browser sends without asking, e.g. text/plain);
    so is one addressed to a host that is not local while the server listens on loopback (DNS rebinding). Pure
    ASGI, not Starlette's BaseHTTPMiddleware, which would hide a client's disconnect from the endpoints."""

    def __init__(self, app, origins: tuple[str, ...], check_host: bool):
        self.app, self.origins, self.check_host = app, origins, check_host

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        origin = headers.get("origin")
        if (origin and not origin_allowed(origin, self.origins)) or (
                self.check_host and not host_allowed(headers.get("host", ""))):
            return await PlainTextResponse("", status_code=403)(scope, receive, send)
        if not origin:
            return await self.app(scope, receive, send)

        async def allow(message):
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []),
                                      (b"access-control-allow-origin", origin.encode("latin-1"))]
            await send(message)
        return await self.app(scope, receive, allow)


def create_app(service: Service, listen: str = "127.0.0.1", origins: tuple[str, ...] = ()) -> FastAPI:
    """The API. ``listen``: the address the server is bound to (on loopback, requests must name a local host);
    ``origins``: browser origins allowed beside Ollama's defaults (``OLLAMA_ORIGINS``)."""
    app = FastAPI(title="Ollama API stand-in on llama.cpp (not Ollama)")
    on_loopback = listen in ("localhost", "") or ipaddress.ip_address(listen.strip("[]")).is_loopback

    app.add_middleware(LocalOnly, origins=origins, check_host=on_loopback)

    @app.exception_handler(OllamaError)
    async def _ollama_error(request, err: OllamaError):
        return JSONResponse({"error": err.message}, status_code=err.status)

    @app.exception_handler(Exception)
    async def _unexpected(request, err: Exception):  # the reason goes to the log, not to the client
        traceback.print_exception(err)
        return JSONResponse({"error": "internal server error"}, status_code=500)

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
                            "digest": m.digest, "details": gguf.describe(m.gguf)} for m in models]}

    @app.post("/api/show")
    async def show(request: Request):
        body = await _body(request)
        model = service.store.model(body.get("model") or body.get("name") or "")
        meta = gguf.read_metadata(model.gguf, arrays=bool(body.get("verbose")))
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
                "details": gguf.describe(model.gguf),
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
        source_name, destination = model_name(body.get("source") or ""), model_name(body.get("destination") or "")
        source = service.store.manifest(source_name)
        if source is None:
            raise OllamaError(404, f"model '{source_name}' not found")
        service.store.write_manifest(destination, source["layers"])
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
                        "digest": model.digest, "details": gguf.describe(model.gguf),
                        "expires_at": expires.isoformat(), "size_vram": 0,
                        "context_length": runner.load.get("num_ctx", DEFAULT_OPTIONS["num_ctx"])})
        return {"models": out}

    @app.post("/api/pull")
    async def pull(request: Request):
        body = await _body(request)
        name = model_name(body.get("model") or body.get("name") or "")
        source = inside(service.library, *name_parts(name))
        if not (source / "model.gguf").exists():
            raise OllamaError(404, f"pull model manifest: file does not exist (no {name} in the stand-in's library)")

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

    async def _generate_like(request: Request, body: dict, chat: bool):
        """Shared by /api/chat and /api/generate: resolve, render, run; streaming or not."""
        model = service.store.model(body.get("model") or "")
        service.check_queue()  # a full queue is 503, before anything is loaded or streamed (as Ollama answers it)
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

        def produce(on_text, cancelled):
            return service.run(model, prompt_text, options, fmt, keep, tool_names, on_text, cancelled)

        if not stream:
            outcome = await _finish(request, produce)
            return {**pack(outcome.content, outcome.tool_calls), "done_reason": outcome.done_reason, "done": True,
                    **outcome.stats}

        async def chunks():
            async for kind, value in _pieces(produce):
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
        return await _generate_like(request, await _body(request), chat=True)

    @app.post("/api/generate")
    async def generate(request: Request):
        return await _generate_like(request, await _body(request), chat=False)

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
            messages = _messages([part for m in body.get("messages") or [] for part in _from_openai(m)], model.system)
            prompt_text = service.render(model, messages, tools)
            tool_names = [t["function"]["name"] for t in tools] or None
        except OllamaError as err:
            return JSONResponse({"error": {"message": err.message, "type": "invalid_request_error", "param": None,
                                           "code": None}}, status_code=err.status)
        rid, created = f"chatcmpl-{uuid.uuid4().int % 1000}", int(time.time())

        def produce(on_text, cancelled):
            return service.run(model, prompt_text, options, None, 300.0, tool_names, on_text, cancelled)

        if not body.get("stream"):
            outcome = await _finish(request, produce)
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
            async for kind, value in _pieces(produce):
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


def _from_openai(message) -> list[dict]:
    """An OpenAI chat message as Ollama ones (tool-call arguments parsed into objects). Content given as a list
    of parts becomes one message per text part, as Ollama's OpenAI layer does; this stand-in serves no images."""
    if not isinstance(message, dict):
        raise OllamaError(400, "messages must be objects")
    content = message.get("content") or ""
    if isinstance(content, list):
        if not all(isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)
                   for part in content):
            raise OllamaError(400, "content parts must be text parts: this stand-in serves no images")
        return [{"role": message.get("role"), "content": part["text"]} for part in content]
    out = {"role": message.get("role"), "content": content}
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
    return [out]
