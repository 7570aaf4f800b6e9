"""Start, watch and stop a serving backend: one interface, two runtimes.

A backend is described once as a ``helpers.deploy.spec.BackendSpec`` and started by either

- ``DockerRuntime``: the Docker SDK for Python (pull with progress or build from
  ``compose/``, run detached on 127.0.0.1 with limits, a GPU only where the daemon
  has the nvidia runtime, a label on everything; where no registry answers, an
  official image is replaced by a local stand-in built from compose/, labelled as
  such), or
- ``LocalRuntime``: a local process (from the backend's own virtualenv where its
  pins conflict with the kernel's), in its own process group, killed with the
  kernel if the kernel dies.

Both wait for health with a timeout, fail fast when the backend exits (the
error carries its last log lines), expose logs, stop cleanly, clean up when a
start fails, and ``cleanup()`` removes strays a crashed kernel left behind —
modelled on testcontainers-python.
"""
from __future__ import annotations

import atexit
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from helpers.deploy.spec import (IMAGE_LABEL, LABEL, OWNER, SESSION, BackendSpec, docker_run_kwargs,
                                 owned_by_the_living)
from helpers.system.machine import OFFLINE_BASE
from helpers.system.paths import cache_dir


class DeployError(RuntimeError):
    """A backend did not come up; the message ends with its last log lines."""


@dataclass
class Deployment:
    """A running backend: where it answers, and how to read its logs and stop it."""

    spec: BackendSpec
    base_url: str
    runtime: "DockerRuntime | LocalRuntime"
    handle: object  # a docker Container or a subprocess.Popen
    log_path: Path | None = None  # where a local process writes its output
    ready_s: float = 0.0  # seconds from start to healthy

    def logs(self, tail: int = 50) -> str:
        return self.runtime.logs(self, tail)

    def memory_bytes(self) -> int:
        """Resident memory of the backend now (its process tree, or its container)."""
        return self.runtime.memory(self)

    def stop(self) -> None:
        self.runtime.stop(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_FIRST_ERROR = re.compile(r"error|exception|killed|cannot|can't|failed|no such|not found|denied|refused", re.I)
_RAISED = re.compile(r"^\s*([\w.]+(Error|Exception|Exit|Interrupt)|Killed)\b")  # "ValueError: …", not "raise …"
_TRACEBACK = re.compile(r"^\s*(File \"|Traceback|raise |\^|~)")


def first_error(log: str) -> str:
    """The first line of ``log`` that says what went wrong (a traceback's cause comes before its 40 lines): the
    first exception raised, else the first line that sounds like an error, leaving out traceback source lines."""
    lines = [line.strip() for line in log.splitlines() if line.strip() and not _TRACEBACK.match(line)]
    return next((line for line in lines if _RAISED.match(line)),
                next((line for line in lines if _FIRST_ERROR.search(line)), ""))


def wait_for_health(url: str, is_alive, logs, timeout: float, interval: float = 0.5) -> float:
    """Poll ``url`` until it answers 2xx; fail fast when ``is_alive()`` turns False.

    Returns the seconds it took. Raises ``DeployError`` on exit or timeout: one line that says why first (what
    ``is_alive`` reports, and the first error line of the log), then the log's last lines.
    """
    start = time.monotonic()
    last = "no answer yet"
    while time.monotonic() - start < timeout:
        alive, why = is_alive()
        if not alive:
            log = logs()
            cause = first_error(log)
            raise DeployError(f"the backend exited before it was healthy: {why}" + (f" — {cause}" if cause else "")
                              + f"\nlast log lines:\n{log}")
        try:
            response = requests.get(url, timeout=2)
            if response.ok:
                return time.monotonic() - start
            last = f"HTTP {response.status_code}"
        except requests.RequestException as err:
            last = type(err).__name__
        time.sleep(interval)
    raise DeployError(f"{url} not healthy after {timeout:.0f} s ({last}); last log lines:\n{logs()}")


# ----------------------------------------------------------------------------- docker

class DockerRuntime:
    """Backends as containers, through the Docker SDK for Python."""

    name = "docker"

    def __init__(self, client=None, registry: bool | None = None):
        """``registry``: whether official images can be pulled (default: ask Docker Hub)."""
        import docker

        from helpers.system.machine import registry_reachable
        self.client = client or docker.from_env()
        self.gpu_available = "nvidia" in self.client.info().get("Runtimes", {})
        self.registry = registry_reachable() if registry is None else registry
        self._running: dict[str, Deployment] = {}
        atexit.register(self.stop_all)  # a kernel that ends (or fails) takes its containers along
        if client is None:
            self.sweep()  # what a kernel that was killed (the OOM killer, a power cut) left running

    def uses_standin(self, spec: BackendSpec) -> bool:
        """True when ``spec``'s official image is neither here nor pullable, so its stand-in runs."""
        import docker

        if not spec.image or not spec.standin or self.registry:
            return False
        try:
            self.client.images.get(spec.image)
            return False
        except docker.errors.ImageNotFound:
            return True

    def ensure_image(self, spec: BackendSpec, progress: bool = True) -> str:
        """The image for ``spec``: built from its context, present, pulled (progress bar), or its local stand-in."""
        import docker
        from tqdm.auto import tqdm

        if spec.build_context or spec.build_files:
            return self.build(spec.build_name or spec.name, spec.dockerfile, spec.build_files, spec.wheels, progress,
                               context=spec.build_context, build_args=spec.build_args)
        if self.uses_standin(spec):
            print(f"no registry answers: {spec.image} is replaced by a LOCAL STAND-IN image built from "
                  f"{spec.standin.dockerfile} (labelled {LABEL}.standin-for={spec.image})", flush=True)
            return self.build(f"{spec.name}-standin", spec.standin.dockerfile, spec.standin.files,
                               spec.standin.wheels, progress, labels={f"{LABEL}.standin-for": spec.image})
        try:
            self.client.images.get(spec.image)
            return spec.image
        except docker.errors.ImageNotFound:
            pass
        layers: dict[str, tuple[int, int]] = {}
        bar = tqdm(desc=f"pulling {spec.image}", unit="B", unit_scale=True, disable=not progress)
        try:
            for event in self.client.api.pull(spec.image, stream=True, decode=True):
                detail = event.get("progressDetail") or {}
                if event.get("id") and detail.get("total"):
                    layers[event["id"]] = (detail.get("current", 0), detail["total"])
                    bar.total = sum(t for _, t in layers.values())
                    bar.n = sum(c for c, _ in layers.values())
                    bar.refresh()
        except docker.errors.APIError as err:
            raise DeployError(f"cannot pull {spec.image}: {err.explanation or err}") from err
        finally:
            bar.close()
        return spec.image

    def start(self, spec: BackendSpec, timeout: float = 300, host_port: int | None = None,
              progress: bool = True) -> Deployment:
        """Run ``spec`` detached, wait for health; on any failure remove the container and raise."""
        standin = self.uses_standin(spec)
        image = self.ensure_image(spec, progress)
        host_port = host_port or free_port()
        kwargs = docker_run_kwargs(spec, image, host_port, self.gpu_available, standin)
        self._volumes(kwargs["volumes"])
        container = self.client.containers.run(**kwargs)
        deployment = Deployment(spec, f"http://127.0.0.1:{host_port}", self, container)
        self._running[container.id] = deployment
        try:
            deployment.ready_s = wait_for_health(deployment.base_url + spec.health_path, lambda: self._alive(container),
                                                 lambda: self.logs(deployment, 40), timeout)
        except BaseException:
            self.stop(deployment)
            raise
        return deployment

    def build(self, name: str, dockerfile: str | None, files: dict[str, Path] | None, wheels, progress: bool = True,
               context: Path | None = None, labels: dict | None = None, build_args: dict | None = None) -> str:
        """Build image ``slm-deploy-lab/<name>:local`` (progress bar) from ``files`` plus the wheelhouse of
        ``wheels`` (made for the image's Python by this machine's pip), or from the folder ``context``. The image
        it replaces is removed when it carries the lab's label and no container uses it (no untagged gigabytes
        pile up as the lab's sources change)."""
        import tempfile

        import docker
        from tqdm.auto import tqdm

        from helpers.system import venvs

        tag = f"{LABEL}/{name}:local"
        try:
            before = self.client.images.get(tag)
        except docker.errors.ImageNotFound:
            before = None
        kwargs = {"tag": tag, "decode": True, "rm": True, "labels": {IMAGE_LABEL: "1", **(labels or {})},
                  "dockerfile": dockerfile, "buildargs": dict(build_args or {})}
        try:
            self.client.images.get(OFFLINE_BASE)
            kwargs["buildargs"]["BASE"] = OFFLINE_BASE
        except docker.errors.ImageNotFound:
            pass
        with tempfile.TemporaryFile() as archive:
            if files:
                _tar_context({**files, **({"wheels": venvs.wheelhouse(wheels, progress)} if wheels else {})}, archive)
                kwargs.update(fileobj=archive, custom_context=True)
            else:
                kwargs["path"] = str(context)
            bar = tqdm(desc=f"building {tag}", unit=" steps", disable=not progress)
            for chunk in self.client.api.build(**kwargs):
                if "error" in chunk:
                    raise DeployError(f"docker build of {tag} failed: {chunk['error']}")
                if chunk.get("stream", "").startswith("Step "):
                    bar.update(1)
            bar.close()
        if before is not None and before.labels.get(IMAGE_LABEL) and before.id != self.client.images.get(tag).id:
            try:
                self.client.images.remove(before.id)
            except docker.errors.APIError:  # a container (running or stopped) still uses it
                pass
        return tag

    @staticmethod
    def _alive(container) -> tuple[bool, str]:
        container.reload()
        state, limit = container.attrs["State"], container.attrs["HostConfig"].get("Memory") or 0
        if state.get("OOMKilled"):
            return False, (f"killed by the kernel at its memory limit of {limit / 2**30:.1f} GiB (OOMKilled): "
                           "it needs more memory than the limit allows")
        return state["Status"] in ("created", "running"), f"{state['Status']}, exit code {state['ExitCode']}"

    def logs(self, deployment: Deployment, tail: int = 50) -> str:
        return deployment.handle.logs(tail=tail).decode(errors="replace")

    def memory(self, deployment: Deployment) -> int:
        stats = deployment.handle.stats(stream=False)["memory_stats"]
        return int(stats.get("usage", 0) - stats.get("stats", {}).get("cache", 0))

    def stop(self, deployment: Deployment) -> None:
        import docker
        try:
            deployment.handle.remove(force=True, v=False)
        except docker.errors.NotFound:
            pass
        self._running.pop(deployment.handle.id, None)

    def stop_all(self) -> None:
        for deployment in list(self._running.values()):
            self.stop(deployment)

    def _volumes(self, volumes: dict) -> None:
        """Create the named volumes a container mounts (not host paths), labelled as the lab's and kept between runs
        (pulled models); a volume of that name the lab did not create is refused, not shared."""
        import docker

        for name in (src for src in volumes if "/" not in src):
            try:
                labels = self.client.volumes.get(name).attrs.get("Labels") or {}
            except docker.errors.NotFound:
                self.client.volumes.create(name, labels={LABEL: "1", f"{LABEL}.keep": "1"})
                continue
            if LABEL not in labels:
                raise DeployError(f"a Docker volume named {name!r} exists and is not the lab's: the lab does not use it")

    def cleanup(self) -> list[str]:
        """Remove the containers this process started (its session's), whatever state they are in."""
        return self._remove({"label": f"{LABEL}.session={SESSION}"}, lambda labels: True)

    def sweep(self) -> list[str]:
        """Remove the lab's containers whose owner (a kernel, a test run) has died; never anyone else's."""
        return self._remove({"label": LABEL}, lambda labels: not owned_by_the_living(labels))

    def _remove(self, filters: dict, which) -> list[str]:
        import docker

        removed = []
        for container in self.client.containers.list(all=True, filters=filters):
            if f"{LABEL}.session" in container.labels and which(container.labels):
                try:
                    container.remove(force=True)
                    removed.append(container.name)
                except docker.errors.NotFound:
                    pass
        return removed


def _tar_context(files: dict[str, Path], out) -> None:
    """A build context holding only ``files`` (name in the context -> file or folder)."""
    import tarfile

    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, path in files.items():
            tar.add(str(path), arcname=name)
    out.seek(0)


# ----------------------------------------------------------------------------- local processes

# Run ``argv`` so that it ends when the kernel that started it dies (a crashed or shut-down papermill kernel leaves
# no orphan). On Linux: exec it with PR_SET_PDEATHSIG set (the kernel signals it). Elsewhere (macOS): run it as a
# child and watch the parent; when the parent is gone, terminate it. A tiny wrapper rather than preexec_fn, which
# is unsafe in a threaded kernel. The wrapper and the backend share a process group, which stop() kills whole.
_RUN_WHILE_PARENT_LIVES = """
import ctypes, os, signal, subprocess, sys, time
argv, parent = sys.argv[1:], os.getppid()
if hasattr(ctypes.CDLL(None), "prctl"):
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)
    os.execvp(argv[0], argv)
child = subprocess.Popen(argv)
while child.poll() is None:
    if os.getppid() != parent:
        child.terminate()
        break
    time.sleep(0.5)
sys.exit(child.wait())
"""


def _kill_group(pid: int, grace: float = 10.0, reap=lambda: None) -> None:
    """SIGTERM the process group of ``pid``, then SIGKILL what is left after ``grace`` s.

    ``reap`` collects the leader's exit status when it is our child (else it lingers as a zombie).
    """
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        reap()
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class LocalRuntime:
    """Backends as local processes, each in its own process group with its log in a file."""

    name = "local"

    def __init__(self, state_dir: Path | None = None):
        self.state_dir = state_dir or cache_dir() / "processes"
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._running: dict[int, Deployment] = {}
        atexit.register(self.stop_all)
        self.sweep()

    def start(self, spec: BackendSpec, timeout: float = 300, host_port: int | None = None,
              progress: bool = True) -> Deployment:
        """Start ``spec.local_command``, wait for health; on failure kill it and raise."""
        if not spec.local_command:
            raise DeployError(f"{spec.name} has no local command")
        port = host_port or free_port()
        argv = [part.replace("{port}", str(port)) for part in spec.local_command]
        log_path = self.state_dir / f"{spec.name}-{port}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen([sys.executable, "-c", _RUN_WHILE_PARENT_LIVES, *argv], stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env={**os.environ, **spec.env}, start_new_session=True)
        (self.state_dir / f"{proc.pid}.json").write_text(json.dumps({"pid": proc.pid, "argv": argv,
                                                                     "backend": spec.name, "labels": OWNER}))
        deployment = Deployment(spec, f"http://127.0.0.1:{port}", self, proc, log_path)
        self._running[proc.pid] = deployment
        try:
            deployment.ready_s = wait_for_health(deployment.base_url + spec.health_path,
                                                 lambda: (proc.poll() is None, f"exit code {proc.returncode}"),
                                                 lambda: self.logs(deployment, 40), timeout)
        except BaseException:
            self.stop(deployment)
            raise
        return deployment

    def logs(self, deployment: Deployment, tail: int = 50) -> str:
        lines = deployment.log_path.read_text(errors="replace").splitlines()
        return "\n".join(lines[-tail:])

    def memory(self, deployment: Deployment) -> int:
        import psutil

        try:
            root = psutil.Process(deployment.handle.pid)
            return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])
        except psutil.NoSuchProcess:
            return 0

    def stop(self, deployment: Deployment) -> None:
        proc = deployment.handle
        _kill_group(proc.pid, reap=proc.poll)
        proc.wait()
        (self.state_dir / f"{proc.pid}.json").unlink(missing_ok=True)
        self._running.pop(proc.pid, None)

    def stop_all(self) -> None:
        for deployment in list(self._running.values()):
            self.stop(deployment)

    def cleanup(self) -> list[int]:
        """Kill the processes this process (its session) started and no longer tracks."""
        return self._kill(lambda labels: labels.get(f"{LABEL}.session") == SESSION)

    def sweep(self) -> list[int]:
        """Kill the processes lab sessions started whose owner has died (a kernel killed without a goodbye); a
        running kernel's backends (``make present`` beside a notebook) are left alone."""
        return self._kill(lambda labels: not owned_by_the_living(labels))

    def _kill(self, which) -> list[int]:
        killed = []
        for record in self.state_dir.glob("*.json"):
            try:
                entry = json.loads(record.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            pid = entry["pid"]
            if pid in self._running or not which(entry.get("labels", {})):
                continue
            if _same_process(pid, entry["argv"]):
                _kill_group(pid, grace=5)
                killed.append(pid)
            record.unlink(missing_ok=True)
        return killed


def _same_process(pid: int, argv: list[str]) -> bool:
    """True when ``pid`` still runs ``argv`` (not a recycled pid): its command line, or the wrapper's around it."""
    import psutil

    try:
        command = psutil.Process(pid).cmdline()
    except (psutil.Error, OSError):
        return False
    return any(command[i:i + len(argv)] == argv for i in range(len(command) - len(argv) + 1))


def get(name: str):
    """A runtime by name ('local' or 'docker')."""
    return {"local": LocalRuntime, "docker": DockerRuntime}[name]()
