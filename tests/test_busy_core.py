"""A machine that is not idle: backends run their threads on the cores that are free when they start, so a core
held by another program (a browser, a video call) stalls no token (docs/memory.md, "Cores")."""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from helpers import backends, models
from helpers.deploy import runtimes
from helpers.system import cpus


@pytest.fixture
def busy_core(monkeypatch):
    """One of this process's cores held by a busy loop (pinned to it); the thread sampler starts afresh."""
    usable = sorted(cpus.usable_cpus())
    if len(usable) < 2 or not hasattr(os, "sched_setaffinity"):
        pytest.skip("needs two cores and CPU affinity")
    loop = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    os.sched_setaffinity(loop.pid, {usable[0]})
    monkeypatch.setattr(cpus, "_last_sample", [0.0, {}])
    monkeypatch.delenv(cpus.THREADS_VARIABLE, raising=False)
    time.sleep(1.0)
    try:
        yield usable[0]
    finally:
        loop.kill()
        loop.wait()


def test_threads_go_to_the_free_cores(busy_core):
    chosen = cpus.thread_cpus()
    assert busy_core not in chosen and len(chosen) == len(cpus.usable_cpus()) - 1
    spec = backends.get("vllm").spec(models.get("phi4-nano"), "local", model_path=Path("/m"))
    assert str(busy_core) not in spec.env["VLLM_CPU_OMP_THREADS_BIND"].split(",")


@pytest.mark.slow
def test_the_engine_starts_with_the_free_cores(busy_core, tmp_path):
    card, engine = models.get("phi4-nano"), backends.get("onnx-engine")
    spec = engine.spec(card, "local", model_path=engine.prepare(card, "local", progress=False))
    with runtimes.LocalRuntime(state_dir=tmp_path).start(spec, timeout=300) as server:
        health = requests.get(server.base_url + "/health", timeout=10).json()
    assert health["threads"] == len(cpus.usable_cpus()) - 1
