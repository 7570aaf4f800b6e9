"""Ollama's native API (Ollama, or the lab's stand-in) through the official ``ollama`` client.

Module functions take an ``ollama.Client`` (what notebook 02 shows); ``Client`` is the same calls behind
the interface every API flavour shares (``helpers.clients``).
"""
from __future__ import annotations

import json
import time

from helpers.clients.reply import NoProgressWatch, Reply


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


def _calls(reply) -> list[dict]:
    """The tool calls of an ``ollama`` chat response (or of a ``Reply``) as ``{"name", "arguments": dict}``."""
    if isinstance(reply, Reply):
        return [{"name": c["name"], "arguments": c["arguments"]} for c in reply.tool_calls]
    return [{"name": c.function.name, "arguments": dict(c.function.arguments)} for c in reply.message.tool_calls or []]


def tool_result_messages(messages: list[dict], reply, results: list[dict]) -> list[dict]:
    """``messages`` + the assistant's tool calls + one ``tool`` message per result (Ollama's format); ``reply``
    is an ``ollama`` chat response or a ``Reply``."""
    content = reply.content if isinstance(reply, Reply) else reply.message.content
    calls = [{"function": c} for c in _calls(reply)]
    tools = [{"role": "tool", "content": json.dumps(r), "tool_name": c["function"]["name"]}
             for c, r in zip(calls, results)]
    return messages + [{"role": "assistant", "content": content or "", "tool_calls": calls}] + tools


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


def messages(conversation: list[dict]) -> list[dict]:
    """A conversation in Ollama's form: tool-call arguments as objects."""
    out = []
    for m in conversation:
        entry = {"role": m["role"], "content": m.get("content") or ""}
        if m.get("tool_name"):
            entry["tool_name"] = m["tool_name"]
        if m.get("tool_calls"):
            entry["tool_calls"] = [{"function": {"name": c["function"]["name"], "arguments":
                                    json.loads(c["function"]["arguments"]) if isinstance(c["function"]["arguments"], str)
                                    else c["function"]["arguments"]}} for c in m["tool_calls"]]
        out.append(entry)
    return out


class Client:
    """The shared client interface (``helpers.clients``) on Ollama's native API."""

    api = "ollama"

    def __init__(self, base_url: str, model: str, timeout: float = 600):
        import ollama

        self.base_url, self.model, self.client = base_url, model, ollama.Client(host=base_url, timeout=timeout)

    def chat(self, conversation: list[dict], tools: list[dict] | None = None, max_tokens: int = 160,
             temperature: float = 0.0) -> Reply:
        start = time.perf_counter()
        with NoProgressWatch(f"{self.model} at {self.base_url}"):
            response = self.client.chat(model=self.model, messages=messages(conversation), tools=tools or None,
                                        options={"temperature": temperature, "num_predict": max_tokens})
        calls = [{"id": f"call_{i}", **call} for i, call in enumerate(_calls(response))]
        return Reply(response.message.content, calls, response.done_reason or "stop", response.eval_count or 0,
                     time.perf_counter() - start)

    def stream(self, conversation: list[dict], tools: list[dict] | None = None, max_tokens: int = 160,
               on_text=None, temperature: float = 0.0) -> dict:
        """The streamed answer, in the shape of ``openai_api.stream``'s (tool calls arrive in one chunk)."""
        start, first, pieces, calls = time.perf_counter(), None, [], []
        with NoProgressWatch(f"{self.model} at {self.base_url}") as watch:
            chunks = []
            for chunk in self.client.chat(model=self.model, messages=messages(conversation), tools=tools or None,
                                          stream=True, options={"temperature": temperature, "num_predict": max_tokens}):
                watch.progress()
                chunks.append((time.perf_counter(), chunk))
                if on_text and chunk.message.content:
                    on_text(chunk.message.content)
        for arrived, chunk in chunks:
            if chunk.message.content:
                first = first or arrived
                pieces.append(chunk.message.content)
            if chunk.message.tool_calls:
                first = first or arrived
                calls += _calls(chunk)
        end = time.perf_counter()
        return {"text": "".join(pieces), "chunks": len(pieces), "tool_call_deltas": len(calls), "tool_calls": calls,
                "ttft_s": round((first or end) - start, 3), "total_s": round(end - start, 3)}

    def raw(self, prompt: str, max_tokens: int = 160) -> str:
        return raw_generate(self.client, self.model, prompt, max_tokens)

    def tool_result_messages(self, conversation: list[dict], reply: Reply, results: list[dict]) -> list[dict]:
        return tool_result_messages(messages(conversation), reply, results)
