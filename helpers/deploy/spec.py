"""What runs a backend, written once for both runtimes: ``BackendSpec`` (image or Dockerfile, command, port,
env, volumes, health path, API flavour, limits), and the commands that do what a runtime does with it
(``docker run`` and the local process line, copy-pasteable).
"""
from __future__ import annotations

import math
import os
import shlex
import socket
import uuid
from dataclasses import dataclass, field
from pathlib import Path

LABEL = "slm-deploy-lab"  # on everything the lab creates: containers, volumes, networks, compose projects
IMAGE_LABEL = f"{LABEL}.image"  # on images the lab builds; a key of its own, for containers inherit image labels


def process_started(pid: int) -> str:
    """When process ``pid`` started (a pid that has been reused started later), or "" where that is not known."""
    try:
        import psutil
        return f"{psutil.Process(pid).create_time():.2f}"
    except Exception:  # no psutil (an image), or no such process
        return ""


# This process (a notebook's kernel, a test run, make present): the owner of what the lab creates from it.
SESSION = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
OWNER = {f"{LABEL}.session": SESSION, f"{LABEL}.owner-host": socket.gethostname(),
         f"{LABEL}.owner-pid": str(os.getpid()), f"{LABEL}.owner-started": process_started(os.getpid())}


def owned_by_the_living(labels: dict) -> bool:
    """Whether the session that created a labelled thing is still running (on another host: assumed so)."""
    if labels.get(f"{LABEL}.owner-host") != socket.gethostname():
        return True
    pid = labels.get(f"{LABEL}.owner-pid", "")
    started = process_started(int(pid)) if pid.isdigit() else ""
    return bool(started) and started == labels.get(f"{LABEL}.owner-started", started)


def memory_limit(need: float) -> str:
    """A container memory limit with headroom over ``need`` GB (the model card's RAM need)."""
    return f"{max(2, math.ceil(need * 1.25))}g"


@dataclass
class StandIn:
    """A local image standing in for an official one where no registry answers (CI machines).

    Built from ``dockerfile`` in a context of ``files`` plus a wheelhouse of ``wheels`` made for the
    image's Python; ``volumes`` are mounted only into the stand-in (e.g. its local model library).
    """

    dockerfile: str
    files: dict[str, Path]
    wheels: Path | tuple[str, ...]
    volumes: dict[str, str] = field(default_factory=dict)


@dataclass
class BackendSpec:
    """How to run one backend, in a container or as a local process."""

    name: str
    port: int  # the port the server listens on (inside the container, or locally if free)
    image: str | None = None  # pulled by DockerRuntime
    build_context: Path | None = None  # or built from this folder (a Dockerfile under compose/)
    dockerfile: str | None = None  # path of the Dockerfile inside the build context
    build_args: dict[str, str] = field(default_factory=dict)  # the Dockerfile's ARGs
    build_name: str | None = None  # the built image's name where it differs from ``name`` (a variant of the image)
    build_files: dict[str, Path] | None = None  # or a context made of just these (name in context -> path)
    wheels: Path | tuple[str, ...] | None = None  # requirements whose wheelhouse joins the context as wheels/
    command: list[str] = field(default_factory=list)  # container command (args after the image's entrypoint)
    local_command: list[str] | None = None  # argv for LocalRuntime; "{port}" is replaced by the port
    env: dict[str, str] = field(default_factory=dict)
    volumes: dict[str, str] = field(default_factory=dict)  # host path or named volume -> container path[:ro]
    health_path: str = "/health"
    api: str = "openai"  # "openai" or "ollama": which client talks to it
    mem_limit: str | None = None
    cpus: float | None = None
    gpu: bool = False  # ask for GPUs when the daemon can give them
    shm_size: str | None = None
    user: str | None = None
    # The hardening of the linted compose stacks, on every container the deploy layer starts: every capability
    # dropped (``cap_add`` gives back what an image needs, with its reason beside it), no new privileges, a PIDs
    # limit, and a read-only root with a tmpfs /tmp where the image writes nothing else.
    cap_add: list[str] = field(default_factory=list)
    security_opt: list[str] = field(default_factory=list)  # beside no-new-privileges
    read_only: bool = False
    pids_limit: int = 1024
    standin: StandIn | None = None  # what replaces ``image`` where no registry answers

    @property
    def built_image(self) -> str:
        """The tag of the image the lab builds for it (``slm-deploy-lab/<name>:local``)."""
        return f"{LABEL}/{self.build_name or self.name}:local"

    def add_server_args(self, runtime: str, args) -> None:
        """Server flags added to its command line on ``runtime`` (e.g. vLLM's ``--max-model-len 256``)."""
        command = self.local_command if runtime == "local" else self.command
        if not command:  # Ollama's image: its settings are environment variables, a model's are in a Modelfile
            raise ValueError(f"{self.name} takes no command-line flags on the {runtime} runtime")
        command.extend(args)


def docker_run_kwargs(spec: BackendSpec, image: str, host_port: int, gpu_available: bool,
                      standin: bool = False) -> dict:
    """The ``containers.run`` arguments for ``spec`` (``standin``: its local stand-in image runs instead)."""
    from docker.types import DeviceRequest

    volumes = {**spec.volumes, **(spec.standin.volumes if standin else {})}
    kwargs = {
        "image": image, "command": list(spec.command) or None, "detach": True,
        "name": f"{LABEL}-{spec.name}-{host_port}",
        "ports": {f"{spec.port}/tcp": ("127.0.0.1", host_port)},
        "environment": dict(spec.env), "labels": {LABEL: "1", f"{LABEL}.backend": spec.name, **OWNER},
        "volumes": {src: {"bind": dst.removesuffix(":ro"), "mode": "ro" if dst.endswith(":ro") else "rw"}
                    for src, dst in volumes.items()},
    }
    if spec.mem_limit:
        kwargs["mem_limit"] = spec.mem_limit
    if spec.cpus:
        kwargs["nano_cpus"] = int(spec.cpus * 1e9)
    if spec.shm_size:
        kwargs["shm_size"] = spec.shm_size
    if spec.user:
        kwargs["user"] = spec.user
    kwargs["cap_drop"] = ["ALL"]
    if spec.cap_add:
        kwargs["cap_add"] = list(spec.cap_add)
    kwargs["security_opt"] = ["no-new-privileges:true", *spec.security_opt]
    kwargs["pids_limit"] = spec.pids_limit
    if spec.read_only:
        kwargs["read_only"], kwargs["tmpfs"] = True, {"/tmp": ""}
    if spec.gpu and gpu_available:
        kwargs["device_requests"] = [DeviceRequest(count=-1, capabilities=[["gpu"]])]
    return kwargs


def _for_people(source: str) -> str:
    """A volume's source as a learner would write it: a named volume without the lab's prefix, this repository's
    folders from ``$PWD`` (its root), the lab's cache as a folder of the learner's own."""
    from helpers.system.paths import REPO, cache_dir

    if "/" not in source:
        return source.removeprefix(f"{LABEL}-")
    path = Path(source)
    if path.is_relative_to(REPO):
        return f"$PWD/{path.relative_to(REPO)}"
    if path.is_relative_to(cache_dir()):
        return f"$HOME/models/{path.name}"
    return source


def docker_command(kwargs: dict, for_people: bool = False) -> str:
    """The ``docker run`` command line that does what ``containers.run(**kwargs)`` does (copy-pasteable).
    ``for_people``: as a learner would type it — no lab labels, the container named after its backend, the
    container's port on the same host port, the lab's cache folders as folders of the learner's own."""
    name = kwargs["labels"].get(f"{LABEL}.backend", kwargs["name"]) if for_people else kwargs["name"]
    argv = ["docker", "run", "-d", "--name", name]
    for port, (host, host_port) in kwargs["ports"].items():
        container_port = port.split("/")[0]
        argv += ["-p", f"{host}:{container_port if for_people else host_port}:{container_port}"]
    for key, value in kwargs["environment"].items():
        argv += ["-e", f"{key}={'<your token>' if 'TOKEN' in key else value}"]
    for src, bind in kwargs["volumes"].items():
        argv += ["-v", f"{_for_people(src) if for_people else src}:{bind['bind']}" + (":ro" if bind["mode"] == "ro" else "")]
    flags = {"mem_limit": "--memory", "shm_size": "--shm-size", "user": "--user"}
    argv += [part for key, flag in flags.items() if key in kwargs for part in (flag, str(kwargs[key]))]
    if "nano_cpus" in kwargs:
        argv += ["--cpus", f"{kwargs['nano_cpus'] / 1e9:g}"]
    argv += [part for cap in kwargs.get("cap_drop", []) for part in ("--cap-drop", cap)]
    argv += [part for cap in kwargs.get("cap_add", []) for part in ("--cap-add", cap)]
    argv += [part for opt in kwargs.get("security_opt", []) for part in ("--security-opt", opt)]
    if "pids_limit" in kwargs:
        argv += ["--pids-limit", str(kwargs["pids_limit"])]
    if kwargs.get("read_only"):
        argv += ["--read-only", *[part for path in kwargs.get("tmpfs", {}) for part in ("--tmpfs", path)]]
    if kwargs.get("device_requests"):
        argv += ["--gpus", "all"]
    if not for_people:
        argv += [part for key, value in kwargs["labels"].items() for part in ("--label", f"{key}={value}")]
    argv += [kwargs["image"], *(kwargs["command"] or [])]
    # $PWD and $HOME stay for the shell to expand: double quotes where a part holds one
    return _join(argv)


def _join(argv: list[str]) -> str:
    """A shell line; parts that start with $PWD or $HOME stay expandable (double quotes)."""
    return " ".join(f'"{part}"' if part.startswith(("$PWD/", "$HOME/")) else shlex.quote(part) for part in argv)


def local_command(spec: BackendSpec, port: int, for_people: bool = False) -> str:
    """The shell command that ``LocalRuntime`` runs for ``spec`` (environment first, copy-pasteable).
    ``for_people``: as a learner would type it from this repository's root — programs by name, the lab's cache
    folders as folders of the learner's own."""
    import sys

    from helpers.system.paths import REPO, cache_dir

    def person(part: str) -> str:
        if part == sys.executable or part.startswith(str(cache_dir() / "venvs")):
            return Path(part).name if part != sys.executable else "python"
        path = Path(part)
        if not path.is_absolute():
            return part
        return (str(path.relative_to(REPO)) if path.is_relative_to(REPO) else
                f"$HOME/models/{path.name}" if path.is_relative_to(cache_dir()) else part)

    argv = [part.replace("{port}", str(port)) for part in spec.local_command]
    if for_people:
        argv = [person(part) for part in argv]
    return " ".join([f"{k}={shlex.quote(v)}" for k, v in spec.env.items()] + [_join(argv)])
