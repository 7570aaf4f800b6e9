"""Compose stacks driven from Python: up (with replicas), health, logs, scale, down — on Compose v2 or v1.

Compose does the orchestration (the same file a learner runs by hand); the Docker SDK watches the
containers, found by their project label (v2 names them ``project-service-1``, v1 ``project_service_1``).
What the lab brings up carries its labels (an override file adds them beside the learner's file), and
``down`` removes volumes only when this run created the project: a learner's own stack of the same file
under another project name, and its volumes, are never touched.
"""
from __future__ import annotations

import atexit
import functools
import os
import subprocess
import tempfile
import time
from pathlib import Path

import yaml

from helpers.deploy.runtimes import DeployError
from helpers.deploy.spec import LABEL, OWNER, owned_by_the_living

PROJECT_LABEL = "com.docker.compose.project"


@functools.cache
def compose_command() -> tuple[str, ...] | None:
    """How Compose is called here: the v2 plugin (``docker compose``, Docker Desktop and docker-ce) where it answers,
    else v1's ``docker-compose`` (Debian's 1.29); None where neither is installed."""
    for argv in (("docker", "compose"), ("docker-compose",)):
        try:
            if subprocess.run([*argv, "version"], capture_output=True, timeout=30).returncode == 0:
                return argv
        except (OSError, subprocess.TimeoutExpired):
            continue
    return None


def compose_version() -> str:
    """"v2", "v1" or "none": which Compose ``compose_command`` found."""
    argv = compose_command()
    return "none" if argv is None else "v2" if argv == ("docker", "compose") else "v1"


class ComposeStack:
    def __init__(self, compose_file: Path, project: str, env: dict[str, str] | None = None):
        """``project`` is a name only the lab uses (e.g. ``slm-lab-engine``); ``env`` fills the file's variables."""
        self.file, self.project = compose_file.resolve(), project
        self.env = {k: str(v) for k, v in (env or {}).items()}
        self.created = False  # whether this run brought the project up from nothing (then down may remove volumes)
        self._override = Path(tempfile.mkdtemp(prefix="slm-lab-compose-")) / "lab-labels.yaml"
        self._override.write_text(yaml.safe_dump(self._labels()))

    def _labels(self) -> dict:
        """An override file that puts the lab's labels on every service, volume and network of the file."""
        spec = yaml.safe_load(self.file.read_text())
        labels = {LABEL: "1", **OWNER}
        return {"services": {name: {"labels": labels} for name in spec.get("services", {})},
                "volumes": {name: {"labels": {**labels, f"{LABEL}.project": self.project}}
                            for name in spec.get("volumes", {})},
                "networks": {"default": {"labels": labels}}}

    @functools.cached_property
    def client(self):
        """The Docker SDK's client, made when first needed (settling the stack's settings needs no daemon)."""
        import docker
        return docker.from_env()

    def compose(self, *args: str, check: bool = True) -> str:
        argv = compose_command()
        if argv is None:
            raise DeployError("neither `docker compose` (v2) nor `docker-compose` (v1) is installed")
        result = subprocess.run([*argv, "-p", self.project, "-f", str(self.file), "-f", str(self._override), *args],
                                capture_output=True, text=True, env={**os.environ, **self.env}, cwd=self.file.parent)
        if check and result.returncode:
            raise DeployError(f"{' '.join(argv)} {' '.join(args)} failed:\n{result.stderr[-2000:]}")
        return result.stdout + result.stderr

    def containers(self, service: str | None = None) -> list:
        labels = [f"{PROJECT_LABEL}={self.project}"] + ([f"com.docker.compose.service={service}"] if service else [])
        return self.client.containers.list(all=True, filters={"label": labels})

    def volumes(self) -> list:
        return self.client.volumes.list(filters={"label": f"{PROJECT_LABEL}={self.project}"})

    def status(self) -> list[dict]:
        rows = []
        for c in sorted(self.containers(), key=lambda c: c.name):
            state = c.attrs["State"]
            rows.append({"container": c.name, "service": c.labels.get("com.docker.compose.service"),
                         "status": state["Status"], "health": (state.get("Health") or {}).get("Status", "-")})
        return rows

    def clear_leftovers(self) -> None:
        """Remove what an earlier lab run of this project left behind when its kernel died (its owner is gone);
        refuse to touch a project of this name that another running kernel, or someone else, owns."""
        found = {c.name: c.labels for c in self.containers()} | {v.name: v.attrs.get("Labels") or {} for v in self.volumes()}
        if not found:
            return
        foreign = sorted(name for name, labels in found.items() if LABEL not in labels)
        if foreign:
            raise DeployError(f"compose project {self.project!r} exists and is not the lab's ({foreign}): "
                              "remove it, or run the lab's stack under another project name")
        alive = [labels for labels in found.values() if owned_by_the_living(labels)]
        if alive:
            raise DeployError(f"the lab's stack {self.project!r} is running in another kernel "
                              f"(pid {alive[0].get(f'{LABEL}.owner-pid', '?')}): stop it there first")
        self.compose("down", "-v", "--remove-orphans", check=False)  # the lab's own, from a kernel that died

    def up(self, scale: dict[str, int] | None = None, timeout: float = 180) -> float:
        """``up -d`` (images must exist: no build), then wait until every container is healthy; returns seconds."""
        start = time.monotonic()
        if not self.containers() and not self.volumes() and not self.created:
            self.created = True
            atexit.register(self.down)  # a kernel that ends, or fails, takes the stack along
        args = ["up", "-d", "--no-build"] + [f"--scale={s}={n}" for s, n in (scale or {}).items()]
        self.compose(*args)
        while time.monotonic() - start < timeout:
            rows = self.status()
            dead = [r for r in rows if r["status"] in ("exited", "dead")]
            if dead:
                raise DeployError(f"{dead[0]['container']} exited:\n{self.logs(tail=30)}")
            if rows and all(r["health"] in ("healthy", "-") and r["status"] == "running" for r in rows):
                return time.monotonic() - start
            time.sleep(1)
        raise DeployError(f"{self.project} not healthy after {timeout:.0f} s: {self.status()}\n{self.logs(tail=30)}")

    def run(self, *args: str) -> str:
        """``run --rm`` a one-shot service (e.g. the convert job, under its profile)."""
        if not self.containers() and not self.volumes() and not self.created:
            self.created = True
            atexit.register(self.down)
        return self.compose(*args)

    def logs(self, service: str | None = None, tail: int = 20) -> str:
        return self.compose("logs", "--no-color", f"--tail={tail}", *([service] if service else []), check=False)

    def exec_python(self, service: str, code: str, python: str = "python3") -> list[str]:
        """Output of ``code`` run inside every container of ``service`` (one string per replica)."""
        return [c.exec_run([python, "-c", code]).output.decode(errors="replace") for c in self.containers(service)]

    def down(self) -> None:
        """Stop and remove the stack's containers and network; its volumes only when this run created them."""
        self.compose("down", *(["-v"] if self.created else []), "--remove-orphans", check=False)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.down()
