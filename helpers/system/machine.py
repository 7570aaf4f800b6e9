"""What this machine offers the lab: Python, memory, disk, Docker, GPU, registries; and which runtime to use."""
from __future__ import annotations

import platform
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from helpers.system.cpus import available_cpus
from helpers.system.paths import cache_dir

RUNTIMES = ("local", "docker")
# The offline base image compose/engine/setup-local-engine.sh makes where no registry is reachable (Debian bookworm
# with python3); Dockerfiles that take ``ARG BASE`` build FROM it when it exists, FROM their public default otherwise.
OFFLINE_BASE = "slm-deploy-lab/base:bookworm"


@dataclass
class Environment:
    python: str
    platform: str
    cpus: int
    ram_gb: float
    ram_available_gb: float
    disk_free_gb: float
    cpu_flags: list[str]
    docker: str | None  # daemon version, or None when no daemon answers
    docker_error: str | None
    nvidia_runtime: bool
    gpus: list[str]
    registry: bool = False  # Docker Hub answers: official images can be pulled
    gpu_memory_gb: float = 0.0  # the largest GPU's memory (0 without a GPU)
    system: str = "Linux"  # platform.system(): Linux, Darwin, Windows
    machine: str = "x86_64"  # the architecture by the name wheels use: x86_64, aarch64
    wsl: bool = False  # Linux inside Windows (WSL2): its memory is what .wslconfig gives it
    memory_limit_gb: float | None = None  # a cgroup's limit on this process (a container, WSL, a systemd slice)

    @property
    def memory_gb(self) -> float:
        """The memory the lab may actually use: the machine's RAM, or less where a cgroup limits this process."""
        return min(self.ram_gb, self.memory_limit_gb or self.ram_gb)

    def as_dict(self) -> dict:
        return {**asdict(self), "memory_gb": self.memory_gb}


ARCH = {"amd64": "x86_64", "x64": "x86_64", "x86_64": "x86_64", "arm64": "aarch64", "aarch64": "aarch64"}


def architecture(machine: str | None = None) -> str:
    """The architecture by the name Linux wheels and images use (macOS says arm64, Windows AMD64)."""
    name = (machine or platform.machine()).lower()
    return ARCH.get(name, name)


def cpu_model() -> str:
    """The CPU's model name (Linux's /proc/cpuinfo; "unknown" elsewhere)."""
    info = Path("/proc/cpuinfo")
    lines = info.read_text().splitlines() if info.exists() else []
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "unknown")


def is_wsl() -> bool:
    try:
        return "microsoft" in Path("/proc/version").read_text().lower()
    except OSError:
        return False


def _cgroup_memory_folders(root: Path, proc: Path) -> list[Path]:
    """The memory controller's folders of this process's cgroups (v2: the unified one; v1: the memory one)."""
    try:
        lines = proc.read_text().splitlines()
    except OSError:
        return []
    folders = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            folders.append(root / path.lstrip("/"))
        elif "memory" in controllers.split(","):
            folders.append(root / "memory" / path.lstrip("/"))
    return folders


def cgroup_memory_limit(root: Path = Path("/sys/fs/cgroup"), proc: Path = Path("/proc/self/cgroup")) -> float | None:
    """The memory limit (GB) of this process's cgroup, v2 (``memory.max``) or v1 (``memory.limit_in_bytes``), None
    where none is set: what a container's ``--memory``, a systemd slice or a test's cgroup allows."""
    for folder in _cgroup_memory_folders(root, proc):
        for name in ("memory.max", "memory.limit_in_bytes"):
            try:
                text = (folder / name).read_text().strip()
            except OSError:
                continue
            if text.isdigit() and int(text) < 2**60:  # v1 says 9223372036854771712 for "none"
                return round(int(text) / 2**30, 1)
    return None


def _cpu_flags() -> list[str]:
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        return []
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return sorted(f for f in flags if f in {"avx", "avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile"})


def docker_status(timeout: float = 5.0) -> tuple[str | None, bool, str | None]:
    """(daemon version or None, nvidia runtime present, error text) for the local Docker daemon."""
    try:
        import docker
        client = docker.from_env(timeout=timeout)
        info = client.info()
        return client.version().get("Version"), "nvidia" in info.get("Runtimes", {}), None
    except Exception as err:  # no SDK, no socket, daemon down: all mean "no Docker here"
        text = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
        if "PermissionError" in text or "Permission denied" in text:
            text = ("the Docker daemon runs, but this user may not use its socket: add yourself to the `docker` group "
                    "(sudo usermod -aG docker $USER, then log in again)")
        return None, False, text


def gpu_memory_gb(gpus: list[str]) -> float:
    """The largest memory among nvidia-smi's ``name, 81559 MiB`` lines, in GB."""
    sizes = [float(line.rsplit(",", 1)[1].split()[0]) * 2**20 / 1e9 for line in gpus if "MiB" in line]
    return round(max(sizes, default=0.0), 1)


def nvidia_gpus() -> list[str]:
    """GPU names that nvidia-smi reports, or [] without a driver."""
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()] if out.returncode == 0 else []


def registry_reachable(timeout: float = 4.0) -> bool:
    """True when Docker Hub's registry answers as a registry (a proxy's error page does not count)."""
    import requests

    try:
        response = requests.get("https://registry-1.docker.io/v2/", timeout=timeout)
    except requests.RequestException:
        return False
    return response.headers.get("Docker-Distribution-Api-Version", "").startswith("registry/2")


def check_environment() -> Environment:
    """Inspect this machine."""
    import psutil

    mem = psutil.virtual_memory()
    version, nvidia, error = docker_status()
    gpus = nvidia_gpus()
    return Environment(
        python=sys.version.split()[0], platform=platform.platform(), cpus=available_cpus(),
        ram_gb=round(mem.total / 2**30, 1), ram_available_gb=round(mem.available / 2**30, 1),
        disk_free_gb=round(shutil.disk_usage(cache_dir()).free / 2**30, 1), cpu_flags=_cpu_flags(),
        docker=version, docker_error=error, nvidia_runtime=nvidia, gpus=gpus,
        registry=bool(version) and registry_reachable(), gpu_memory_gb=gpu_memory_gb(gpus),
        system=platform.system(), machine=architecture(), wsl=is_wsl(), memory_limit_gb=cgroup_memory_limit(),
    )


def runtime_choice(requested: str, env: Environment) -> tuple[str, str]:
    """(runtime, why) for ``requested`` ('local', 'docker' or 'auto'): 'auto' means docker when a daemon answers
    and Docker Hub is reachable (the docker runtime pulls the official images), else local."""
    if requested == "auto":
        if not env.docker:
            return "local", f"auto: no Docker daemon answers ({env.docker_error})"
        if not env.registry:
            return "local", ("auto: Docker Hub does not answer, so the official images cannot be pulled "
                             "(RUNTIME=docker runs the lab's local stand-in images instead)")
        return "docker", f"auto: Docker {env.docker} answers and Docker Hub is reachable: the official images"
    if requested not in RUNTIMES:
        raise ValueError(f"runtime must be one of {RUNTIMES} or 'auto', not {requested!r}")
    if requested == "docker" and not env.docker:
        raise RuntimeError(f"runtime 'docker' needs a reachable Docker daemon: {env.docker_error}")
    return requested, "asked for"


def resolve_runtime(requested: str, env: Environment) -> str:
    """The runtime ``runtime_choice`` picks."""
    return runtime_choice(requested, env)[0]


def memory_available_gb() -> float:
    """Memory free for the lab right now: what the OS calls available, and no more than a cgroup's limit less
    what the cgroup already holds (a container's, WSL's or a test's limit)."""
    import psutil

    available = psutil.virtual_memory().available / 2**30
    limit = cgroup_memory_limit()
    if limit is not None:
        used = _cgroup_memory_used()
        available = min(available, limit - used) if used is not None else available
    return round(max(0.0, available), 1)


def _cgroup_memory_used(root: Path = Path("/sys/fs/cgroup"), proc: Path = Path("/proc/self/cgroup")) -> float | None:
    """What this process's cgroup holds now (GB; v2 ``memory.current``, v1 ``memory.usage_in_bytes``, page cache
    the kernel can drop left out)."""
    for folder in _cgroup_memory_folders(root, proc):
        for usage_name, cache_key in (("memory.current", "file"), ("memory.usage_in_bytes", "total_inactive_file")):
            try:
                usage = int((folder / usage_name).read_text())
                stat = dict(line.split() for line in (folder / "memory.stat").read_text().splitlines())
            except (OSError, ValueError):
                continue
            return (usage - int(stat.get(cache_key, 0))) / 2**30
    return None


def largest_programs(count: int = 3, skip: set[int] | None = None) -> list[str]:
    """The programs holding the most memory now ("firefox 2.1 GB"), leaving out ``skip`` (the lab's own pids)."""
    import psutil

    sizes: dict[str, int] = {}
    for proc in psutil.process_iter(["pid", "name", "memory_info"]):
        if proc.info["memory_info"] is None or proc.info["pid"] in (skip or set()):
            continue
        sizes[proc.info["name"]] = sizes.get(proc.info["name"], 0) + proc.info["memory_info"].rss
    biggest = sorted(sizes.items(), key=lambda item: -item[1])[:count]
    return [f"{name} {size / 2**30:.1f} GB" for name, size in biggest]
