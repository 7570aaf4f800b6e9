"""The lab's own streaming load generator, kept for what the maintained tool (``vllm bench serve``,
helpers.measure.load_test) is not made for: the dashboard's live **Run benchmark** button, which measures in the
kernel within seconds (the tool takes ~8 s to import) on the suite's chat prompts, and its plot.

Streams chat completions at fixed concurrency levels and measures, per request, time to first token (TTFT),
inter-token latency (ITL), end-to-end latency and output tokens (counted with the model's tokenizer, never
words); per level, request throughput and output tokens/s. Warm-up requests are excluded. ``trivial_server``
streams with no model behind it: what a load generator measures there is its own overhead (notebook 05 measures
the tool with it).
"""
from __future__ import annotations

import asyncio
import json
import statistics
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from helpers.formats import prometheus


@dataclass
class Sample:
    """One streamed request."""

    ttft: float
    e2e: float
    output_tokens: int
    itls: list[float] = field(default_factory=list)
    ok: bool = True
    error: str = ""


async def _one(client, url: str, model: str, messages: list[dict], max_tokens: int, count) -> Sample:
    body = {"model": model, "messages": messages, "max_tokens": max_tokens, "temperature": 0, "stream": True}
    start = time.perf_counter()
    first, last, pieces, itls = None, None, [], []
    try:
        async with client.stream("POST", url, json=body, timeout=300) as response:
            if response.status_code != 200:
                return Sample(0, 0, 0, ok=False, error=f"HTTP {response.status_code}: {(await response.aread())[:200]!r}")
            async for line in response.aiter_lines():
                if not line.startswith("data: {"):
                    continue
                choices = json.loads(line[6:]).get("choices") or []
                text = (choices[0].get("delta") or {}).get("content") if choices else None
                if not text:
                    continue
                now = time.perf_counter()
                if first is None:
                    first = now
                else:  # a chunk of n tokens after a gap: n inter-token latencies of gap / n
                    n = max(count(text), 1)
                    itls += [(now - last) / n] * n
                last = now
                pieces.append(text)
    except Exception as err:  # a failed request is counted, not fatal
        return Sample(0, 0, 0, ok=False, error=f"{type(err).__name__}: {err}")
    end = time.perf_counter()
    return Sample(ttft=(first or end) - start, e2e=end - start, output_tokens=count("".join(pieces)), itls=itls)


async def _level(base_url: str, model: str, prompts: list[list[dict]], concurrency: int, requests: int,
                 warmup: int, max_tokens: int, count, api_key: str | None) -> tuple[list[Sample], float, dict | None]:
    """The level's samples, its duration, and the engine's /metrics when the measured requests began."""
    import httpx

    url = base_url.rstrip("/") + "/v1/chat/completions"
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    async with httpx.AsyncClient(limits=limits, headers=headers) as client:
        for i in range(warmup):
            await _one(client, url, model, prompts[i % len(prompts)], max_tokens, count)
        before = _engine_metrics(base_url)
        gate = asyncio.Semaphore(concurrency)

        async def bounded(i):
            async with gate:
                return await _one(client, url, model, prompts[i % len(prompts)], max_tokens, count)

        start = time.perf_counter()
        samples = await asyncio.gather(*(bounded(i) for i in range(requests)))
        return list(samples), time.perf_counter() - start, before


def percentiles(values: list[float]) -> dict:
    """mean, p50, p90, p99 (ms) of ``values`` (seconds)."""
    if not values:
        return {"mean": None, "p50": None, "p90": None, "p99": None}
    ordered = sorted(values)

    def pick(q):
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]
    return {"mean": round(statistics.fmean(values) * 1e3, 3), "p50": round(pick(0.5) * 1e3, 3),
            "p90": round(pick(0.9) * 1e3, 3), "p99": round(pick(0.99) * 1e3, 3)}


def summarize(samples: list[Sample], seconds: float, concurrency: int) -> dict:
    ok = [s for s in samples if s.ok]
    tokens = sum(s.output_tokens for s in ok)
    return {"concurrency": concurrency, "requests": len(samples), "failed": len(samples) - len(ok),
            "duration_s": round(seconds, 3), "request_throughput": round(len(ok) / seconds, 3),
            "output_tokens": tokens, "output_tok_s": round(tokens / seconds, 1),
            "ttft_ms": percentiles([s.ttft for s in ok]), "itl_ms": percentiles([x for s in ok for x in s.itls]),
            "e2e_ms": percentiles([s.e2e for s in ok]),
            "errors": sorted({s.error for s in samples if not s.ok})[:3]}


def sweep(base_url: str, model: str, prompts: list[list[dict]], count, levels=(1, 2, 4, 8), requests_per_level: int = 8,
          warmup: int = 2, max_tokens: int = 64, progress: bool = True, api_key: str | None = None) -> list[dict]:
    """The benchmark at each concurrency level; ``count(text)`` is the tokenizer's token count; ``api_key`` for a
    server that asks for one."""
    from tqdm.auto import tqdm

    rows = []
    for level in tqdm(levels, desc=f"benchmark {model}", disable=not progress):
        samples, seconds, before = _run(_level(base_url, model, prompts, level, max(requests_per_level, level), warmup,
                                               max_tokens, count, api_key))
        rows.append(summarize(samples, seconds, level))
        if before is not None:  # the SLM Engine says how many sequences its decode steps held
            rows[-1]["batching"] = batching(before, _engine_metrics(base_url))
    return rows


def batching(before: dict[str, float], after: dict[str, float]) -> dict:
    """What the SLM Engine's decode steps held between two scrapes of its /metrics: steps, mean sequences per
    step (continuous batching at work when above 1), and the mean wait before a request's prompt pass."""
    steps = after["slm_engine_batch_size_count"] - before.get("slm_engine_batch_size_count", 0)
    rows = after["slm_engine_batch_size_sum"] - before.get("slm_engine_batch_size_sum", 0)
    requests = after["slm_engine_requests_total"] - before.get("slm_engine_requests_total", 0)
    waited = after["slm_engine_queue_seconds_total"] - before.get("slm_engine_queue_seconds_total", 0)
    return {"decode steps": int(steps), "sequences per step": round(rows / steps, 2) if steps else None,
            "mean queue wait ms": round(1e3 * waited / requests, 1) if requests else None}


def _engine_metrics(base_url: str) -> dict | None:
    """The SLM Engine's /metrics, parsed; None for a server that does not report its batching."""
    import httpx

    try:
        values = prometheus.parse(httpx.get(base_url.rstrip("/") + "/metrics", timeout=10).text)
    except httpx.HTTPError:
        return None
    return values if "slm_engine_batch_size_count" in values else None


def _run(coroutine):
    """Run ``coroutine`` to completion, also from inside Jupyter's running event loop (in a thread)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def token_counter(tokenizer_file: Path):
    """``count(text)``: tokens of ``text`` by the model's own tokenizer (tokenizer.json)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    return lambda text: len(tokenizer.encode(text, add_special_tokens=False).ids)


# ----------------------------------------------------------------------------- the harness's own overhead

@contextmanager
def trivial_server(tokens: int = 64, split: bool = False):
    """An OpenAI-compatible server that streams ``tokens`` one-word chunks at once, with no model:
    benchmarking it measures the harness itself (HTTP, SSE parsing, token counting). ``split``: each event is
    sent in two writes, cut after ``data:`` (as a proxy or the network may deliver it)."""
    import asyncio
    import threading

    import uvicorn
    from fastapi import FastAPI
    from fastapi.responses import StreamingResponse

    from helpers.deploy.runtimes import free_port

    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def completions():
        async def events():
            for i in range(tokens):
                event = "data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": f" w{i % 10}"}}]}) + "\n\n"
                if split:
                    yield event[:5]
                    await asyncio.sleep(0.005)  # a write of its own
                    event = event[5:]
                yield event
            yield "data: [DONE]\n\n"
        return StreamingResponse(events(), media_type="text/event-stream")

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(5)
