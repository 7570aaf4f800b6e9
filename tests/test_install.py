"""`make setup` on an ordinary Linux machine: PyPI only, no local torch wheel (CI machines hide one in pip's config)."""
import os
import subprocess
import time

import pytest

from helpers.system.paths import REPO


@pytest.mark.slow
def test_make_setup_succeeds_from_pypi_alone(tmp_path):
    """What a laptop sees: ``env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null`` hides this machine's local wheels and
    indexes. PyPI's torch is then the CUDA build; setup keeps it (it runs on a CPU) with a warning."""
    env = {k: v for k, v in os.environ.items() if k != "PIP_FIND_LINKS"} | {"PIP_CONFIG_FILE": "/dev/null"}
    venv = tmp_path / "venv"
    start = time.monotonic()
    result = subprocess.run(["make", "setup", f"VENV={venv}"], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=2400)
    seconds = time.monotonic() - start
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    probe = subprocess.run([str(venv / "bin" / "python"), "-c",
                            "import torch, transformers, onnxruntime_genai, papermill; print(torch.__version__)"],
                           capture_output=True, text=True, env=env)
    assert probe.returncode == 0, probe.stderr[-2000:]
    assert probe.stdout.strip().startswith("2.13.0")
    print(f"make setup from PyPI alone: {seconds:.0f} s, torch {probe.stdout.strip()}")
