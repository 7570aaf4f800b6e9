"""``slm-lab-prefill``: the SLM Engine's ``--prefill-chunk`` under load. For each chunk size the engine serves the
model and ``vllm bench serve`` sends notebook 05's load (its prompt and answer lengths) at one concurrency: a prompt
chunk is a forward pass of its own between decode steps, so a bigger chunk pauses every running stream longer (ITL
p99) and a smaller one takes more steps to read a prompt (TTFT); ``--prefill-budget`` reads several chunks per step
(every waiting prompt first, as vLLM does). Prints the table and saves it under runs/; the engine's defaults come
from it (docs/results.md).

    slm-lab-prefill --model qwen2.5-coder-0.5b --chunks 16,32,64,128
"""
from __future__ import annotations

import argparse
import json
import time

from helpers import backends, models
from helpers.formats.markdown import markdown_table
from helpers.measure import load_test
from helpers.system.paths import RUNS

ENGINE = "onnx-engine"


def measure(card, runtime_name: str, chunks: list[int], concurrency: int, per_level: int,
            budget: int | None = None) -> list[dict]:
    """One row per chunk size: the tool's figures at ``concurrency``, ``per_level`` times as many requests;
    ``budget``: the engine's ``--prefill-budget`` (default: one chunk per step)."""
    backend, tool, rows = backends.get(ENGINE), load_test.Bench(runtime_name, card), []
    for chunk in chunks:
        flags = ["--prefill-chunk", str(chunk)] + (["--prefill-budget", str(budget)] if budget else [])
        with backend.start_alone(card, runtime_name, flags) as server:
            rows += [{"prefill chunk": chunk, "prefill budget": budget or chunk, **row} for row in tool.concurrency_sweep(
                server.base_url, (concurrency,), card.budget.load_input_tokens, card.budget.bench_tokens, per_level)]
        print(markdown_table(rows[-1:]), flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=models.DEFAULT, choices=sorted(models.MODELS))
    parser.add_argument("--runtime", default="local", choices=("local", "docker"))
    parser.add_argument("--chunks", default="16,32,64,128", help="prefill chunk sizes, comma-separated")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--per-level", type=int, default=3, help="requests per unit of concurrency")
    parser.add_argument("--prefill-budget", type=int, help="the engine's prompt tokens per step (default: one chunk)")
    args = parser.parse_args(argv)
    card = models.get(args.model)
    rows = measure(card, args.runtime, [int(c) for c in args.chunks.split(",")], args.concurrency, args.per_level,
                   args.prefill_budget)
    print(markdown_table(rows))
    path = RUNS / f"prefill-chunk-{card.key}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"model": card.key, "runtime": args.runtime, "date": time.strftime("%Y-%m-%d"),
                                "tool": load_test.TOOL, "objectives_ms": load_test.OBJECTIVES_MS, "rows": rows},
                               indent=1))
    print("saved", path)


if __name__ == "__main__":
    main()
