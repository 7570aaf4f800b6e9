"""Ollama in the lab: the local library the stand-in pulls from, the seed's Modelfile variants,
and small helpers around the official ``ollama`` client."""
from __future__ import annotations

import json
from pathlib import Path

from helpers.curriculum import CODE_SYSTEMS, MATH_SYSTEMS
from helpers.paths import cache_dir


def variants(card) -> dict[str, dict]:
    """The seed's two Modelfile variants (FROM + SYSTEM + PARAMETER) of ``card``'s model. Their system
    prompts are the ones phi4-nano was trained with: the seed's longer wording would be unknown text to it."""
    return {f"{card.key}-reasoning": {"system": MATH_SYSTEMS[1], "parameters": {"temperature": 0.3, "top_p": 0.8}},
            f"{card.key}-coder": {"system": CODE_SYSTEMS[1], "parameters": {"temperature": 0.5, "top_p": 0.9}}}


def local_library(card, progress: bool = True) -> Path:
    """The stand-in's model library (a local mirror of Ollama's) holding ``card``'s GGUF as its served name,
    with the card's PARAMETERs as a params layer (as Ollama's library models ship one)."""
    from helpers.ollama_standin import publish

    library = cache_dir() / "ollama-library"
    publish(library, card.served_name, card.gguf(progress), params=card.ollama_params)
    return library


def is_standin(base_url: str) -> bool:
    """True when ``base_url`` is the lab's Ollama-API stand-in (its version says so), not Ollama."""
    import requests

    return requests.get(base_url.rstrip("/") + "/api/version", timeout=10).json()["version"].endswith("standin")


def provide(client, card, base_url: str, progress: bool = True) -> list[str]:
    """Pull ``card``'s model: from ollama.com on Ollama, from the local library on the stand-in."""
    if not card.ollama_library and not is_standin(base_url):
        raise RuntimeError(f"{card.key} is not in Ollama's library, and its chat template is not one Ollama knows "
                           "(Ollama renders prompts with Go templates): on the official image use "
                           "qwen2.5-coder-0.5b or phi-4-mini; the local runtime's stand-in serves "
                           f"{card.key} from its GGUF")
    return pull(client, card.served_name, progress)


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
    calls = [{"function": {"name": c.function.name, "arguments": dict(c.function.arguments)}}
             for c in reply.message.tool_calls]
    tools = [{"role": "tool", "content": json.dumps(r), "tool_name": c["function"]["name"]}
             for c, r in zip(calls, results)]
    return messages + [{"role": "assistant", "content": reply.message.content or "", "tool_calls": calls}] + tools


def cold_generate(client, model: str, prompt: str, **kwargs):
    """``client.generate`` on a freshly loaded model: unloaded first, so no cached prompt state from an earlier
    request changes the arithmetic (and so a long sampled answer) of this one."""
    client.generate(model=model, prompt="", keep_alive=0)
    return client.generate(model=model, prompt=prompt, **kwargs)


def raw_generate(client, model: str, prompt: str, max_tokens: int = 160) -> str:
    """The text the model writes after a rendered ``prompt`` (``raw`` mode: no template, no tool parsing)."""
    return client.generate(model=model, prompt=prompt, raw=True,
                           options={"temperature": 0, "num_predict": max_tokens}).response


def tokens_per_second(response) -> float:
    """Decode speed from Ollama's own counters (eval_count over eval_duration in ns)."""
    return response.eval_count / response.eval_duration * 1e9 if response.eval_duration else 0.0
