"""Ollama in the lab: the local library the stand-in pulls from, the seed's Modelfile variants,
and small helpers around the official ``ollama`` client."""
from __future__ import annotations

from pathlib import Path

from helpers import gguf_files
from helpers.curriculum import CODE_SYSTEMS, MATH_SYSTEMS
from helpers.paths import cache_dir

SERVED = "phi4-mini"  # Ollama's name for Phi-4-mini-instruct (needs Ollama >= 0.5.13)

# The seed's two variants (FROM phi4-mini + SYSTEM + PARAMETER). Their system prompts are the ones
# phi4-nano was trained with: the seed's longer wording would only be unknown text to it.
VARIANTS = {
    "phi4-mini-reasoning": {"system": MATH_SYSTEMS[1], "parameters": {"temperature": 0.3, "top_p": 0.8}},
    "phi4-mini-coder": {"system": CODE_SYSTEMS[1], "parameters": {"temperature": 0.5, "top_p": 0.9}},
}

# What the local library's phi4-mini ships with, as Ollama models ship a params layer:
# num_ctx at phi4-nano's longrope switch point (beyond it llama.cpp uses the long rope factors
# for every position, as vLLM does) and no repeat penalty (Ollama's default is 1.1), so that
# greedy answers equal the other backends'.
NANO_PARAMS = {"num_ctx": 1024, "repeat_penalty": 1.0}

SEED_OLLAMA_FLAWS = {
    "healthcheck: curl -f http://localhost:11434/api/tags":
        "the ollama/ollama image has no curl: use `ollama list` inside it, or check from outside (the deploy layer GETs /).",
    "docker exec ollama create -f /tmp/… with heredocs":
        "the ollama client's create(model=, from_=, system=, parameters=) does it from the notebook.",
}


def local_library(source: Path, name: str = "phi4-nano") -> tuple[Path, dict[str, Path]]:
    """A local model library with ``source`` as GGUF: ``phi4-mini:latest`` (f16), ``:f16`` and ``:q8_0``."""
    from helpers.ollama_standin import publish

    files = gguf_files.converted(source, name)
    library = cache_dir() / "ollama-library"
    for tag, path in [("latest", files["f16"]), *files.items()]:
        publish(library, f"{SERVED}:{tag}", path, params=NANO_PARAMS)
    return library, files


def pull(client, model: str, progress: bool = True) -> list[str]:
    """``client.pull`` with a progress bar per layer; returns the statuses seen."""
    from tqdm.auto import tqdm

    bars, statuses = {}, []
    for update in client.pull(model, stream=True):
        if update.digest and update.total:
            bar = bars.get(update.digest) or bars.setdefault(
                update.digest, tqdm(total=update.total, unit="B", unit_scale=True, desc=update.digest[7:19],
                                    disable=not progress))
            bar.update((update.completed or 0) - bar.n)
        if not statuses or statuses[-1] != update.status:
            statuses.append(update.status)
    for bar in bars.values():
        bar.close()
    return statuses


def tool_result_messages(messages: list[dict], reply, results: list[dict]) -> list[dict]:
    """``messages`` + the assistant's tool calls + one ``tool`` message per result (Ollama's format)."""
    import json

    calls = [{"function": {"name": c.function.name, "arguments": dict(c.function.arguments)}}
             for c in reply.message.tool_calls]
    tools = [{"role": "tool", "content": json.dumps(r), "tool_name": c["function"]["name"]}
             for c, r in zip(calls, results)]
    return messages + [{"role": "assistant", "content": reply.message.content or "", "tool_calls": calls}] + tools


def tokens_per_second(response) -> float:
    """Decode speed from Ollama's own counters (eval_count over eval_duration in ns)."""
    return response.eval_count / response.eval_duration * 1e9 if response.eval_duration else 0.0
