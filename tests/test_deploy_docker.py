"""DockerRuntime against a real Docker engine, with an image the project builds itself."""
import os
import subprocess
import sys
import time

import pytest
import requests

from helpers.deploy import runtimes
from helpers.deploy.spec import IMAGE_LABEL, LABEL, OWNER, BackendSpec
from helpers.deploy.spec import process_started as spec_started
from helpers.system.paths import REPO

pytestmark = pytest.mark.docker
BASE_IMAGE = os.environ.get("SLM_LAB_BASE_IMAGE", "slm-deploy-lab/base:bookworm")


@pytest.fixture(scope="module")
def runtime():
    rt = runtimes.DockerRuntime()
    try:
        rt.client.images.get(BASE_IMAGE)
    except Exception:
        pytest.skip(f"base image {BASE_IMAGE} missing: run compose/engine/setup-local-engine.sh")
    before = _labelled(rt)
    yield rt
    for container_id in _labelled(rt) - before:
        rt.client.containers.get(container_id).remove(force=True)


@pytest.fixture
def existing(runtime) -> set:
    """The lab's containers before the test: it must leave no more behind."""
    return _labelled(runtime)


def _spec(**overrides):
    return BackendSpec(**{"name": "echo", "port": 8000, "build_context": REPO / "compose" / "echo-backend",
                                 "mem_limit": "256m", "cpus": 0.5, **overrides})


def _labelled(rt) -> set:
    """Ids of the containers a DockerRuntime started (a learner's own deployments may be among them)."""
    return {c.id for c in rt.client.containers.list(all=True, filters={"label": LABEL})}


def test_build_start_request_logs_stop(runtime, existing):
    with runtime.start(_spec(), timeout=60, progress=False) as d:
        assert d.base_url.startswith("http://127.0.0.1:")
        assert requests.post(d.base_url + "/echo", json={"hi": 1}, timeout=5).json() == {"echo": {"hi": 1}}
        # the server writes its access line after answering: wait for it, as `docker logs -f` would
        deadline = time.monotonic() + 10
        while "POST /echo" not in d.logs() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "POST /echo" in d.logs()
        d.handle.reload()
        assert d.handle.attrs["HostConfig"]["Memory"] == 256 * 2**20
        assert d.handle.attrs["HostConfig"]["NanoCpus"] == 5 * 10**8
        assert d.handle.attrs["Config"]["User"] == "lab"
    assert _labelled(runtime) <= existing


def test_exiting_container_fails_fast_and_is_removed(runtime, existing):
    with pytest.raises(runtimes.DeployError, match=r"(?s)exit code 3.*failing on purpose"):
        runtime.start(_spec(command=["--fail"]), timeout=60, progress=False)
    assert _labelled(runtime) <= existing


def test_health_timeout_removes_the_container(runtime, existing):
    with pytest.raises(runtimes.DeployError, match="not healthy after 3 s"):
        runtime.start(_spec(health_path="/missing"), timeout=3, progress=False)
    assert _labelled(runtime) <= existing


def test_cleanup_and_sweep_touch_only_what_they_own(runtime):
    """cleanup() removes this process's containers; a sweep removes those of a dead kernel; a live kernel's (make
    present) and a learner's own (no lab label) are left alone."""
    image = runtime.ensure_image(_spec(), progress=False)
    dead_owner = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                                text=True).stdout.strip()
    owners = {"mine": OWNER, "dead": {**OWNER, f"{LABEL}.session": "gone", f"{LABEL}.owner-pid": dead_owner},
              "live": {**OWNER, f"{LABEL}.session": "another", f"{LABEL}.owner-pid": "1",
                       f"{LABEL}.owner-started": spec_started(1)}}
    made = {name: runtime.client.containers.run(image, detach=True, labels={LABEL: "1", **labels})
            for name, labels in owners.items()}
    learners = runtime.client.containers.run(image, detach=True, name=f"learners-own-{os.getpid()}")
    try:
        assert runtime.sweep() == [made["dead"].name]
        assert runtime.cleanup() == [made["mine"].name]
        made["live"].reload()
        learners.reload()
        assert made["live"].status in ("running", "created") and learners.status in ("running", "created")
    finally:
        for container in (made["live"], learners):
            container.remove(force=True)


def test_containers_of_lab_images_are_not_the_runtimes(runtime, existing):
    """A compose stack's containers inherit the labels of the lab's images; cleanup() leaves them to compose."""
    image = runtime.ensure_image(_spec(), progress=False)
    other = runtime.client.containers.run(image, detach=True)
    try:
        assert runtime.client.images.get(image).labels[IMAGE_LABEL] == "1"
        assert other.id not in _labelled(runtime)
    finally:
        other.remove(force=True)


@pytest.mark.slow
def test_engine_image_serves_phi4_nano(runtime, existing, nano_card, onnx_folder):
    """Built from a wheelhouse made for the image's Python (helpers/system/venvs.py), the model folder read-only."""
    from helpers import backends
    from helpers.clients import openai_api
    from helpers.tasks import curriculum

    spec = backends.get("onnx-engine").spec(nano_card, "docker", model_path=onnx_folder / "genai-fp32")
    with runtime.start(spec, timeout=120, progress=False) as d:
        health = requests.get(d.base_url + "/health", timeout=5).json()
        assert health["ready"] and health["variant"] == "genai-fp32" and health["context_length"] == nano_card.context
        client = openai_api.client(d.base_url)
        reply = openai_api.chat(client, nano_card.served_name, [{"role": "user", "content": curriculum.SEED_TOOL_PROMPT}],
                                 tools=[curriculum.CIRCLE_TOOL])
        assert [(c["name"], c["arguments"]) for c in reply.tool_calls] == [("calculate_circle_area", {"radius": 5})]
        d.handle.reload()
        assert d.handle.attrs["Config"]["User"] == "engine" and d.handle.attrs["HostConfig"]["Memory"] == 2 * 2**30
        assert d.handle.attrs["HostConfig"]["Binds"][0].endswith(":/models:ro")
    assert _labelled(runtime) <= existing


def test_haproxy_standin_accepts_the_stacks_config(runtime):
    """HAProxy itself (the stand-in image: Debian's package) validates compose/lb/haproxy.cfg."""
    image = runtime.build("haproxy-standin", None, None, None, progress=False, context=REPO / "compose" / "lb",
                          labels={f"{LABEL}.standin-for": "haproxy:2.6.12"})
    out = runtime.client.containers.run(image, entrypoint=["haproxy", "-c", "-f", "/cfg/haproxy.cfg"], remove=True,
                                        volumes={str(REPO / "compose" / "lb"): {"bind": "/cfg", "mode": "ro"}})
    assert b"Configuration file is valid" in out
    assert runtime.client.images.get(image).labels[f"{LABEL}.standin-for"] == "haproxy:2.6.12"


def test_failed_notebook_leaves_no_container(runtime, existing, tmp_path):
    from conftest import small_notebook

    from helpers.workbook import runner

    path = small_notebook(tmp_path / "00_container.ipynb", "runtime = 'docker'\nsummary_dir = None",
                          "from helpers.deploy import runtimes\nfrom helpers.deploy.spec import BackendSpec\nfrom helpers.system.paths import REPO\n"
                          "spec = BackendSpec('echo', 8000, build_context=REPO / 'compose' / 'echo-backend')\n"
                          "d = runtimes.DockerRuntime(registry=False).start(spec, timeout=60, progress=False)",
                          "raise RuntimeError('a learner broke this cell')")
    with pytest.raises(runner.NotebookFailed, match="a learner broke this cell"):
        runner.run_notebook(path, tmp_path / "out")
    assert _labelled(runtime) <= existing, "the backend's container outlived its kernel"


def test_a_rebuilt_image_replaces_the_one_before(runtime, tmp_path):
    """A lab image rebuilt from changed sources leaves no untagged image behind (one in use stays)."""
    dockerfile = tmp_path / "Dockerfile"
    ids = []
    for content in ("one", "two"):
        dockerfile.write_text(f"ARG BASE={BASE_IMAGE}\nFROM ${{BASE}}\nRUN echo {content} > /version\n")
        runtime.build("rebuild-test", "Dockerfile", {"Dockerfile": dockerfile}, None, progress=False)
        ids.append(runtime.client.images.get(f"{LABEL}/rebuild-test:local").id)
    try:
        assert ids[0] != ids[1]
        with pytest.raises(Exception, match="No such image"):
            runtime.client.images.get(ids[0])
    finally:
        runtime.client.images.remove(f"{LABEL}/rebuild-test:local")
