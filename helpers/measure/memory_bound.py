"""The memory-bandwidth bound on single-stream decoding: each token reads the weights once, so no backend can
decode faster than (bytes this machine reads per second) / (bytes of weights a decode step reads). A step reads
every weight matrix, but of the token-embedding table only one row per token — unless the LM head shares it
(tied embeddings), which reads it whole. Counted here per form: an onnxruntime-genai build, a Hugging Face
folder served in a dtype, a GGUF."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


def read_bandwidth(threads: int, megabytes: int = 1024, repeats: int = 5) -> float:
    """Bytes per second ``threads`` cores read together: each sums its own part of an array far larger than the
    caches (numpy releases the GIL while it sums); the best of ``repeats``."""
    from concurrent.futures import ThreadPoolExecutor

    parts = [np.ones(megabytes * 2**20 // 4 // threads, dtype=np.float32) for _ in range(threads)]
    with ThreadPoolExecutor(threads) as pool:
        def once() -> float:
            start = time.perf_counter()
            list(pool.map(np.sum, parts))
            return time.perf_counter() - start
        best = min(once() for _ in range(repeats))
    return sum(p.nbytes for p in parts) / best


def onnx_bytes_per_token(folder: Path) -> int:
    """An onnxruntime-genai build: every initializer, except tables only gathered from (the token embedding)."""
    import onnx

    model = onnx.load(str(folder / "model.onnx"), load_external_data=False)
    gathered = {n.input[0] for n in model.graph.node if n.op_type == "Gather"}
    other = {i for n in model.graph.node if n.op_type != "Gather" for i in n.input}

    def size(t) -> int:
        external = {e.key: e.value for e in t.external_data}
        return int(external["length"]) if "length" in external else len(t.raw_data)
    return sum(size(t) for t in model.graph.initializer if not (t.name in gathered and t.name not in other))


def hf_bytes_per_token(folder: Path, dtype: str) -> int:
    """A Hugging Face folder served in ``dtype``: every tensor of its safetensors at that width, the embedding
    table left out unless the LM head is tied to it."""
    from safetensors import safe_open

    config = json.loads((folder / "config.json").read_text())
    sizes = {}
    for file in folder.glob("*.safetensors"):
        with safe_open(str(file), "np") as tensors:
            for name in tensors.keys():
                sizes[name] = int(np.prod(tensors.get_slice(name).get_shape())) * DTYPE_BYTES[dtype]
    tied = config.get("tie_word_embeddings", False) or not any(n.endswith("lm_head.weight") for n in sizes)
    return sum(size for name, size in sizes.items() if tied or not name.endswith("embed_tokens.weight"))


def gguf_bytes_per_token(path: Path) -> int:
    """A GGUF: every tensor as stored (its quantised blocks), ``token_embd`` left out unless there is no
    separate ``output`` tensor (tied)."""
    from gguf import GGUFReader

    sizes = {t.name: int(t.n_bytes) for t in GGUFReader(str(path)).tensors}
    tied = "output.weight" not in sizes
    return sum(size for name, size in sizes.items() if tied or name != "token_embd.weight")


def bytes_per_token(card, backend: str) -> int:
    """What one decode step of ``backend`` reads of the form of ``card`` it serves (an ONNX build, a GGUF, or the
    Hugging Face folder in the dtype it is served in); made first where missing."""
    from helpers import backends

    entry = backends.get(backend)
    if "onnx" in entry.needs:
        return onnx_bytes_per_token(entry.prepare(card, "local", progress=False))
    if "gguf" in entry.needs:
        return gguf_bytes_per_token(card.gguf(progress=False))
    return hf_bytes_per_token(card.hf_folder(progress=False), getattr(entry.options(card), "dtype", "float32"))
