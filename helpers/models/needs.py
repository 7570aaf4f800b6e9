"""What a model needs of a machine, per form (disk, RAM, VRAM), and the guard that checks it before any download.

Also what Phi-4-mini needs per precision: the seed tutorial's resource table, corrected.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Need:
    """What one form of a model needs (GB): disk for its files, RAM to serve it on a CPU, VRAM on a GPU, and RAM
    to make it (a download or conversion) where that takes more than serving it. ``measured`` says how the RAM
    figures were measured (``slm-lab-footprint``, a build under ``/usr/bin/time``); empty: an estimate."""

    disk: float
    ram: float
    vram: float = 0.0
    build: float = 0.0
    measured: str = ""


class ResourceError(RuntimeError):
    """This machine cannot hold what a model needs; the message names what is short."""


def ram_needed(card, forms: tuple[str, ...], together: bool = False) -> float:
    """RAM (GB) for ``forms`` of ``card``: to make and serve the largest one, or, when the forms are served
    ``together`` (made beforehand, one at a time), the sum of serving them."""
    needs = [card.needs[form] for form in forms]
    return sum(n.ram for n in needs) if together else max(max(n.ram, n.build) for n in needs)


def shortfalls(card, forms: tuple[str, ...], ram_gb: float, disk_free_gb: float,
               gpu_memory_gb: float | None = None, together: bool = False) -> list[str]:
    """What this machine lacks to make and run ``forms`` of ``card`` (empty: it fits); ``ram_gb``: the memory
    the lab may use (a cgroup's or WSL's limit where lower than the machine's RAM).

    Disk adds up over the forms; RAM as ``ram_needed``; VRAM counts only when a GPU will be used.
    """
    needs = {form: card.needs[form] for form in forms}
    disk = sum(n.disk for n in needs.values())
    ram = ram_needed(card, forms, together)
    problems = []
    if disk > disk_free_gb:
        problems.append(f"disk: {disk:.1f} GB needed for {', '.join(forms)}, {disk_free_gb:.1f} GB free")
    if ram > ram_gb:
        problems.append(f"RAM: {ram:.1f} GB needed for {', '.join(forms)}{' at once' if together else ''}, "
                        f"{ram_gb:.1f} GB for the lab here")
    vram = max((n.vram for n in needs.values()), default=0.0)
    if gpu_memory_gb is not None and vram > gpu_memory_gb:
        problems.append(f"GPU memory: {vram:.1f} GB needed, {gpu_memory_gb:.1f} GB on the GPU")
    return problems


# The seed tutorial's resource table for Phi-4-mini (GB), as printed: it never says which precision,
# and its GPU profile's 4-6 GB of VRAM cannot hold the 7.7 GB of bf16 weights.
SEED_RESOURCES = {
    "development": {"RAM": "6-8 GB", "disk": "8 GB"},
    "production CPU": {"RAM": "8-12 GB", "disk": "10 GB"},
    "production GPU": {"RAM": "6-8 GB", "disk": "8 GB", "VRAM": "4-6 GB"},
    "edge-optimised (quantised)": {"RAM": "4-6 GB", "disk": "6 GB"},
}
# Bytes per weight by precision; Q4_K_M's is Ollama's phi4-mini file (2.5 GB) over its 3.84B weights.
PRECISIONS = {"fp32": 4.0, "bf16 (vLLM GPU, transformers)": 2.0, "Q8_0 (llama.cpp)": 8.5 / 8,
              "Q4_K_M (Ollama's phi4-mini)": 2.5e9 / 3.84e9}
RUN_OVERHEAD_GB = 1.5  # KV cache for 4K tokens (~0.5 GB in bf16) and the runtime itself


def precision_table(card, env) -> list[dict]:
    """What ``card`` needs per precision (weights from its parameter count, plus KV cache and runtime to
    run it), and whether this machine's RAM and GPU memory hold it."""
    rows = []
    for precision, nbytes in PRECISIONS.items():
        weights = card.parameters * nbytes / 1e9
        need = weights + RUN_OVERHEAD_GB
        rows.append({"precision": precision, "weights GB": round(weights, 1), "RAM or VRAM to run, GB": round(need, 1),
                     "fits this RAM": "yes" if env.ram_gb >= need else f"no ({env.ram_gb} GB)",
                     "fits this GPU": ("yes" if env.gpu_memory_gb >= need else f"no ({env.gpu_memory_gb} GB)")
                     if env.gpus else "no GPU"})
    return rows


