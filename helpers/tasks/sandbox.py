"""Running code a model wrote, confined — or not at all.

The first confinement that works on this machine is used:

- ``bwrap`` (Debian's ``bubblewrap``): new user, PID, network, IPC and UTS namespaces (no network at all), a new
  session, dies with its parent; the system and the interpreter read-only, nothing of the learner's home, an empty
  environment and an empty temporary working directory; as the unprivileged ``nobody`` where the lab runs as root;
- ``docker``: a throwaway container with no network, a read-only root, dropped capabilities, no new privileges, a
  memory and a PIDs limit, a non-root user and an empty temporary working directory;

and in both, resource limits set before the code runs (CPU seconds, address space, file size, open files,
processes), the whole process group killed at the timeout, and the output read up to a cap. Where neither works
the code does not run: ``run`` says why, and graders record the answer as "not graded".
"""
from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

from helpers.system.machine import OFFLINE_BASE

LIMITS = {"cpu_seconds": 10, "memory_bytes": 512 * 2**20, "file_bytes": 2**20, "open_files": 64, "processes": 64}
OUTPUT_BYTES = 64 * 2**10  # of stdout and of stderr: what an answer that prints without end gets read
NOBODY = 65534
DOCKER_IMAGE = "python:3.11-slim"  # where a registry answers; else the lab's offline base image (it has python3)

# Set before the code runs, in the process that runs it: what it may not undo (hard limits only go down).
_PRELUDE = """
import resource
for name, value in {limits!r}.items():
    resource.setrlimit(getattr(resource, name), (value, value))
"""


@dataclass
class Outcome:
    """What a confined run gave: ``ran`` is False when no sandbox works here (``why`` says which were tried)."""

    ran: bool
    returncode: int | None = None
    stdout: str = ""
    stderr: str = ""
    timed_out: bool = False
    why: str = ""


def _rlimits() -> dict:
    return {"RLIMIT_CPU": LIMITS["cpu_seconds"], "RLIMIT_AS": LIMITS["memory_bytes"],
            "RLIMIT_FSIZE": LIMITS["file_bytes"], "RLIMIT_NOFILE": LIMITS["open_files"],
            "RLIMIT_NPROC": LIMITS["processes"]}


def _system_binds(python: str) -> list[str]:
    """bwrap arguments that show the system read-only: /usr and, where they are directories or links, /bin, /lib*
    and /sbin; and ``python``'s own installation when it lies outside /usr."""
    args = ["--ro-bind", "/usr", "/usr"]
    for top in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = Path("/") / top
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    prefix = Path(python).resolve().parents[1]  # <prefix>/bin/python3.x
    if not prefix.is_relative_to("/usr"):
        args += ["--ro-bind", str(prefix), str(prefix)]
    return args


def _interpreter() -> tuple[str, list[str]]:
    """(the Python to run, the argv that drops to ``nobody`` first): as root, the system's python3 (under /usr, which
    ``nobody`` can read) run as ``nobody``, whose process limit the kernel enforces; else this interpreter itself."""
    if os.geteuid() == 0 and shutil.which("setpriv") and (system := shutil.which("python3", path="/usr/bin:/bin")):
        return system, ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    return str(Path(sys.executable).resolve()), []


def bwrap_command() -> list[str]:
    """The argv that runs ``python -I -S -c <code>`` (the code appended) inside bubblewrap."""
    python, drop = _interpreter()
    return [*drop, "bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--clearenv",
            "--setenv", "HOME", "/work", "--setenv", "PATH", "/usr/bin:/bin", *_system_binds(python),
            "--proc", "/proc", "--dev", "/dev", "--size", str(16 * 2**20), "--tmpfs", "/work", "--chdir", "/work",
            python, "-I", "-S", "-c"]


def docker_command(image: str) -> list[str]:
    """The argv that runs ``python3 -I -S -c <code>`` (the code appended) in a throwaway, locked-down container."""
    return ["docker", "run", "--rm", "-i", "--name", f"slm-deploy-lab-sandbox-{uuid.uuid4().hex[:12]}", "--network", "none", "--read-only", "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges", "--memory", str(LIMITS["memory_bytes"]),
            "--pids-limit", str(LIMITS["processes"]), "--user", f"{NOBODY}:{NOBODY}",
            "--tmpfs", "/work:size=16m", "--workdir", "/work", "--label", "slm-deploy-lab.sandbox=1",
            image, "python3", "-I", "-S", "-c"]


def _environment() -> dict:
    """What the sandbox's launcher (bwrap, setpriv or the docker CLI) sees: where programs are and how to reach
    Docker — never the learner's tokens or keys (and bwrap clears even this before the code runs)."""
    return {k: v for k, v in os.environ.items() if k in ("PATH", "DOCKER_HOST", "DOCKER_CONFIG", "DOCKER_CONTEXT")}


def _works(argv: list[str]) -> bool:
    try:
        return subprocess.run([*argv, "print(6 * 7)"], capture_output=True, text=True, timeout=120,
                              stdin=subprocess.DEVNULL, env=_environment()).stdout.strip() == "42"
    except (OSError, subprocess.TimeoutExpired):
        return False


def _docker_image() -> str | None:
    """An image with python3 that is here already: the official slim image, or the lab's offline base."""
    for image in (DOCKER_IMAGE, OFFLINE_BASE):
        if subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode == 0:
            return image
    return None


@functools.cache
def confinement() -> tuple[list[str] | None, str]:
    """(argv prefix, name) of the first sandbox that works here, or (None, why none does)."""
    tried = []
    if shutil.which("bwrap"):
        argv = bwrap_command()
        if _works(argv):
            return argv, "bubblewrap"
        tried.append("bwrap is installed but cannot make namespaces here (unprivileged user namespaces are off)")
    else:
        tried.append("bwrap is not installed (Debian/Ubuntu: apt install bubblewrap)")
    image = _docker_image() if shutil.which("docker") else None
    if image and _works(docker_command(image)):
        return ["docker", "image", image], f"docker ({image})"
    tried.append("no Docker daemon with a python image answers" if shutil.which("docker") else "no docker")
    return None, "; ".join(tried)


def _read_capped(stream, sink: list, cap: int) -> None:
    """Up to ``cap`` bytes of ``stream`` into ``sink``; the rest is read and dropped (the writer never blocks)."""
    kept = 0
    while chunk := stream.read(65536):
        if kept < cap:
            sink.append(chunk[:cap - kept])
            kept += len(sink[-1])


def run(code: str, stdin: str = "", timeout: float = 10.0) -> Outcome:
    """Run Python ``code`` confined (see the module), feeding it ``stdin``; never unconfined."""
    prefix, name = confinement()
    if prefix is None:
        return Outcome(False, why=f"no sandbox works on this machine: {name}")
    argv = docker_command(prefix[2]) if prefix[:2] == ["docker", "image"] else prefix  # a container of its own
    proc = subprocess.Popen([*argv, _PRELUDE.format(limits=_rlimits()) + code], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, env=_environment())
    out, err = [], []
    readers = [threading.Thread(target=_read_capped, args=(stream, sink, OUTPUT_BYTES), daemon=True)
               for stream, sink in ((proc.stdout, out), (proc.stderr, err))]
    for reader in readers:
        reader.start()
    try:
        proc.stdin.write(stdin.encode())
        proc.stdin.close()
    except BrokenPipeError:
        pass
    timed_out = False
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the whole group: a child it left behind goes too
    except ProcessLookupError:
        pass
    if argv[0] == "docker":  # the container outlives its CLI: remove it
        subprocess.run(["docker", "rm", "-f", argv[argv.index("--name") + 1]], capture_output=True, env=_environment())
    proc.wait()
    for reader in readers:
        reader.join(5)
    return Outcome(True, proc.returncode, b"".join(out).decode(errors="replace"), b"".join(err).decode(errors="replace"),
                   timed_out, f"timed out after {timeout:.0f} s" if timed_out else "")
