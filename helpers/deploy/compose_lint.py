"""Compose files: validation with Compose itself, and the project's security lint.

Lint rules (error unless a file waives it with a reason under ``x-lint-waivers``):

- ``obsolete-version``: the ``version:`` key (ignored by Compose, misleading);
- ``unpinned-image``: no tag, or ``latest``;
- ``privileged``: ``privileged: true``;
- ``no-limits``: no memory and CPU limit;
- ``no-healthcheck``: a long-running service without a health check (``restart: "no"`` jobs are exempt);
- ``root-user``: no ``user:``, or user root/0;
- ``read-only``: root filesystem writable;
- ``capabilities``: capabilities not dropped (``cap_drop: [ALL]``);
- ``inline-secret``: a token/secret/password/key given literally in ``environment``;
- ``no-curl``: a health check calling curl/wget in the ollama image, which ships neither;
- ``public-port``: a port published on every interface (``"8000:8000"``, ``0.0.0.0``): anyone on the network
  reaches an API without authentication; publish on ``127.0.0.1`` (or put an authenticating proxy in front).
"""
from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from helpers.deploy.compose import compose_command
from helpers.system.paths import REPO

COMPOSE_FILES = sorted((REPO / "compose").glob("*/compose.yaml"))
SEED_COMPOSE_FILES = sorted((REPO / "docs" / "seed").glob("compose-*.yaml"))  # the seed's, verbatim
SECRET_KEY = re.compile(r"(TOKEN|SECRET|PASSWORD|PASSWD|API_KEY|PRIVATE_KEY)", re.I)
IMAGES_WITHOUT_CURL = ("ollama/ollama",)


@dataclass(frozen=True)
class Finding:
    file: str
    service: str
    rule: str
    message: str


def validate(compose_file: Path) -> tuple[bool | None, str]:
    """``docker compose config -q`` (or v1's ``docker-compose``) on a copy of the file's folder where every
    ``X.env.example`` is ``X.env``; None (not checked) where Compose is not installed."""
    argv = compose_command()
    if argv is None:
        return None, "not checked: Compose is not installed (compose/engine/setup-local-engine.sh installs it)"
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / compose_file.parent.name
        shutil.copytree(compose_file.parent.parent, Path(tmp), dirs_exist_ok=True)  # siblings (../lb) resolve too
        for example in folder.glob("*.env.example"):
            shutil.copy(example, folder / example.name.removesuffix(".example"))
        result = subprocess.run([*argv, "-f", str(folder / compose_file.name), "config", "-q"],
                                capture_output=True, text=True, cwd=folder)
    return result.returncode == 0, (result.stderr or result.stdout).strip()


def _limits(service: dict) -> tuple[bool, bool]:
    limits = ((service.get("deploy") or {}).get("resources") or {}).get("limits") or {}
    return bool(limits.get("memory") or service.get("mem_limit")), bool(limits.get("cpus") or service.get("cpus"))


def lint_config(config: dict, name: str = "<compose>") -> list[Finding]:
    """Findings for a parsed compose file (see the module docstring for the rules)."""
    waived = set((config.get("x-lint-waivers") or {}))
    found = []

    def flag(service, rule, message):
        if rule not in waived:
            found.append(Finding(name, service, rule, message))

    if "version" in config:
        flag("-", "obsolete-version", "the `version:` key is obsolete; Compose ignores it")
    for svc_name, svc in (config.get("services") or {}).items():
        image = str(svc.get("image", ""))
        if image and (":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest")):
            flag(svc_name, "unpinned-image", f"image {image!r} is not pinned to a version tag")
        if svc.get("privileged"):
            flag(svc_name, "privileged", "privileged: true gives the container the host's devices")
        memory, cpus = _limits(svc)
        if not (memory and cpus):
            flag(svc_name, "no-limits", f"no {'memory' if not memory else 'CPU'} limit")
        is_job = str(svc.get("restart", "")) == "no"
        health = svc.get("healthcheck") or {}
        if not is_job and (not health or health.get("disable")):
            flag(svc_name, "no-healthcheck", "a long-running service without a health check")
        user = str(svc.get("user", "")).split(":")[0]
        if user in ("", "root", "0"):
            flag(svc_name, "root-user", "runs as root (set `user:` to an unprivileged uid)")
        if not svc.get("read_only"):
            flag(svc_name, "read-only", "root filesystem is writable (set `read_only: true`, tmpfs for scratch)")
        if "ALL" not in [str(c).upper() for c in svc.get("cap_drop") or []]:
            flag(svc_name, "capabilities", "capabilities not dropped (`cap_drop: [ALL]`)")
        env = svc.get("environment") or {}
        pairs = env.items() if isinstance(env, dict) else (e.split("=", 1) if "=" in e else (e, None) for e in env)
        for key, value in pairs:
            if SECRET_KEY.search(str(key)) and value not in (None, "") and "${" not in str(value):
                flag(svc_name, "inline-secret", f"{key} is written into the file; use env_file or secrets")
        test = " ".join(map(str, health.get("test") or [])) if isinstance(health.get("test"), list) else str(health.get("test", ""))
        if image.startswith(IMAGES_WITHOUT_CURL) and re.search(r"\b(curl|wget)\b", test):
            flag(svc_name, "no-curl", f"{image} ships neither curl nor wget: this health check always fails")
        for port in svc.get("ports") or []:
            if not published_on_loopback(port):
                flag(svc_name, "public-port", f"port {port} is published on every interface, not on 127.0.0.1")
    return found


def published_on_loopback(port) -> bool:
    """Whether a ``ports:`` entry (short "host_ip:published:target" or long form) binds the host's loopback only; a
    container-only port (no published side) publishes nothing."""
    if isinstance(port, dict):
        return "published" not in port or str(port.get("host_ip", "")).startswith(("127.", "::1", "[::1]"))
    text = str(port)
    if ":" not in text.replace("::1", ""):
        return False  # "8000": published on a random host port, on every interface
    return text.startswith(("127.", "[::1]:", "::1:", "localhost:"))


def waivers(compose_file: Path) -> dict[str, str]:
    """The rules a file waives, with its reasons."""
    return yaml.safe_load(compose_file.read_text()).get("x-lint-waivers") or {}


def lint(compose_file: Path) -> list[Finding]:
    return lint_config(yaml.safe_load(compose_file.read_text()), str(compose_file.relative_to(REPO))
                       if compose_file.is_relative_to(REPO) else compose_file.name)


def by_rule(findings: list[Finding]) -> list[dict]:
    """One row per rule, in the order first found: where it is broken (the service, or the file for a file-wide
    finding) and the message of its first finding."""
    rows: dict[str, dict] = {}
    for f in findings:
        where = f.service if f.service != "-" else Path(f.file).name
        row = rows.setdefault(f.rule, {"rule": f.rule, "where": [], "for example": f.message})
        row["where"].append(where)
    return [{**row, "where": ", ".join(row["where"])} for row in rows.values()]


def overview(paths: list[Path] = COMPOSE_FILES) -> list[dict]:
    """One row per compose file: valid, lint findings, waivers, and what failed."""
    rows = []
    for path in paths:
        valid, detail = validate(path)
        findings = lint(path)
        rows.append({"file": str(path.relative_to(REPO)), "valid": valid, "lint findings": len(findings),
                     "waived": ", ".join(waivers(path)) or "–",
                     "detail": detail or "; ".join(f"{f.service}: {f.rule}" for f in findings)})
    return rows
