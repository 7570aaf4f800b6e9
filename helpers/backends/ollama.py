"""Ollama: the official image, or (no registry, or the local runtime) the lab's Ollama-API stand-in on
llama.cpp — not Ollama; how a model gets into it (a pull: from ollama.com, or from the stand-in's local
library), its settings per model, the seed's Modelfile variants and the seed tutorial's flaws for it."""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import requests

from helpers.backends.base import LINUX_ARM, LINUX_X86, MAC_ARM, MAC_X86, Backend, Options, SeedFacts
from helpers.clients import ollama_api
from helpers.deploy.context import source_files
from helpers.deploy.spec import BackendSpec, StandIn, memory_limit
from helpers.servers.ollama_standin.store import publish
from helpers.system.paths import REPO, cache_dir
from helpers.tasks.curriculum import CODE_SYSTEMS, MATH_SYSTEMS

IMAGE = "ollama/ollama:0.18.2"  # pinned; phi4-mini needs Ollama >= 0.5.13
PORT = 11434
MODELS_VOLUME = "slm-deploy-lab-ollama"  # the lab's own: a learner's `ollama` volume (Ollama's docs' name) stays theirs


@dataclass(frozen=True)
class OllamaOptions(Options):
    library: bool = False  # Ollama's registry has the model under its served name (the stand-in mirrors that)
    params: dict = field(default_factory=dict)  # Modelfile PARAMETERs it is served with


def is_standin(base_url: str) -> bool:
    """True when ``base_url`` is the lab's Ollama-API stand-in (its version says so), not Ollama."""
    return requests.get(base_url.rstrip("/") + "/api/version", timeout=10).json()["version"].endswith("standin")


class Ollama(Backend):
    name, title, api, needs = "ollama", "Ollama", "ollama", ("gguf",)
    facts = {"API": "Ollama REST + OpenAI-compatible", "quantisation": "GGUF (Q4_K_M, Q8_0, f16 …)"}
    install = {"local": "one wheel (llama.cpp) + a GGUF", "docker": "pull the official image"}
    streams_tool_calls = True
    seed = SeedFacts("Ollama", {
        "healthcheck: curl -f http://localhost:11434/api/tags":
            "the ollama/ollama image has no curl: use `ollama list` inside it, or check from outside (GET /).",
        "docker exec ollama create -f /tmp/… with heredocs":
            "the ollama client's create(model=, from_=, system=, parameters=) does it from the notebook."})
    # the stand-in's llama.cpp (xllamacpp wheels): Linux and macOS on both; ollama/ollama: linux/amd64 and arm64
    platforms = {"local": {LINUX_X86, LINUX_ARM, MAC_ARM, MAC_X86}, "docker": {LINUX_X86, LINUX_ARM, MAC_ARM}}
    options_type = OllamaOptions

    def spec(self, card, runtime: str, gpu: bool = False, model_path: Path | None = None) -> BackendSpec:
        """The official image (models in the lab's named volume), or the lab's Ollama-API stand-in on
        llama.cpp (not Ollama) pulling from a local library: as a process, or as a local image."""
        if runtime == "local":
            return BackendSpec(name="ollama-standin", port=0, health_path="/", api="ollama",
                               local_command=[sys.executable, "-m", "helpers.servers.ollama_standin", "--models",
                                              str(cache_dir() / "ollama-standin" / "models"), "--library",
                                              str(model_path), "--port", "{port}"])
        files = {"compose/ollama/Dockerfile.standin": REPO / "compose/ollama/Dockerfile.standin",
                 "compose/ollama/requirements.txt": REPO / "compose/ollama/requirements.txt",
                 **source_files("helpers.servers.ollama_standin.__main__")}
        need = card.needs["gguf"]
        # The image has no curl: its health is checked from outside (GET / answers "Ollama is running").
        return BackendSpec(name="ollama", port=PORT, image=IMAGE, volumes={MODELS_VOLUME: "/root/.ollama"},
                           env={"OLLAMA_KEEP_ALIVE": "5m", "OLLAMA_HOST": f"0.0.0.0:{PORT}"},
                           mem_limit=None if gpu else memory_limit(need.ram + 1), gpu=gpu, health_path="/", api="ollama",
                           standin=StandIn(dockerfile="compose/ollama/Dockerfile.standin", files=files,
                                           wheels=REPO / "compose/ollama/requirements.txt",
                                           volumes={str(model_path): "/library:ro"} if model_path else {}))

    def device(self, server) -> str:
        """From ``/api/ps`` (what ``ollama ps`` shows): the loaded model's share in GPU memory, size_vram of size."""
        loaded = requests.get(server.base_url.rstrip("/") + "/api/ps", timeout=10).json()["models"]
        if not loaded:
            return "unknown (no model loaded)"
        share = loaded[0].get("size_vram", 0) / max(1, loaded[0]["size"])
        return "cpu" if share == 0 else "gpu" if share >= 0.999 else f"{share:.0%} gpu"

    def prepare(self, card, runtime: str, progress: bool = True, gpu: bool = False) -> Path:
        """The stand-in's model library (a local mirror of Ollama's) holding ``card``'s GGUF as its served name,
        with the card's PARAMETERs as a params layer (as Ollama's library models ship one)."""
        library = cache_dir() / "ollama-library"
        publish(library, card.served_name, card.gguf(progress), params=self.options(card).params)
        return library

    def loads(self, card) -> str:
        return "GGUF"

    @staticmethod
    def variants(card) -> dict[str, dict]:
        """The seed's two Modelfile variants (FROM + SYSTEM + PARAMETER) of ``card``'s model. Their system
        prompts are the ones phi4-nano was trained with: the seed's longer wording would be unknown text to it."""
        return {f"{card.key}-reasoning": {"system": MATH_SYSTEMS[1], "parameters": {"temperature": 0.3, "top_p": 0.8}},
                f"{card.key}-coder": {"system": CODE_SYSTEMS[1], "parameters": {"temperature": 0.5, "top_p": 0.9}}}

    def provide(self, card, base_url: str, progress: bool = True) -> list[str]:
        """Pull ``card``'s model: from ollama.com on Ollama, from the local library on the stand-in."""
        import ollama

        if not self.options(card).library and not is_standin(base_url):
            raise RuntimeError(f"{card.key} is not in Ollama's library, and its chat template is not one Ollama "
                               "knows (Ollama renders prompts with Go templates): on the official image use "
                               "qwen2.5-coder-0.5b or phi-4-mini; the local runtime's stand-in serves "
                               f"{card.key} from its GGUF")
        return ollama_api.pull(ollama.Client(host=base_url, timeout=600), card.served_name, progress)
