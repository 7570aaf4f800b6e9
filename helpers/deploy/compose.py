"""Compose stacks driven from Python: up (with replicas), health, logs, scale, down.

docker-compose does the orchestration (the same file a learner runs by hand); the Docker
SDK watches the containers. Every container of the project is removed on ``down`` and
when the ``with`` block is left, also after an error.
"""
from __future__ import annotations

import functools
import os
import subprocess
import time
from pathlib import Path

from helpers.deploy.runtimes import DeployError

PROJECT_LABEL = "com.docker.compose.project"


class ComposeStack:
    def __init__(self, compose_file: Path, project: str, env: dict[str, str] | None = None):
        self.file, self.project = compose_file.resolve(), project
        self.env = {k: str(v) for k, v in (env or {}).items()}

    @functools.cached_property
    def client(self):
        """The Docker SDK's client, made when first needed (settling the stack's settings needs no daemon)."""
        import docker
        return docker.from_env()

    def compose(self, *args: str, check: bool = True) -> str:
        result = subprocess.run(["docker-compose", "-p", self.project, "-f", str(self.file), *args],
                                capture_output=True, text=True, env={**os.environ, **self.env}, cwd=self.file.parent)
        if check and result.returncode:
            raise DeployError(f"docker-compose {' '.join(args)} failed:\n{result.stderr[-2000:]}")
        return result.stdout + result.stderr

    def containers(self, service: str | None = None) -> list:
        labels = [f"{PROJECT_LABEL}={self.project}"] + ([f"com.docker.compose.service={service}"] if service else [])
        return self.client.containers.list(all=True, filters={"label": labels})

    def status(self) -> list[dict]:
        rows = []
        for c in sorted(self.containers(), key=lambda c: c.name):
            state = c.attrs["State"]
            rows.append({"container": c.name, "service": c.labels.get("com.docker.compose.service"),
                         "status": state["Status"], "health": (state.get("Health") or {}).get("Status", "-")})
        return rows

    def up(self, scale: dict[str, int] | None = None, timeout: float = 180) -> float:
        """``up -d`` (images must exist: no build), then wait until every container is healthy; returns seconds."""
        start = time.monotonic()
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

    def logs(self, service: str | None = None, tail: int = 20) -> str:
        return self.compose("logs", "--no-color", f"--tail={tail}", *([service] if service else []), check=False)

    def exec_python(self, service: str, code: str, python: str = "python3") -> list[str]:
        """Output of ``code`` run inside every container of ``service`` (one string per replica)."""
        return [c.exec_run([python, "-c", code]).output.decode(errors="replace") for c in self.containers(service)]

    def down(self) -> None:
        self.compose("down", "-v", "--remove-orphans", check=False)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.down()
