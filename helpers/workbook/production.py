"""Notebook 06's engine stack: images, the convert job, compose up/scale/down, and HAProxy's view.

The stack is compose/onnx-engine/compose.yaml run by docker-compose on the local Docker engine:
the convert job builds the model card's engine variant from the model's Hugging Face folder
(mounted read-only) into the ``models`` volume, engine replicas serve it, HAProxy balances them.
Images come from the project's Dockerfiles; where no registry answers, HAProxy is a local stand-in
image with Debian's package of the same release.
"""
from __future__ import annotations

import csv
import io
import stat
from pathlib import Path

from helpers import backends
from helpers.deploy import runtimes
from helpers.deploy.compose import ComposeStack
from helpers.deploy.spec import LABEL, memory_limit
from helpers.system.paths import REPO

COMPOSE = REPO / "compose" / "onnx-engine" / "compose.yaml"
PROJECT = "slm-lab-engine"  # the lab's own project name: the docs' `slm-engine` is the learner's
LB_IMAGE = "haproxy:2.6.12"  # official; the stand-in installs Debian bookworm's haproxy 2.6.12
CONVERT_FILES = {name: REPO / name for name in ("compose/onnx-engine/Dockerfile.convert", "compose/onnx-engine/convert.py",
                                                "compose/onnx-engine/convert-requirements.txt")}


def images(card, progress: bool = True) -> dict[str, str]:
    """Build (or find) every image the stack runs; returns service -> image."""
    docker = runtimes.DockerRuntime()
    engine = backends.get("onnx-engine").spec(card, "docker", model_path=REPO)  # the image does not depend on the model
    built = {"engine": docker.ensure_image(engine, progress),
             "convert": docker.build("onnx-convert", "compose/onnx-engine/Dockerfile.convert", CONVERT_FILES,
                                     REPO / "compose/onnx-engine/convert-requirements.txt", progress)}
    if docker.registry:
        built["lb"] = LB_IMAGE
    else:
        print(f"no registry answers: {LB_IMAGE} is replaced by a LOCAL STAND-IN image with Debian's haproxy "
              f"(compose/lb/Dockerfile)", flush=True)
        built["lb"] = docker.build("haproxy-standin", None, None, None, progress, context=REPO / "compose" / "lb",
                                   labels={f"{LABEL}.standin-for": LB_IMAGE})
    return built


def readable(folder: Path) -> Path:
    """``folder`` with its files readable by everyone: the convert job reads it as an unprivileged user, and
    safetensors writes weights with mode 600."""
    for path in folder.iterdir():
        if path.is_file():
            path.chmod(path.stat().st_mode | stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    return folder


def stack(card, port: int, stats_port: int, cpus: float, lb_image: str, api_key: str = "") -> ComposeStack:
    """The engine stack for ``card``: its variant, served name, context and memory from the model card; the convert
    job reads the model's Hugging Face folder, mounted read-only; ``api_key``: the Bearer key the engines ask for."""
    variant = backends.get("onnx-engine").variant(card)
    precision = variant.removeprefix("genai-")
    return ComposeStack(COMPOSE, PROJECT, {
        "CONVERT_MODEL": "/source", "CONVERT_SOURCE": readable(card.hf_folder(progress=False)),
        "CONVERT_PRECISION": precision,
        "ENGINE_VARIANT": variant, "SERVED_MODEL_NAME": card.served_name, "ENGINE_CONTEXT": card.context,
        "ENGINE_MEMORY": memory_limit(card.needs["onnx"].ram), "ENGINE_CPUS": cpus,
        "ENGINE_PORT": port, "LB_STATS_PORT": stats_port, "LB_IMAGE": lb_image, "SLM_ENGINE_API_KEY": api_key})


def lb_stats(stats_port: int) -> list[dict]:
    """HAProxy's stats per engine replica it found (from its CSV): state, requests answered, requests in flight.
    Template slots that DNS has not filled are in maintenance ("MAINT (resolution)") and left out."""
    import requests

    text = requests.get(f"http://127.0.0.1:{stats_port}/stats;csv", timeout=5).text.lstrip("# ")
    rows = csv.DictReader(io.StringIO(text))
    return [{"server": r["svname"], "status": r["status"],
             "requests": sum(int(r.get(f"hrsp_{code}xx") or 0) for code in range(1, 6)),
             "active now": int(r.get("scur") or 0)}
            for r in rows if r["pxname"] == "engines" and r["svname"] not in ("BACKEND", "FRONTEND")
            and not r["status"].startswith("MAINT")]


def up(card, port: int, stats_port: int, cpus: float, timeout: float = 900, api_key: str = "") -> ComposeStack:
    """Images built, the convert job run on ``card``'s folder, then one engine replica behind HAProxy, healthy."""
    built = images(card)
    engine_stack = stack(card, port, stats_port, cpus, built["lb"], api_key)
    engine_stack.clear_leftovers()  # of an earlier run whose kernel died; never a project the lab does not own
    _down_when_a_cell_fails(engine_stack)
    print(engine_stack.run("--profile", "convert", "run", "--rm", "convert").strip().splitlines()[-1])
    seconds = engine_stack.up({"engine": 1}, timeout=timeout)
    print(f"healthy after {seconds:.1f} s; {card.served_name} ({backends.get('onnx-engine').variant(card)}) behind http://127.0.0.1:{port}, "
          f"HAProxy's stats at http://127.0.0.1:{stats_port}/stats")
    return engine_stack


def _down_when_a_cell_fails(engine_stack: ComposeStack) -> None:
    """In a notebook, take the stack down as soon as a cell fails (a learner who stops there leaves nothing running;
    the kernel's exit does the same for a run papermill stops)."""
    try:
        shell = get_ipython()  # noqa: F821 - defined inside IPython only
    except NameError:
        return

    def after(result):
        if result.error_in_exec is not None and engine_stack.containers():
            print("a cell failed: the engine stack is taken down (run the notebook's cells again to bring it up)")
            engine_stack.down()
            shell.events.unregister("post_run_cell", after)
    shell.events.register("post_run_cell", after)


def scale_out(engine_stack: ComposeStack, card, port: int, replicas: int, tool, levels=None,
              timeout: float = 900, api_key: str = "") -> dict:
    """``tool`` (``helpers.measure.load_test.Bench``: ``vllm bench serve``) through HAProxy with one replica, then
    with ``replicas``; returns both sweeps and the ratio of their peak output tokens/s (shown, not asserted: it
    depends on the cores free). Prompt and answer lengths and (unless ``levels`` is given) concurrency levels come
    from the model card's budget, as in notebook 05."""
    budget, url = card.budget, f"http://127.0.0.1:{port}"

    def sweep():
        return tool.concurrency_sweep(url, levels or budget.bench_levels, budget.load_input_tokens, budget.bench_tokens,
                                      api_key=api_key)

    sweeps = {"1 replica": sweep()}
    engine_stack.up({"engine": replicas}, timeout=timeout)
    sweeps[f"{replicas} replicas"] = sweep()
    one, many = (max(r["output tok/s"] for r in rows) for rows in sweeps.values())
    return {"sweeps": sweeps, "peak_ratio": round(many / one, 2)}


def failures(sweeps: dict[str, list[dict]]) -> list[dict]:
    """The sweep rows where requests failed, with the errors they got (HAProxy's 503 names no replica UP)."""
    return [{"stack": name, "concurrency": r["concurrency"], "failed": r["failed"], "errors": r["errors"]}
            for name, rows in sweeps.items() for r in rows if r["failed"]]


def haproxy_config() -> str:
    return (REPO / "compose" / "lb" / "haproxy.cfg").read_text()
