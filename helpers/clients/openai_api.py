"""OpenAI's chat API (vLLM, the SLM Engine) through the official ``openai`` client.

Module functions take an ``openai.OpenAI`` client (what notebooks show); ``Client`` is the same calls
behind the interface every API flavour shares (``helpers.clients``).
"""
from __future__ import annotations

import json
import time

from helpers.clients.reply import NoProgressWatch, Reply


def client(base_url: str, timeout: float = 120, api_key: str | None = None):
    """An ``openai.OpenAI`` client for a backend's ``/v1`` API (``api_key``: where the server asks for one)."""
    from openai import OpenAI

    return OpenAI(base_url=base_url.rstrip("/") + "/v1", api_key=api_key or "not-needed", timeout=timeout,
                  max_retries=0)


def _tool_kwargs(tools: list[dict] | None) -> dict:
    return {"tools": tools, "tool_choice": "auto"} if tools else {}


def chat(cl, model: str, messages: list[dict], tools: list[dict] | None = None, max_tokens: int = 160,
         temperature: float = 0.0, **extra) -> Reply:
    """A non-streaming chat completion; tool calls come back as ``{"id", "name", "arguments": dict}``."""
    start = time.perf_counter()
    with NoProgressWatch(f"{model} at {cl.base_url}"):
        response = cl.chat.completions.create(model=model, messages=messages, max_tokens=max_tokens,
                                              temperature=temperature, **_tool_kwargs(tools), **extra)
    seconds = time.perf_counter() - start
    choice = response.choices[0]
    calls = [{"id": c.id, "name": c.function.name, "arguments": json.loads(c.function.arguments or "{}")}
             for c in choice.message.tool_calls or []]
    return Reply(choice.message.content, calls, choice.finish_reason, response.usage.completion_tokens, seconds)


def tool_result_messages(messages: list[dict], reply: Reply, results: list[dict]) -> list[dict]:
    """``messages`` extended with the assistant's tool calls and one ``tool`` message per result."""
    assistant = {"role": "assistant", "content": reply.content or "",
                 "tool_calls": [{"id": c["id"], "type": "function",
                                 "function": {"name": c["name"], "arguments": json.dumps(c["arguments"])}}
                                for c in reply.tool_calls]}
    tools = [{"role": "tool", "tool_call_id": c["id"], "content": json.dumps(r)} for c, r in zip(reply.tool_calls, results)]
    return messages + [assistant] + tools


def stream(cl, model: str, messages: list[dict], tools: list[dict] | None = None, max_tokens: int = 160,
           on_text=None, temperature: float = 0.0) -> dict:
    """Stream a completion: text pieces, tool-call deltas seen and the calls they add up to, time to first
    token, total time."""
    start, first, pieces, tool_deltas, calls = time.perf_counter(), None, [], 0, {}
    with NoProgressWatch(f"{model} at {cl.base_url}") as watch:
        chunks = list(_watched(cl.chat.completions.create(model=model, messages=messages, max_tokens=max_tokens,
                                                          temperature=temperature, stream=True,
                                                          **_tool_kwargs(tools)), watch, on_text))
    for arrived, chunk in chunks:
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        if delta.content:
            first = first or arrived
            pieces.append(delta.content)
        if delta.tool_calls:
            first = first or arrived
            tool_deltas += len(delta.tool_calls)
            for part in delta.tool_calls:
                call = calls.setdefault(part.index, {"name": "", "arguments": ""})
                call["name"] += (part.function.name or "") if part.function else ""
                call["arguments"] += (part.function.arguments or "") if part.function else ""
    end = time.perf_counter()
    return {"text": "".join(pieces), "chunks": len(pieces), "tool_call_deltas": tool_deltas,
            "tool_calls": [{"name": c["name"], "arguments": json.loads(c["arguments"] or "{}")} for c in calls.values()],
            "ttft_s": round((first or end) - start, 3), "total_s": round(end - start, 3)}


def _watched(chunks, watch: NoProgressWatch, on_text):
    """(arrival time, chunk) for each chunk of the stream as it arrives; the watch told of each, and ``on_text``
    given each text piece at once."""
    for chunk in chunks:
        watch.progress()
        if on_text and chunk.choices and chunk.choices[0].delta.content:
            on_text(chunk.choices[0].delta.content)
        yield time.perf_counter(), chunk


def raw_completion(cl, model: str, prompt: str, max_tokens: int = 160) -> str:
    """The text the model writes after a rendered ``prompt``, special tokens kept (``/v1/completions``,
    vLLM's ``skip_special_tokens`` extension): what a tool parser gets to read."""
    reply = cl.completions.create(model=model, prompt=prompt, max_tokens=max_tokens, temperature=0,
                                  extra_body={"skip_special_tokens": False})
    return reply.choices[0].text


def expect_error(call) -> dict:
    """Run ``call()`` that must fail with an API error; return its HTTP status and message."""
    import openai

    try:
        call()
    except openai.APIStatusError as err:
        body = err.body if isinstance(err.body, dict) else {}
        nested = body.get("error") if isinstance(body.get("error"), dict) else {}
        message = body.get("message") or nested.get("message") or err.message
        return {"status": err.status_code, "message": str(message)[:300]}
    raise AssertionError("the request succeeded, but an error was expected")


def messages(conversation: list[dict]) -> list[dict]:
    """A conversation in OpenAI's form: tool calls with ids and JSON-string arguments, tool results by id."""
    out, ids = [], []
    for m in conversation:
        if m.get("tool_calls"):
            ids = [f"call_{len(out)}_{i}" for i in range(len(m["tool_calls"]))]
            out.append({"role": "assistant", "content": m.get("content") or "", "tool_calls": [
                {"id": i, "type": "function", "function": {"name": c["function"]["name"], "arguments":
                 c["function"]["arguments"] if isinstance(c["function"]["arguments"], str)
                 else json.dumps(c["function"]["arguments"])}} for i, c in zip(ids, m["tool_calls"])]})
        elif m["role"] == "tool":
            out.append({"role": "tool", "content": m["content"], "tool_call_id": ids.pop(0) if ids else "call_0"})
        else:
            out.append({"role": m["role"], "content": m["content"]})
    return out


class Client:
    """The shared client interface (``helpers.clients``) on an OpenAI-compatible server."""

    api = "openai"

    def __init__(self, base_url: str, model: str, timeout: float = 600):
        self.base_url, self.model, self.client = base_url, model, client(base_url, timeout)

    def chat(self, conversation: list[dict], tools: list[dict] | None = None, max_tokens: int = 160,
             temperature: float = 0.0) -> Reply:
        return chat(self.client, self.model, messages(conversation), tools, max_tokens, temperature)

    def stream(self, conversation: list[dict], tools: list[dict] | None = None, max_tokens: int = 160,
               on_text=None, temperature: float = 0.0) -> dict:
        return stream(self.client, self.model, messages(conversation), tools, max_tokens, on_text, temperature)

    def raw(self, prompt: str, max_tokens: int = 160) -> str:
        return raw_completion(self.client, self.model, prompt, max_tokens)

    def tool_result_messages(self, conversation: list[dict], reply: Reply, results: list[dict]) -> list[dict]:
        return tool_result_messages(messages(conversation), reply, results)
