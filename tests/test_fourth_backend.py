"""A fourth backend is one registry entry: llama.cpp's own server (llama-server, prebuilt in the xllamacpp wheel the
lab already installs), registered in this file and nowhere else. The workbook's machinery — the resource guard,
the deploy layer, the shared client, the graded suite, the comparison table — serves it unchanged."""
import sys
from pathlib import Path

import pytest

from helpers import backends, models
from helpers.backends.base import Backend
from helpers.deploy.spec import BackendSpec
from helpers.measure import comparison, task_suite
from helpers.workbook import chapter

QWEN = "qwen2.5-coder-0.5b"
# llama-server in a process of its own: the GGUF, a port, the context and the served name
SERVE = """
import sys, threading, xllamacpp
gguf, port, context, name = sys.argv[1:5]
params = xllamacpp.CommonParams()
params.model.path, params.port, params.hostnames = gguf, int(port), ["127.0.0.1"]
params.n_ctx, params.use_jinja, params.model_alias, params.warmup = int(context), True, {name}, False
server = xllamacpp.Server(params)
threading.Event().wait()
"""


class LlamaCppServer(Backend):
    name, title, api, needs = "llama.cpp", "llama.cpp server", "openai", ("gguf",)
    facts = {"API": "OpenAI-compatible", "quantisation": "GGUF (Q4_K_M, Q8_0, f16 …)"}
    install = {"local": "one wheel (xllamacpp) + a GGUF", "docker": "pull ghcr.io/ggml-org/llama.cpp:server"}
    streams_tool_calls = True

    def spec(self, card, runtime: str, gpu: bool = False, model_path: Path | None = None) -> BackendSpec:
        if runtime == "local":
            return BackendSpec(name=self.name, port=0, api="openai", health_path="/health",
                               local_command=[sys.executable, "-c", SERVE, str(model_path), "{port}", str(card.context),
                                              card.served_name])
        return BackendSpec(name=self.name, port=8080, image="ghcr.io/ggml-org/llama.cpp:server", api="openai",
                           command=["-m", f"/models/{model_path.name}", "--host", "0.0.0.0", "--port", "8080", "--jinja",
                                    "-c", str(card.context), "--alias", card.served_name],
                           volumes={str(model_path.parent): "/models:ro"}, health_path="/health", gpu=gpu)

    def prepare(self, card, runtime: str, progress: bool = True, gpu: bool = False) -> Path:
        return card.gguf(progress)

    def loads(self, card) -> str:
        return "GGUF"

    def device(self, server) -> str:
        return "cpu"  # the xllamacpp wheel from PyPI is a CPU build


@pytest.fixture
def fourth(monkeypatch):
    monkeypatch.setitem(backends.BACKENDS, "llama.cpp", LlamaCppServer())
    return backends.get("llama.cpp")


def test_the_registries_take_a_fourth_backend(fourth, tmp_path):
    card = models.get(QWEN)
    assert fourth in backends.BACKENDS.values() and fourth.options(card) is not None
    assert "llama.cpp server loads" in backends.model_overview(models.MODELS.values())[0]
    for runtime in ("local", "docker"):
        assert fourth.spec(card, runtime, model_path=tmp_path / "m.gguf").api == "openai"
    measured = {"llama.cpp": {"ready_s": 1.0, "install": fourth.install["local"], "memory_mb": 700.0, "tok_s": 20.0,
                              "tool_accuracy": 1.0, "tool_streaming": True, "device": "cpu"}}
    rows = comparison.framework_table(measured)  # the seed never named it: no guess beside it
    assert all(row["llama.cpp"] and "seed:" not in row["llama.cpp"] for row in rows)


@pytest.mark.slow
def test_the_suite_chat_tool_calls_and_streaming_run_through_a_fourth_backend(fourth, tmp_path):
    lab = chapter.start("fourth_backend", tmp_path, runtime="local", model=QWEN)
    try:
        server = lab.start("llama.cpp", timeout=300, progress=False)
        client = lab.client("llama.cpp", server)
        assert client.client.models.list().data[0].id == lab.model.served_name
        results = task_suite.run(task_suite.Served(client, lab.model), task_suite.suite(lab.model), progress=False)
        assert not [r.why for r in results if r.why.startswith(("APIError", "APIConnectionError", "BadRequest"))]
        by_key = {r.key: r for r in results}
        assert by_key["seed|tool"].ok, by_key["seed|tool"]  # the tool call, read from what the server returned
        assert task_suite.accuracy(results)["all"] > 0
        question = [{"role": "user", "content": "What is 17 + 25?"}]
        streamed = client.stream(question, max_tokens=64)
        assert streamed["chunks"] > 1 and streamed["text"] == client.chat(question, max_tokens=64).content
    finally:
        lab.finish()
