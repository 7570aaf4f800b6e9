"""The seed's framework table, regenerated from this machine's measurements, with its guesses beside them."""
from __future__ import annotations

from helpers.backends import BACKENDS

# The seed tutorial's "Vergleichsrahmenwerk" (translated), none of it measured (docs/seed-tutorial.md, flaw 13).
SEED_TABLE = {
    "setup effort": {"vLLM": "medium", "Ollama": "easy", "ONNX Runtime": "complex"},
    "GPU tok/s (1 stream)": {"vLLM": "~25", "Ollama": "~20", "ONNX Runtime": "~15"},
    "CPU tok/s (1 stream)": {"vLLM": "~8", "Ollama": "~12", "ONNX Runtime": "~15"},
    "memory": {"vLLM": "8-12 GB", "Ollama": "6-10 GB", "ONNX Runtime": "4-8 GB"},
    "API": {"vLLM": "OpenAI-compatible", "Ollama": "custom REST", "ONNX Runtime": "custom FastAPI"},
    "function calling": {"vLLM": "native", "Ollama": "supported", "ONNX Runtime": "custom implementation"},
    "quantisation": {"vLLM": "AWQ, GPTQ", "Ollama": "Q4_0, Q5_1, Q8_0", "ONNX Runtime": "ONNX quantisation"},
    "edge suitability": {"vLLM": "good", "Ollama": "excellent", "ONNX Runtime": "outstanding"},
}
TOOL_FAMILIES = ("tool_call", "no_tool", "tool_result")


def measurements(runtime: str, ready_s: dict, memory_mb: dict, bench: dict, accuracy: dict,
                 devices: dict) -> dict[str, dict]:
    """Per backend, what ``framework_table`` needs, from notebook 05's measurements (``bench``: its load tests,
    ``helpers.measure.load_test``; ``devices``: what each backend reported it computed on, ``Backend.device``)."""
    return {name: {"ready_s": ready_s[name], "install": BACKENDS[name].install[runtime], "memory_mb": memory_mb[name],
                   "device": devices[name],
                   "tok_s": next(r for r in bench[name]["concurrency"] if r["concurrency"] == 1)["output tok/s"],
                   "tool_accuracy": sum(accuracy[name].get(f, 0) for f in TOOL_FAMILIES) / len(TOOL_FAMILIES),
                   "tool_streaming": BACKENDS[name].streams_tool_calls}
            for name in ready_s}


def figures(bench: dict, read_per_token: dict[str, int], bandwidth: float) -> list[dict]:
    """Per backend (or backend and variant): single-stream tok/s, throughput and ITL p99 at the highest concurrency,
    the highest request rate served within the objectives — beside the bound this machine's read ``bandwidth``
    (bytes/s) puts on one stream given the bytes of weights a decode step reads (``read_per_token``:
    helpers.measure.memory_bound). "–" where a sweep measured one stream only, or no request rates."""
    from helpers.measure.load_test import sustainable_rate

    top_level = max(r["concurrency"] for sweeps in bench.values() for r in sweeps["concurrency"])
    rows = []
    for name, sweeps in bench.items():
        levels = {r["concurrency"]: r for r in sweeps["concurrency"]}
        one, top = levels[1], levels.get(top_level, {})
        bound = bandwidth / read_per_token[name]
        rows.append({"backend": name, "1 stream tok/s": one["output tok/s"],
                     f"tok/s at {top_level}": top.get("output tok/s", "–"),
                     f"ITL p99 ms at {top_level}": top.get("ITL p99 ms", "–"),
                     "req/s within objectives": sustainable_rate(sweeps["rate"]) if sweeps.get("rate") else "–",
                     "GB read per token": round(read_per_token[name] / 1e9, 3),
                     "bound tok/s": round(bound, 1), "1 stream / bound": f"{one['output tok/s'] / bound:.0%}"})
    return rows


def _edge(memory_mb: float | None) -> str:
    if memory_mb is None:
        return "not measured"
    return f"{'good' if memory_mb < 1000 else 'fair' if memory_mb < 4000 else 'poor'} ({memory_mb:,.0f} MB resident)"


def framework_table(measured: dict[str, dict]) -> list[dict]:
    """Rows of (feature, per backend: measured value and the seed's guess).

    ``measured[backend]`` holds: ready_s, install (what the first start needed), memory_mb, device (what the
    backend reported it ran on: its tok/s go in that row), tok_s (single stream), tool_accuracy, tool_streaming.
    """
    rows = []
    for feature in SEED_TABLE:
        row = {"feature": feature}
        for backend, m in measured.items():
            value = {
                "setup effort": f"{m.get('install', '')}; ready in {m['ready_s']:.1f} s" if "ready_s" in m else None,
                "GPU tok/s (1 stream)": (f"{m['tok_s']:.0f} ({m['device']})" if "gpu" in m.get("device", "")
                                         else f"not measured (ran on the {m.get('device', 'cpu')})"),
                "CPU tok/s (1 stream)": (f"{m['tok_s']:.0f}" if m.get("device") == "cpu"
                                         else f"not measured (ran on the {m.get('device', 'gpu')})"),
                "memory": f"{m['memory_mb']:,.0f} MB" if m.get("memory_mb") is not None else None,
                "API": BACKENDS[backend].facts["API"],
                "function calling": (f"{m['tool_accuracy']:.0%} of tool tasks"
                                     + ("" if m.get("tool_streaming", True) else "; not streamed")
                                     if "tool_accuracy" in m else None),
                "quantisation": BACKENDS[backend].facts["quantisation"],
                "edge suitability": _edge(m.get("memory_mb")),
            }[feature]
            seed = BACKENDS[backend].seed
            guess = f" (seed: {SEED_TABLE[feature][seed.column]})" if seed else ""
            row[backend] = f"{value or 'not measured'}{guess}"
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------- plots

def plot_concurrency(bench: dict[str, list[dict]]):
    """Against concurrency, per backend: output tokens/s, and p50 (solid) / p99 (dashed) TTFT and inter-token latency.
    A server that batches holds its tokens/s per user as users join; one that queues divides it."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    for i, (name, rows) in enumerate(bench.items()):
        color, levels = f"C{i}", [r["concurrency"] for r in rows]
        axes[0].plot(levels, [r["output_tok_s"] for r in rows], marker="o", color=color, label=name)
        for ax, metric in zip(axes[1:], ("ttft_ms", "itl_ms")):
            for stat, style in (("p50", "-"), ("p99", "--")):
                ax.plot(levels, [r[metric][stat] for r in rows], style, marker="o", color=color,
                        label=f"{name} {stat}")
    for ax, title, unit in zip(axes, ("throughput", "time to first token", "inter-token latency"),
                               ("output tokens/s", "ms", "ms")):
        ax.set(xlabel="concurrent requests", ylabel=unit, title=title, xscale="log", xticks=levels)
        ax.set_xticks(levels, [str(level) for level in levels])
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_load(load: dict[str, dict[str, list[dict]]]):
    """``load_test`` rows per backend: output tokens/s, TTFT p99 and ITL p99 against concurrency (closed loop), and,
    where request rates were swept, goodput against the offered rate (open loop; the dotted line: every request
    within the objectives)."""
    import matplotlib.pyplot as plt

    rated = any(sweeps.get("rate") for sweeps in load.values())
    fig, axes = plt.subplots(1, 4 if rated else 3, figsize=(18 if rated else 14, 3.8))
    for i, (name, sweeps) in enumerate(load.items()):
        color, rows = f"C{i}", sweeps["concurrency"]
        levels = [r["concurrency"] for r in rows]
        for ax, key in zip(axes[:3], ("output tok/s", "TTFT p99 ms", "ITL p99 ms")):
            ax.plot(levels, [r[key] for r in rows], marker="o", color=color, label=name)
        if rated:
            offered = [r["offered req/s"] for r in sweeps["rate"]]
            axes[3].plot(offered, [r["goodput req/s"] for r in sweeps["rate"]], marker="o", color=color, label=name)
    if rated:
        top = max(r["offered req/s"] for sweeps in load.values() for r in sweeps["rate"])
        axes[3].plot([0, top], [0, top], ":", color="grey", label="all within objectives")
    for ax, title, unit in zip(axes, ("throughput", "time to first token, p99", "inter-token latency, p99",
                                      "goodput"), ("output tokens/s", "ms", "ms", "requests/s within objectives")):
        ax.set(title=title, ylabel=unit, xlabel="offered requests/s" if title == "goodput" else "concurrent requests")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_accuracy(accuracy: dict[str, dict[str, float]]):
    """Accuracy per task family per backend (the reference included)."""
    import matplotlib.pyplot as plt
    import numpy as np

    families = [f for f in next(iter(accuracy.values())) if f != "all"]
    fig, ax = plt.subplots(figsize=(12, 3.8))
    width = 0.8 / len(accuracy)
    for i, (name, acc) in enumerate(accuracy.items()):
        ax.bar(np.arange(len(families)) + i * width, [acc[f] for f in families], width, label=name)
    ax.set_xticks(np.arange(len(families)) + 0.4 - width / 2, families)
    ax.set(ylabel="accuracy", ylim=(0, 1.05), title="graded task suite: accuracy per family")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_memory(memory_mb: dict[str, float]):
    """Resident memory per backend (process tree or container)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.barh(list(memory_mb), list(memory_mb.values()))
    ax.set(xlabel="MB resident", title="memory per backend")
    fig.tight_layout()
    return fig
