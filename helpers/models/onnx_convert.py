"""Convert a Phi3ForCausalLM folder to ONNX, every variant in one model folder.

Variants (each a sub-folder with its own tokenizer, configs and chat template, so
nothing is lost the way the seed lost it by copying one ``.onnx`` file out):

- ``optimum-fp32``: optimum's exporter, task ``text-generation-with-past`` (KV cache);
- ``optimum-o2``: ONNX Runtime graph optimisation (O2 fusions) of that export;
- ``optimum-int8``: dynamic int8 quantisation of the optimised graph for this CPU;
- ``genai-fp32`` / ``genai-int4`` (/ ``genai-int8``): onnxruntime-genai's model builder,
  which writes ``genai_config.json`` and uses GroupQueryAttention with longrope built in;
- ``genai-cuda-fp16`` / ``genai-cuda-int4``: the builder's CUDA builds (``-e cuda``), made only when the engine
  runs on a GPU (``cuda_build``): ONNX Runtime's GroupQueryAttention on CUDA takes fp16 or bf16, not fp32.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from helpers.system.paths import build_once, cache_dir, content_key, file_sha256

# Files that travel with every variant (tokenizer, chat template, configs).
MODEL_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "LICENSE", "PROVENANCE.md",
               "special_tokens_map.json", "chat_template.jinja")


@dataclass(frozen=True)
class Variant:
    name: str
    kind: str  # "optimum" (ORTModelForCausalLM) or "genai" (onnxruntime-genai)
    how: str


VARIANTS = [
    Variant("optimum-fp32", "optimum", "optimum export, text-generation-with-past, fp32"),
    Variant("optimum-o2", "optimum", "ORT graph optimisation O2 (phi3 mapped to the gpt2 fusions)"),
    Variant("optimum-int8", "optimum", "dynamic int8 quantisation of the O2 graph"),
    Variant("genai-fp32", "genai", "onnxruntime-genai model builder, fp32"),
    Variant("genai-int4", "genai", "onnxruntime-genai model builder, int4 weights (MatMulNBits)"),
    Variant("genai-int8", "genai", "onnxruntime-genai model builder, int8 weights (MatMulNBits)"),
    Variant("genai-cuda-fp16", "genai", "onnxruntime-genai model builder for CUDA, fp16"),
    Variant("genai-cuda-int4", "genai", "onnxruntime-genai model builder for CUDA, int4 weights, fp16 activations"),
]
CUDA_BUILDS = {"genai-cuda-fp16": "fp16", "genai-cuda-int4": "int4"}  # variant -> the builder's precision


def cpu_flags() -> set[str]:
    """The CPU feature flags of this machine (from /proc/cpuinfo; empty where it is missing)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def int8_settings(flags: set[str]) -> dict:
    """Dynamic int8 settings for this CPU.

    Without VNNI (AVX2, plain AVX-512) the u8×s8 multiply-add instruction can saturate,
    so weights are quantised to 7 bits (``reduce_range``); AVX512-VNNI / AVX-VNNI need not.
    """
    vnni = bool({"avx512_vnni", "avx_vnni"} & flags)
    return {"isa": "avx512_vnni" if vnni else ("avx2" if "avx2" in flags else "generic"), "reduce_range": not vnni}


def _copy_model_files(src: Path, dst: Path) -> None:
    for name in MODEL_FILES:
        if (src / name).exists() and not (dst / name).exists():
            shutil.copy2(src / name, dst / name)


def export_optimum(src: Path, out: Path) -> None:
    """optimum's ONNX export with KV cache, fp32."""
    from optimum.exporters.onnx import main_export

    main_export(str(src), output=str(out), task="text-generation-with-past", device="cpu", do_validation=False)
    _copy_model_files(src, out)


def optimize_graph(src: Path, out: Path, level: int = 2) -> None:
    """ORT graph optimisation of an optimum export.

    optimum refuses ``phi3`` ("doesn't support the graph optimization of phi3 yet"), but
    Phi-3 is a Llama-style decoder, and optimum maps llama and mistral to ONNX Runtime's
    ``gpt2`` fusion rules (attention, SkipLayerNorm, bias-GELU patterns); phi3 gets the same.
    """
    from optimum.onnxruntime import ORTOptimizer
    from optimum.onnxruntime.configuration import OptimizationConfig
    from optimum.onnxruntime.utils import ORTConfigManager

    ORTConfigManager._conf.setdefault("phi3", "gpt2")
    optimizer = ORTOptimizer.from_pretrained(str(src), file_names=["model.onnx"])
    optimizer.optimize(OptimizationConfig(optimization_level=level, optimize_for_gpu=False), save_dir=str(out))
    _copy_model_files(src, out)
    produced = out / "model_optimized.onnx"
    if produced.exists():
        produced.rename(out / "model.onnx")


def quantize_int8(src: Path, out: Path, settings: dict) -> None:
    """Dynamic int8 quantisation (weights int8 ahead of time, activations at run time)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out.mkdir(parents=True, exist_ok=True)
    quantize_dynamic(src / "model.onnx", out / "model.onnx", weight_type=QuantType.QInt8,
                     per_channel=False, reduce_range=settings["reduce_range"],
                     # the optimised graph has tensors of unknown type that the quantiser must treat as float
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    _copy_model_files(src, out)


def build_genai(src: Path, out: Path, precision: str, work: Path, options: dict | None = None,
                provider: str = "cpu") -> None:
    """onnxruntime-genai's model builder (``-e cpu``, or ``cuda``) into ``out``; ``options``: its ``--extra_options``
    (``block_size``, ``accuracy_level``, ``algo_config``, …)."""
    cmd = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(src), "-o", str(out),
           "-p", precision, "-e", provider, "-c", str(work)]
    if options:
        cmd += ["--extra_options", *(f"{key}={value}" for key, value in options.items())]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"genai builder ({precision}) failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    _copy_model_files(src, out)


def folder_size(folder: Path) -> int:
    """Bytes of the ONNX graph and its weights in ``folder`` (tokenizer and configs left out)."""
    return sum(p.stat().st_size for p in folder.iterdir() if p.suffix in (".onnx", ".data") or p.name.endswith(".onnx.data"))


def conversion_key(src: Path, variants: tuple[str, ...], int4_options: dict | None = None) -> str:
    """Hash of the source folder, the variants (and int4 settings), the converter versions and this file. The
    folder counts by its path, each file's size and, for files under 64 MB, their content: the committed phi4-nano
    keeps its path and sizes when it is retrained; a large checkpoint's folder is named by its source already."""
    from importlib.metadata import version

    versions = {pkg: version(pkg) for pkg in ("optimum", "optimum-onnx", "onnx", "onnxruntime", "onnxruntime-genai")}
    files = {p.name: [p.stat().st_size, file_sha256(p) if p.stat().st_size < 64 << 20 else None]
             for p in sorted(src.iterdir()) if p.is_file()}
    return content_key({**versions, "flags": int8_settings(cpu_flags()), "source": str(src), "files": files,
                        "variants": list(variants), "int4": int4_options or {}}, [Path(__file__)])


def convert(src: Path, out: Path, variants: tuple[str, ...], published: Path | None = None, progress: bool = True,
            int4_options: dict | None = None) -> dict:
    """``variants`` of ``src`` into ``out/<variant>``; returns what happened to each (seconds or error).

    ``published``: a publisher's genai int4 build, taken as ``genai-int4`` instead of building one;
    ``int4_options``: the builder's int4 settings for ``genai-int4`` (the model card's, from ``slm-lab-int4``).
    """
    from tqdm.auto import tqdm

    settings = int8_settings(cpu_flags())
    steps = {
        "optimum-fp32": lambda o: export_optimum(src, o),
        "optimum-o2": lambda o: optimize_graph(out / "optimum-fp32", o),
        "optimum-int8": lambda o: quantize_int8(out / "optimum-o2", o, settings),
        "genai-fp32": lambda o: build_genai(src, o, "fp32", out / ".builder-cache"),
        "genai-int4": (lambda o: shutil.copytree(published, o)) if published else
                      (lambda o: build_genai(src, o, "int4", out / ".builder-cache", int4_options)),
        "genai-int8": lambda o: build_genai(src, o, "int8", out / ".builder-cache"),
    }
    log = {"int8": settings, "int4": int4_options or {}, "variants": {}}
    bar = tqdm([v for v in VARIANTS if v.name in variants], desc="converting", disable=not progress)
    for variant in bar:
        bar.set_postfix_str(variant.name)
        start = time.perf_counter()
        try:
            steps[variant.name](out / variant.name)
            log["variants"][variant.name] = {"seconds": round(time.perf_counter() - start, 1),
                                             "bytes": folder_size(out / variant.name)}
        except Exception as err:  # a variant this version cannot build is reported, not hidden
            shutil.rmtree(out / variant.name, ignore_errors=True)
            log["variants"][variant.name] = {"error": f"{type(err).__name__}: {str(err)[-600:]}"}
    shutil.rmtree(out / ".builder-cache", ignore_errors=True)
    (out / "conversion.json").write_text(json.dumps(log, indent=2))
    return log


def converted(card, progress: bool = True) -> Path:
    """The cached ONNX folder of model ``card`` (the variants its card lists), converted first if missing."""
    src = card.hf_folder(progress)
    published = card.source.published_onnx() if getattr(card.source, "onnx_repo", None) else None
    return build_once(cache_dir() / "onnx" / conversion_key(src, card.onnx_variants, card.int4_options),
                      lambda tmp: convert(src, tmp, card.onnx_variants, published, progress, card.int4_options),
                      done="conversion.json")


def cuda_build(card, variant: str, progress: bool = True) -> Path:
    """The CUDA build ``variant`` (``CUDA_BUILDS``) of model ``card``, made once beside its converted variants (it
    is built on a CPU like them; only the engine on a GPU asks for it)."""
    import tempfile

    folder = converted(card, progress)

    def build(out: Path) -> None:
        if progress:
            print(f"building {variant} (onnxruntime-genai's builder, -e cuda) …", flush=True)
        with tempfile.TemporaryDirectory(dir=folder) as work:
            build_genai(card.hf_folder(progress), out, CUDA_BUILDS[variant], Path(work), provider="cuda")

    return build_once(folder / variant, build, done="genai_config.json")


def conversion_log(folder: Path) -> dict:
    return json.loads((folder / "conversion.json").read_text())
