"""The SLM Engine: this project's OpenAI-compatible server on ONNX Runtime (helpers/servers/engine/), as a
process or as the image from compose/onnx-engine; the ONNX variant it serves per model, and the seed
tutorial's flaws it fixes."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import requests

from helpers.backends.base import LINUX_ARM, LINUX_X86, MAC_ARM, Backend, Options, SeedFacts
from helpers.deploy.context import source_files
from helpers.deploy.spec import BackendSpec, memory_limit
from helpers.models import onnx_convert
from helpers.system.paths import REPO

DIR = REPO / "compose" / "onnx-engine"
PORT = 8080
INT4 = "genai-int4"  # onnxruntime-genai's int4 build (helpers.models.onnx_convert.VARIANTS)


@dataclass(frozen=True)
class EngineOptions(Options):
    variant: str = "genai-fp32"  # the ONNX variant it serves (one of the card's onnx_variants)
    gpu_variant: str = "genai-cuda-fp16"  # the one it serves on a GPU (onnx_convert.CUDA_BUILDS)


class SLMEngine(Backend):
    name, title, api, needs = "onnx-engine", "SLM Engine (ONNX Runtime)", "openai", ("onnx",)
    facts = {"API": "OpenAI-compatible + /reasoning", "quantisation": "ONNX fp32, int8 (ORT), int4 (genai)"}
    install = {"local": "ONNX conversion (notebook 03) + kernel packages", "docker": "build from compose/"}
    streams_tool_calls = True
    seed = SeedFacts("ONNX Runtime", {
        "one InferenceSession.run with input_ids only, decoding outputs[0][0]":
            "a KV-cache decoder needs attention_mask and past_key_values and returns logits, not tokens: "
            "the engine decodes with a KV cache it manages, every running request in one batched step (greedy or sampled).",
        "tokenizer downloaded from the Hub at request time":
            "the converted folder ships tokenizer.json and chat_template.jinja; the image fetches nothing.",
        "onnxruntime-gpu + optimum[onnxruntime] in python:3.11-slim":
            "two conflicting ORT packages and no CUDA: the image installs one, CPU onnxruntime, or on a GPU "
            "onnxruntime-gpu with NVIDIA's CUDA and cuDNN pip packages (docs/gpu.md).",
        "intra_op_num_threads as a CPU provider option": "a SessionOptions setting (genai_config.json session_options).",
        "a custom /reasoning API without function calling":
            "/v1/chat/completions is OpenAI-compatible with tool calls, so notebook 01's client code works "
            "unchanged; /reasoning stays for the seed's examples."})
    # onnxruntime and onnxruntime-genai wheels: manylinux x86_64 and aarch64, macOS arm64; the image is built here
    platforms = {"local": {LINUX_X86, LINUX_ARM, MAC_ARM}, "docker": {LINUX_X86, LINUX_ARM, MAC_ARM}}
    options_type = EngineOptions

    def spec(self, card, runtime: str, gpu: bool = False, model_path: Path | None = None) -> BackendSpec:
        """The engine as a process (the kernel's Python has its packages; always on the CPU), or as the image from
        compose/onnx-engine with the variant's folder mounted read-only; on a GPU the image's CUDA variant
        (onnxruntime-gpu) serving the card's CUDA build. Its memory limit follows the model card."""
        if runtime == "local":
            return BackendSpec(name="onnx-engine", port=0, api="openai", health_path="/health",
                               local_command=[sys.executable, "-m", "helpers.servers.engine",
                                              *self.arguments(card, str(model_path)),
                                              "--host", "127.0.0.1", "--port", "{port}"])
        requirements = DIR / ("requirements-cuda.txt" if gpu else "requirements.txt")
        files = {"compose/onnx-engine/Dockerfile": DIR / "Dockerfile",
                 f"compose/onnx-engine/{requirements.name}": requirements,
                 **source_files("helpers.servers.engine.__main__")}
        command = self.arguments(card, f"/models/{self.variant(card, gpu)}")  # host and port: the image's ENTRYPOINT
        return BackendSpec(
            name="onnx-engine", build_name="onnx-engine-cuda" if gpu else None, port=PORT, build_files=files,
            dockerfile="compose/onnx-engine/Dockerfile", build_args={"REQUIREMENTS": requirements.name},
            wheels=requirements, command=command + ["--device", "cuda"] if gpu else command,
            volumes={str(model_path.parent): "/models:ro"}, mem_limit=memory_limit(card.needs["onnx"].ram),
            gpu=gpu, env={"CUDA_CACHE_PATH": "/tmp/cuda-cache"} if gpu else {},  # the root is read-only
            health_path="/health", api="openai", read_only=True)  # it writes nothing; non-root by its image

    @staticmethod
    def arguments(card, model: str) -> list[str]:
        return ["--model", model, "--served-model-name", card.served_name, "--context", str(card.context)]

    def device(self, server) -> str:
        """From the engine's ``/health``: its ONNX Runtime execution provider."""
        provider = requests.get(server.base_url.rstrip("/") + "/health", timeout=10).json()["provider"]
        return "cpu" if provider == "CPUExecutionProvider" else "gpu"

    def prepare(self, card, runtime: str, progress: bool = True, gpu: bool = False) -> Path:
        if gpu and runtime == "docker":
            return onnx_convert.cuda_build(card, self.variant(card, gpu), progress)
        return onnx_convert.converted(card, progress) / self.variant(card)

    def variant(self, card, gpu: bool = False) -> str:
        """The ONNX variant it serves ``card`` as (on a GPU: the CUDA build)."""
        return self.options(card).gpu_variant if gpu else self.options(card).variant

    def int4_beside(self, card, gpu: bool = False) -> str | None:
        """The card's int4 build where the engine serves another one on the CPU (its fp32), else None: what notebook
        05 and ``slm-lab-bench`` measure once more."""
        return INT4 if INT4 in card.onnx_variants and self.variant(card) != INT4 and not gpu else None

    def loads(self, card) -> str:
        return self.variant(card)
