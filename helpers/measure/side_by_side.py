"""``slm-lab-bench``: every backend side by side on ``vllm bench serve``, the figures of notebook 05's table as
medians of ``--repeat`` rounds. Each round starts every backend in turn, alone on the machine, and sends it
notebook 05's load (a concurrency sweep and a request-rate sweep to saturation); every other round takes them in
reverse order, so a machine that slows down over the run slows each of them alike. The SLM Engine is measured on
its fp32 and its int4 build, llama.cpp on the card's GGUF. Prints the table and saves every round's rows under
runs/ (docs/results.md: the targets the figures are held against).

    slm-lab-bench --model qwen2.5-coder-0.5b --repeat 3
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

from helpers import backends, models
from helpers.formats.markdown import markdown_table
from helpers.measure import comparison, load_test, memory_bound
from helpers.system import machine
from helpers.system.paths import RUNS

ENGINE = "onnx-engine"


def entries(card) -> dict[str, tuple[str, dict]]:
    """Label -> (backend, settings changed for it): every backend of the registry as the card serves it, and the
    engine once more on the card's int4 build where it serves another (its fp32 one)."""
    out = {name: (name, {}) for name in backends.BACKENDS}
    int4 = backends.get(ENGINE).int4_beside(card) if ENGINE in out else None
    if int4:
        out[f"{ENGINE} {int4}"] = (ENGINE, {"variant": int4})
    return out


def one_round(card, runtime_name: str, chosen: dict[str, tuple[str, dict]], levels, tool, env,
              reverse: bool = False) -> dict[str, dict]:
    """Label -> {"concurrency": rows, "rate": rows} (in ``chosen``'s order): each entry started alone, loaded,
    stopped; ``reverse``: taken from the last."""
    budget, bench = card.budget, {}
    for label, (name, options) in (reversed if reverse else list)(list(chosen.items())):
        backend, served = backends.get(name), card.with_backend_options(name, **options) if options else card
        models.require(served, backend.needs, env)
        with backend.start_alone(served, runtime_name) as server:
            bench[label] = {
                "concurrency": tool.concurrency_sweep(server.base_url, levels, budget.load_input_tokens,
                                                      budget.bench_tokens),
                "rate": tool.rate_sweep(server.base_url, budget.rate_start, budget.load_input_tokens,
                                        budget.bench_tokens)}
        print(markdown_table([{"backend": label, **r} for r in bench[label]["concurrency"]]), flush=True)
    return {label: bench[label] for label in chosen}


def medians(tables: list[list[dict]]) -> list[dict]:
    """Rows of ``tables`` (one figures table per round, same backends in the same order) with each number the
    median of the rounds, and beside it how far the rounds spread (``min-max``) where they differ."""
    out = []
    for rows in zip(*tables):
        merged = {}
        for key, first in rows[0].items():
            values = [row[key] for row in rows]
            if isinstance(first, (int, float)) and not isinstance(first, bool):
                merged[key] = round(statistics.median(values), 3)
                if min(values) != max(values):
                    merged[f"{key} (range)"] = f"{min(values):g}-{max(values):g}"
            else:
                merged[key] = first if len(set(map(str, values))) == 1 else "varied"
        if "bound tok/s" in merged:  # of the medians, not a median of ratios
            merged["1 stream / bound"] = f"{merged['1 stream tok/s'] / merged['bound tok/s']:.0%}"
        out.append(merged)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=models.DEFAULT, choices=sorted(models.MODELS))
    parser.add_argument("--runtime", default="local", choices=("local", "docker"))
    parser.add_argument("--repeat", type=int, default=3, help="rounds; each figure is their median")
    parser.add_argument("--levels", default="1,8", help="concurrency levels, comma-separated")
    parser.add_argument("--backends", nargs="+", help="labels to measure (default: all; see the first line printed)")
    args = parser.parse_args(argv)
    card, env = models.get(args.model), machine.check_environment()
    chosen = entries(card)
    print("measuring:", ", ".join(chosen))
    chosen = {label: entry for label, entry in chosen.items() if not args.backends or label in args.backends}
    tool, levels = load_test.Bench(args.runtime, card), tuple(int(n) for n in args.levels.split(","))
    bandwidth = memory_bound.read_bandwidth(env.cpus)
    read = {label: memory_bound.bytes_per_token(card.with_backend_options(name, **options), name)
            for label, (name, options) in chosen.items()}
    rounds, tables = [], []
    for i in range(args.repeat):
        print(f"round {i + 1} of {args.repeat}", flush=True)
        rounds.append(one_round(card, args.runtime, chosen, levels, tool, env, reverse=i % 2 == 1))
        tables.append(comparison.figures(rounds[-1], read, bandwidth))
    table = medians(tables)
    print(f"{card.title}, {args.runtime} runtime, {machine.cpu_model()}, {env.cpus} cores; read bandwidth "
          f"{bandwidth / 1e9:.1f} GB/s; medians of {args.repeat} rounds")
    print(markdown_table(table))
    path = RUNS / f"side-by-side-{card.key}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"model": card.key, "runtime": args.runtime, "date": time.strftime("%Y-%m-%d"),
                                "machine": {"cpu": machine.cpu_model(), "cpus": env.cpus, "ram_gb": env.ram_gb},
                                "bandwidth_gb_s": round(bandwidth / 1e9, 2), "tool": load_test.TOOL,
                                "objectives_ms": load_test.OBJECTIVES_MS, "medians": table, "rounds": rounds},
                               indent=1))
    print("saved", path)


if __name__ == "__main__":
    main()
