"""Benchmark: the SLM Engine over HTTP against a bare onnxruntime-genai generator loop.

Same model folder, same prompt, greedy, EOS suppressed (``min_tokens``), one stream.
Each side is timed for whole requests of 1 and of N generated tokens (the bare loop:
generator creation, prompt, tokens; the engine: an HTTP request from the client until
its streamed answer ends). Decode tokens/s is ``(N - 1) / (T(N) - T(1))``: the per-request
costs (HTTP, templating, prompt processing) cancel, leaving the cost of each further
token, as an inter-token-latency figure does. End-to-end tokens/s ``N / T(N)`` is shown
too. The engine's target: decode at >= 0.9x the bare loop.

Decoding one token reads every weight once, so memory bandwidth bounds a single stream:
the benchmark measures this machine's read bandwidth (as many threads as the engine runs,
each summing its part of a large array) and prints bandwidth / bytes read per token beside
the measured rates.

    slm-engine-bench [--model phi4-nano] [--tokens 256] [--runs 7]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np


def bare_seconds(model, ids: list[int], tokens: int) -> float:
    """Seconds for a plain og.Generator loop to produce exactly ``tokens`` greedy tokens."""
    import onnxruntime_genai as og

    start = time.perf_counter()
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(ids) + tokens, min_length=len(ids) + tokens, do_sample=False)
    generator = og.Generator(model, params)
    generator.append_tokens(np.array([ids], dtype=np.int32))
    while not generator.is_done():
        generator.generate_next_token()
        generator.get_next_tokens()
    return time.perf_counter() - start


def http_seconds(client, base_url: str, model: str, messages: list[dict], tokens: int) -> float:
    """Seconds from sending a streaming request for exactly ``tokens`` tokens to its last chunk."""
    body = {"model": model, "messages": messages, "temperature": 0, "max_tokens": tokens, "min_tokens": tokens,
            "stream": True, "stream_options": {"include_usage": True}}
    usage = {}
    start = time.perf_counter()
    with client.stream("POST", base_url + "/v1/chat/completions", json=body, timeout=120) as response:
        for line in response.iter_lines():
            if line.startswith("data: {") and (chunk := json.loads(line[6:])).get("usage"):
                usage = chunk["usage"]
    assert usage.get("completion_tokens") == tokens, usage
    return time.perf_counter() - start


def rates(seconds_for, tokens: int, runs: int) -> dict:
    """Median request times for 1 and ``tokens`` tokens (after a warm-up), and the rates they give."""
    one = statistics.median([seconds_for(1) for _ in range(runs + 1)][1:])
    many = statistics.median([seconds_for(tokens) for _ in range(runs + 1)][1:])
    return {"t1_ms": one * 1e3, "tn_ms": many * 1e3, "decode": (tokens - 1) / (many - one), "end_to_end": tokens / many}


def main() -> None:
    import httpx

    from helpers import backends, models
    from helpers.deploy import runtimes
    from helpers.measure import memory_bound, onnx_parity
    from helpers.servers.engine.engine import Engine
    from helpers.system.cpus import available_cpus
    from helpers.tasks import curriculum

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="phi4-nano", choices=sorted(models.MODELS), help="whose engine variant")
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    card = models.get(args.model)
    engine = backends.get("onnx-engine")
    folder = engine.prepare(card, "local")
    messages = [{"role": "user", "content": curriculum.SEED_TRAIN_QUESTION}]
    ids = Engine(folder, card.served_name, max_batch=1).render(messages, None)
    model = onnx_parity.load_genai(folder)  # the engine's thread count, for a fair ratio
    bare = rates(lambda n: bare_seconds(model, ids, n), args.tokens, args.runs)
    spec = engine.spec(card, "local", model_path=folder)
    with runtimes.LocalRuntime().start(spec, timeout=60, progress=False) as server, \
            httpx.Client() as client:  # one keep-alive connection, as a real client holds
        http = rates(lambda n: http_seconds(client, server.base_url, card.served_name, messages, n), args.tokens, args.runs)
    print(f"model {folder}\nprompt {len(ids)} tokens; requests of 1 and {args.tokens} tokens, median of {args.runs} "
          f"runs after a warm-up; one stream")
    print(f"{'':28}{'T(1) ms':>9}{'T(N) ms':>9}{'decode tok/s':>14}{'end-to-end tok/s':>18}")
    for name, r in (("bare onnxruntime-genai loop", bare), ("SLM Engine, HTTP + SSE", http)):
        print(f"{name:<28}{r['t1_ms']:9.2f}{r['tn_ms']:9.2f}{r['decode']:14.1f}{r['end_to_end']:18.1f}")
    print(f"decode ratio engine / bare: {http['decode'] / bare['decode']:.3f}   "
          f"end-to-end ratio: {http['end_to_end'] / bare['end_to_end']:.3f}")
    threads = available_cpus()
    bandwidth, weights = memory_bound.read_bandwidth(threads), memory_bound.onnx_bytes_per_token(folder)
    print(f"read bandwidth {bandwidth / 1e9:.1f} GB/s ({threads} threads, as the engine runs); {weights / 1e9:.3f} GB "
          f"of weights read per token; bound {bandwidth / weights:.1f} tok/s; engine decode at "
          f"{http['decode'] * weights / bandwidth:.0%} of it, the bare loop at {bare['decode'] * weights / bandwidth:.0%}")

