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
