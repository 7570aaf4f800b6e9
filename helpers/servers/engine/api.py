"""The engine's HTTP API (FastAPI): OpenAI's chat and completion endpoints, /reasoning, /health, /metrics."""
from __future__ import annotations

import asyncio
import hmac
import json
import time
import uuid

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from helpers.formats.chat_format import openai_tool_calls
from helpers.servers.engine.engine import Engine, EngineError, Job, Sampling
from helpers.servers.engine.schemas import ChatRequest, CompletionRequest, Message, ReasoningRequest

# The seed's /reasoning task types, as system prompts (those phi4-nano was trained with).
TASK_SYSTEMS = {
    "reasoning": "You are a mathematical reasoning assistant. Show your work step by step.",
    "math": "You are a mathematical reasoning assistant. Show your work step by step.",
    "coding": "You are a coding assistant.",
}


class AsciiJSON(JSONResponse):
    """JSON with every non-ASCII character escaped: an error may quote what the client sent, lone surrogates included."""

    def render(self, content) -> bytes:
        return json.dumps(content, ensure_ascii=True, separators=(",", ":")).encode()


def _error(status: int, message: str, kind: str = "invalid_request_error", param: str | None = None) -> JSONResponse:
    return AsciiJSON({"error": {"message": message, "type": kind, "param": param, "code": status}}, status_code=status)


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


MAX_BODY_BYTES = 1 << 20  # a request body beyond this is 413: a full context of text and tools fits many times


class BodyLimit:
    """ASGI middleware: a request body larger than ``limit`` bytes is answered 413 before any of it is parsed
    (by its Content-Length, or while it arrives when it has none)."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length", b"0")
        if not length.isdigit() or int(length) > self.limit:
            return await _error(413, f"the request body is larger than {self.limit} bytes")(scope, receive, send)
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise EngineError(413, f"the request body is larger than {self.limit} bytes")
            return message
        return await self.app(scope, limited, send)


class BearerKey:
    """ASGI middleware: paths under ``guarded`` need ``Authorization: Bearer <key>`` (401 otherwise). Pure ASGI, not
    Starlette's BaseHTTPMiddleware, which would hide a client's disconnect from the endpoints."""

    def __init__(self, app, key: str, guarded: tuple[str, ...]):
        self.app, self.expected, self.guarded = app, f"Bearer {key}".encode(), guarded

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"].startswith(self.guarded):
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                response = _error(401, "invalid or missing API key (Authorization: Bearer <key>)", "authentication_error")
                return await response(scope, receive, send)
        return await self.app(scope, receive, send)


def create_app(engine: Engine, max_body_bytes: int = MAX_BODY_BYTES, api_key: str | None = None) -> FastAPI:
    """The API over ``engine``. ``api_key``: when set, /v1/* and /reasoning need ``Authorization: Bearer <key>``
    (as vLLM's ``--api-key``); /health and /metrics stay open for load balancers and scrapers."""
    app = FastAPI(title="SLM Engine (ONNX Runtime)")
    app.add_middleware(BodyLimit, limit=max_body_bytes)
    if api_key:
        app.add_middleware(BearerKey, key=api_key, guarded=("/v1/", "/reasoning"))
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
        if not engine.decoder.is_alive():  # nothing would ever answer: say so, for the load balancer and the lab
            return JSONResponse({"status": "error", "ready": False, "error": "the decoding thread has stopped"},
                                status_code=503)
        return {"status": "ok", "ready": True, "model": engine.served_name, "variant": engine.folder.name,
                "provider": engine.provider, "onnxruntime": engine.ort_version,
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
        return "\n".join(lines + _histogram("slm_engine_batch_size", "sequences per decode step", engine.batch_sizes)
                         + _histogram("slm_engine_prefill_tokens", "prompt tokens per prefill step (chunked)",
                                      engine.prefill_sizes)) + "\n"

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatRequest, request: Request):
        if body.model != engine.served_name:
            raise EngineError(404, f"The model `{body.model}` does not exist.", "not_found_error", "model")
        tools = [t.model_dump() for t in body.tools or []]
        choice = body.tool_choice
        if isinstance(choice, dict) or choice == "required":
            raise EngineError(400, "tool_choice: only 'auto' and 'none' are supported by this engine", param="tool_choice")
        use_tools = tools if choice != "none" else None
        ids = await asyncio.to_thread(engine.render, _messages_for_template(body.messages), use_tools)
        max_tokens = engine.check_length(ids, body.max_completion_tokens or body.max_tokens)
        sampling = Sampling(max_tokens, body.temperature, body.top_p, body.top_k, body.seed, body.stop or [],
                            max_tokens if body.ignore_eos else body.min_tokens)
        events = _start(engine, ids, sampling, [t["function"]["name"] for t in use_tools] if use_tools else None,
                        engine.chat_hidden)
        rid, now = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        if body.stream:
            usage = bool(body.stream_options and body.stream_options.include_usage)
            return StreamingResponse(_sse(events, rid, now, engine.served_name, usage, request),
                                     media_type="text/event-stream")
        text, end = await _collect(events, request)
        message = {"role": "assistant", "content": text if (text or not end["tool_calls"]) else None}
        if end["tool_calls"]:
            message["tool_calls"] = openai_tool_calls(end["tool_calls"])
        return {"id": rid, "object": "chat.completion", "created": now, "model": engine.served_name,
                "choices": [{"index": 0, "message": message, "finish_reason": end["finish"], "logprobs": None}],
                "usage": _usage(end)}

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request):
        if body.model != engine.served_name:
            raise EngineError(404, f"The model `{body.model}` does not exist.", "not_found_error", "model")
        ids = await asyncio.to_thread(engine.encode, body.prompt, "prompt")
        max_tokens = engine.check_length(ids, body.max_tokens)
        started = _start(engine, ids, Sampling(max_tokens, body.temperature, stops=body.stop or []),
                         hidden=engine.specials if body.skip_special_tokens else ())
        text, end = await _collect(started, request)
        return {"id": f"cmpl-{uuid.uuid4().hex[:24]}", "object": "text_completion", "created": int(time.time()),
                "model": engine.served_name, "usage": _usage(end),
                "choices": [{"index": 0, "text": text, "finish_reason": end["finish"], "logprobs": None}]}

    @app.post("/reasoning")
    async def reasoning(body: ReasoningRequest, request: Request):
        messages = [{"role": "system", "content": TASK_SYSTEMS[body.task_type]}, {"role": "user", "content": body.prompt}]
        ids = await asyncio.to_thread(engine.render, messages, None)
        max_tokens = engine.check_length(ids, body.max_length)
        start = time.perf_counter()
        text, end = await _collect(_start(engine, ids, Sampling(max_tokens, body.temperature), hidden=engine.specials),
                                   request)
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


async def _collect(started, request: Request) -> tuple[str, dict]:
    """The whole answer of a request that is not streamed; a client that goes away first frees its slot."""
    events, job = started
    pieces = []
    try:
        while True:
            try:
                event = await asyncio.wait_for(_next(events), timeout=0.25)
            except asyncio.TimeoutError:
                if await request.is_disconnected():
                    raise EngineError(499, "the client closed the request") from None
                continue
            if event["type"] == "end":
                return "".join(pieces), event
            pieces.append(event["text"])
    finally:
        job.cancelled.set()  # a dropped request stops generating


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

    # The role rides on the first token, as in vLLM: a role chunk sent before the prompt pass would read as a
    # first token to a client timing TTFT (and put the prompt pass into the first inter-token gap).
    role = {"role": "assistant"}
    try:
        while True:
            try:
                event = await _next(events)
            except EngineError as err:
                yield f"data: {json.dumps({'error': {'message': err.message, 'type': err.kind}})}\n\n"
                break
            if event["type"] == "text":
                yield chunk({**role, "content": event["text"]})
                role = {}
                continue
            if role:
                yield chunk({**role, "content": ""})
            for call in openai_tool_calls(event["tool_calls"]):
                yield chunk({"tool_calls": [call]})
            yield chunk({}, event["finish"])
            if include_usage:
                yield chunk({}, usage=_usage(event))
            break
        yield "data: [DONE]\n\n"
    finally:
        job.cancelled.set()  # the client went away: stop generating
