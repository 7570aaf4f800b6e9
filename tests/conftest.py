"""Shared fixtures; docker/gpu/browser tests skip themselves where the machine has none."""
import shutil

import pytest

from helpers.system import machine


def pytest_collection_modifyitems(config, items):
    docker_version, _, docker_error = machine.docker_status(timeout=3)
    gpus = machine.nvidia_gpus()
    for item in items:
        if "docker" in item.keywords and not docker_version:
            item.add_marker(pytest.mark.skip(reason=f"no Docker daemon answers ({docker_error})"))
        if "gpu" in item.keywords and not gpus:
            item.add_marker(pytest.mark.skip(reason="no NVIDIA GPU (nvidia-smi finds none)"))
        if "browser" in item.keywords and not (shutil.which("chromium") and shutil.which("chromedriver")):
            item.add_marker(pytest.mark.skip(reason="no chromium + chromedriver (make browser installs them)"))


@pytest.fixture
def browser(tmp_path):
    """Debian's headless Chromium, driven through chromium-driver (make browser installs both)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    from helpers.system.paths import RUNS

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1500,1400",
                f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.set_page_load_timeout(600)  # the presentation mode starts every backend before it draws
    (RUNS / "browser").mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


@pytest.fixture(scope="session")
def book_run(tmp_path_factory):
    """Where the notebook tests keep their executed copies of one run (the real model, local processes): the
    book is built from them."""
    return tmp_path_factory.mktemp("book-run")


@pytest.fixture(scope="session")
def nano():
    """(model, tokenizer, folder) of the committed phi4-nano."""
    from helpers.nano import phi4_nano
    return phi4_nano.load()


@pytest.fixture(scope="session")
def nano_card(nano):
    from helpers import models
    return models.get("phi4-nano")


@pytest.fixture(scope="session")
def onnx_folder(nano_card):
    """phi4-nano converted to every ONNX variant (cached)."""
    from helpers.models import onnx_convert
    return onnx_convert.converted(nano_card, progress=False)


@pytest.fixture(scope="session")
def engine_server(nano_card, onnx_folder):
    """The SLM Engine as a local process serving phi4-nano's genai-fp32 build."""
    from helpers import backends
    from helpers.deploy import runtimes
    spec = backends.get("onnx-engine").spec(nano_card, "local", model_path=onnx_folder / "genai-fp32")
    with runtimes.LocalRuntime().start(spec, timeout=60, progress=False) as server:
        yield server


def small_notebook(path, parameters: str, *sources: str):
    """A notebook with a parameters cell and ``sources`` as code cells (for the deploy layer's kernel tests)."""
    import nbformat

    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    nb.cells = [nbformat.v4.new_code_cell(parameters, metadata={"tags": ["parameters"]})]
    nb.cells += [nbformat.v4.new_code_cell(s) for s in sources]
    nbformat.write(nb, path)
    return path


@pytest.fixture(scope="session")
def learners_own(tmp_path_factory):
    """A learner's own Docker things, named as the docs name them: Ollama's `ollama` volume (with a file in it), a
    container named `ollama`, and a compose project `slm-engine` with a volume of its own. Made here where missing
    (and removed at the end); where the machine already has them, in whatever state (a stopped container too), they
    are only looked at. ``check()`` lists what is no longer as it was when the fixture began."""
    import subprocess

    import docker

    from helpers.deploy.compose import PROJECT_LABEL, compose_command
    from helpers.system.machine import OFFLINE_BASE

    client = docker.from_env()
    made = []
    try:
        client.volumes.get("ollama")
    except docker.errors.NotFound:
        client.volumes.create("ollama")
        made.append(("volume", "ollama"))
        client.containers.run(OFFLINE_BASE, ["sh", "-c", "echo mine > /data/notes"], remove=True,
                              volumes={"ollama": {"bind": "/data", "mode": "rw"}})
    try:
        client.containers.get("ollama")
    except docker.errors.NotFound:
        client.containers.run(OFFLINE_BASE, ["sleep", "infinity"], name="ollama", detach=True)
        made.append(("container", "ollama"))
    stack = tmp_path_factory.mktemp("learners-stack") / "compose.yaml"
    stack.write_text(f"services:\n  app:\n    image: {OFFLINE_BASE}\n    command: [sleep, infinity]\n"
                     "    volumes: [data:/data]\nvolumes:\n  data:\n")
    compose = compose_command()
    project = [*compose, "-p", "slm-engine", "-f", str(stack)] if compose else None
    in_project = {"label": f"{PROJECT_LABEL}=slm-engine"}
    if project and not client.containers.list(all=True, filters=in_project):
        subprocess.run([*project, "up", "-d"], check=True, capture_output=True)
        made.append(("stack", "slm-engine"))

    def state() -> dict[str, object]:
        """What a touch would change: the volume's files (name, size, time), the container's id, status and
        start, the stack's containers (id, status) and volumes."""
        container = client.containers.get("ollama")
        return {"the ollama volume's files": client.containers.run(
                    OFFLINE_BASE, ["find", "/data", "-printf", "%p %s %T@\\n"], remove=True,
                    volumes={"ollama": {"bind": "/data", "mode": "ro"}}),
                "the ollama container": (container.id, container.status, container.attrs["State"]["StartedAt"]),
                "the slm-engine stack": sorted((c.id, c.status) for c in client.containers.list(all=True, filters=in_project)),
                "the slm-engine stack's volumes": sorted(v.name for v in client.volumes.list(filters=in_project))}

    before = state()

    def check() -> list[str]:
        try:
            now = state()
        except docker.errors.NotFound:  # the container was removed
            return ["the ollama container"]
        return [name for name, value in before.items() if now[name] != value]

    yield check
    for kind, name in reversed(made):
        if kind == "stack":
            subprocess.run([*project, "down", "-v"], capture_output=True)
        elif kind == "container":
            client.containers.get(name).remove(force=True)
        else:
            client.volumes.get(name).remove(force=True)
