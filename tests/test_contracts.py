"""What every backend keeps with every model, parametrized over both registries (no per-name tests, no hard-coded
sets): its settings for the card are ones it knows, its specs render on both runtimes and print as commands,
the resources it draws on are on the card, the comparison table has its row — and the same model output gives
the same ``tool_calls`` on every backend, through each server's own code path."""
import asyncio
import json
import subprocess

import numpy as np
import pytest

from helpers import backends, clients, models
from helpers.deploy.spec import docker_command, docker_run_kwargs, local_command
from helpers.formats import chat_format, tool_formats
from helpers.measure import comparison
from helpers.nano import phi4_nano
from helpers.servers.engine.engine import Job, Sampling, Sequence
from helpers.servers.ollama_standin.runners import Service
from helpers.servers.ollama_standin.store import Model, Store
from helpers.system import venvs
from helpers.system.paths import REPO
from helpers.tasks.curriculum import CIRCLE_TOOL, WEATHER_TOOL

PAIRS = [pytest.param(b, m, id=f"{b}-{m}") for b in backends.BACKENDS for m in models.MODELS]


@pytest.mark.parametrize("backend, model", PAIRS)
def test_every_backend_starts_every_model_on_both_runtimes(backend, model, tmp_path):
    entry, card = backends.get(backend), models.get(model)
    entry.options(card)  # its settings for the card are ones it defines
    local = entry.spec(card, "local", False, tmp_path / "model")
    assert "{port}" in local.local_command and "0.0.0.0" not in local.local_command
    assert local_command(local, 8000).count("8000") >= 1 and local.api == entry.api in clients.CLIENTS
    for gpu in (False, True):
        spec = entry.spec(card, "docker", gpu, tmp_path / "model")
        kwargs = docker_run_kwargs(spec, spec.image or f"lab/{spec.name}:local", 18000, gpu_available=gpu)
        assert all(host == "127.0.0.1" for host, _ in kwargs["ports"].values())  # published on loopback only
        assert kwargs["cap_drop"] == ["ALL"] and "no-new-privileges:true" in kwargs["security_opt"]  # the stacks' hardening
        assert kwargs["pids_limit"] > 0 and (spec.mem_limit or gpu)
        assert docker_command(kwargs).startswith("docker run -d") and spec.api == entry.api
    assert entry.loads(card)


@pytest.mark.parametrize("backend, model", PAIRS)
def test_what_a_backend_needs_is_on_every_card(backend, model):
    entry, card = backends.get(backend), models.get(model)
    assert set(entry.needs) <= set(card.needs)
    roomy = type("Env", (), {"ram_gb": 1e4, "disk_free_gb": 1e4, "gpu_memory_gb": 1e4})()
    models.require(card, entry.needs, roomy)
    with pytest.raises(models.ResourceError, match=card.key):
        models.require(card, entry.needs, type("Env", (), {"ram_gb": 0.01, "disk_free_gb": 1e4})())


@pytest.mark.parametrize("backend", backends.BACKENDS)
def test_the_comparison_table_has_a_row_for_every_backend(backend):
    entry = backends.get(backend)
    measured = {backend: {"ready_s": 1.0, "install": entry.install["local"], "memory_mb": 500.0, "tok_s": 10.0,
                          "tool_accuracy": 1.0, "tool_streaming": entry.streams_tool_calls, "device": "cpu"}}
    rows = comparison.framework_table(measured)
    assert len(rows) == len(comparison.SEED_TABLE) and all(backend in row for row in rows)
    assert all(("(seed: " in row[backend]) == (entry.seed is not None) for row in rows)


# ----------------------------------------------------------------------------- the same output, the same tool calls

# What a model writes for a tool call, in every format the lab's models use, with the end-of-turn token the
# model emits after it (Qwen2.5-Coder-0.5B's bare object is the case where one server used to miss the call).
OUTPUTS = {
    "phi4": '<|tool_call|>[{"name": "calculate_circle_area", "arguments": {"radius": 5}}]<|/tool_call|>',
    "hermes": '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
    "fenced-json": 'Here it is:\n```json\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n```',
    "bare object": '{"name": "get_weather", "arguments": {"city": "New York"}}',
    "no call": "12 + 30 = 42. The answer is 42.",
}
TOOLS = [CIRCLE_TOOL, WEATHER_TOOL]
NAMES = [t["function"]["name"] for t in TOOLS]


@pytest.fixture(scope="module")
def tokenizer():
    from tokenizers import Tokenizer
    return Tokenizer.from_file(str(phi4_nano.model_dir() / "tokenizer.json"))


def _hidden(tokenizer) -> tuple[str, ...]:
    """The special tokens a server never shows (Phi-4's tool-call markers are parsed instead)."""
    specials = [t.content for t in tokenizer.get_added_tokens_decoder().values() if t.special]
    return tuple(t for t in specials if t not in (chat_format.TOOL_CALL, chat_format.TOOL_CALL_END))


def engine_calls(text: str, tokenizer) -> list[dict]:
    """The SLM Engine's path: the model's tokens one by one into a ``Sequence``, then its end-of-turn token (EOS)."""
    end = tokenizer.token_to_id(chat_format.END)
    engine = type("Engine", (), {"eos": {end}, "tokenizer": tokenizer, "stream_interval": 0.0})()
    events = []
    sequence = Sequence(engine, Job([0], Sampling(512), events.append, NAMES, _hidden(tokenizer)))
    for token in tokenizer.encode(text, add_special_tokens=False).ids + [end]:
        logits = np.zeros(tokenizer.get_vocab_size(), np.float32)
        logits[token] = 1.0
        sequence.take(logits)
        if not sequence.running:
            break
    sequence.end()
    return events[-1]["tool_calls"]


def standin_calls(text: str, tokenizer, tmp_path) -> list[dict]:
    """The Ollama stand-in's path: llama.cpp's streamed pieces (the end-of-turn token's text included, as llama.cpp
    writes special tokens) through ``Service.run``."""
    ids = tokenizer.encode(text, add_special_tokens=False).ids
    pieces = [tokenizer.decode([i], skip_special_tokens=False) for i in ids] + [chat_format.END]

    class Runner:
        class server:
            @staticmethod
            def handle_completions(request, deliver):
                for piece in pieces:
                    deliver({"choices": [{"text": piece}]})
                deliver({"choices": [{"text": "", "finish_reason": "stop"}], "usage": {"completion_tokens": len(ids)}})

    service = Service(Store(tmp_path / "store"), tmp_path / "library")
    service.runners = type("Runners", (), {"acquire": lambda self, *a: (Runner, 0.0), "release": lambda self, r: None,
                                           "unload": lambda self, g: None})()
    service.hidden_tokens = lambda model: _hidden(tokenizer)
    model = Model("m:latest", "0" * 64, tmp_path / "m.gguf", 0, "")
    service.trained_context[model.gguf] = 4096  # what the stand-in reads from a real GGUF's header
    options = service.options_for(model, {"temperature": 0})
    return asyncio.run(service.run(model, "prompt", options, None, 300.0, NAMES)).tool_calls


def vllm_calls(text: str, tmp_path) -> list[dict]:
    """vLLM's path: the lab's parser plugin in vLLM's own environment, on the text vLLM detokenised (vLLM ends at
    EOS and leaves the EOS token out of that text)."""
    python = venvs.python(venvs.ensure_venv(backends.get("vllm").local_venv, progress=False))
    script = f"""
import json, sys
sys.path.insert(0, {str(REPO / "compose" / "vllm")!r})
from lab_tool_parser import LabToolParser
tool = lambda name: type("T", (), {{"function": type("F", (), {{"name": name}})}})
request = type("R", (), {{"tools": [tool(n) for n in {NAMES!r}]}})
info = LabToolParser(None).extract_tool_calls(sys.stdin.read(), request)
print(json.dumps([{{"name": c.function.name, "arguments": json.loads(c.function.arguments)}} for c in info.tool_calls]))
"""
    done = subprocess.run([str(python), "-c", script], input=text, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


@pytest.mark.slow  # vLLM's virtualenv, made once (minutes) and cached
@pytest.mark.parametrize("fmt", OUTPUTS)
def test_the_same_model_output_gives_the_same_tool_calls_on_every_backend(fmt, tokenizer, tmp_path):
    text = OUTPUTS[fmt]
    expected = tool_formats.parse(text, NAMES).calls or []
    paths = {"onnx-engine": lambda: engine_calls(text, tokenizer), "ollama": lambda: standin_calls(text, tokenizer, tmp_path),
             "vllm": lambda: vllm_calls(text, tmp_path)}
    assert set(paths) == set(backends.BACKENDS), "every backend in the registry has its tool-call path tested here"
    got = {name: path() for name, path in paths.items()}
    assert got == {name: expected for name in paths}, f"{fmt}: {got}"
    assert bool(expected) == (fmt != "no call")
