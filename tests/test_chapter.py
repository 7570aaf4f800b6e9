"""A notebook's start: runtime and model from its parameters or notebook 00's saved choice; hard and soft checks."""
import pytest

from helpers import models
from helpers.system import machine
from helpers.workbook import chapter
from helpers.workbook.summary import CheckFailed, Summary, hard_failures


def _env(**overrides):
    base = dict(python="3.11.7", platform="Linux", cpus=2, ram_gb=24.0, ram_available_gb=20.0, disk_free_gb=80.0,
                cpu_flags=["avx2"], docker=None, docker_error="no socket", nvidia_runtime=False, gpus=[])
    return machine.Environment(**{**base, **overrides})


def test_notebook_00s_choice_is_used_unless_a_notebook_is_told_otherwise(tmp_path):
    assert chapter.resolve("auto", None, _env(), tmp_path) == ("local", models.DEFAULT)
    chapter.save_choice("docker", "phi4-nano", tmp_path)
    docker = _env(docker="28.2.2", docker_error=None)
    assert chapter.resolve("auto", None, docker, tmp_path) == ("docker", "phi4-nano")
    assert chapter.resolve("local", "qwen2.5-coder-0.5b", docker, tmp_path) == ("local", "qwen2.5-coder-0.5b")
    with pytest.raises(RuntimeError, match="needs a reachable Docker daemon"):
        chapter.resolve("auto", None, _env(), tmp_path)  # the saved docker choice, but no daemon here


def _lab(tmp_path, key):
    return chapter.Chapter("00_x", _env(), "local", models.get(key), Summary("00_x", tmp_path))


def test_grades_are_hard_for_known_answers_and_scores_otherwise(tmp_path):
    nano = _lab(tmp_path, "phi4-nano")
    with pytest.raises(CheckFailed):
        nano.grade("sum", "the sum is right", False, "41")
    real = _lab(tmp_path / "real", "qwen2.5-coder-0.5b")
    assert not real.grade("sum", "the sum is right", False, "41, I think")
    real.check("healthy", "server healthy", True)
    data = real.summary.data
    assert data["checks"]["sum"] == {"ok": False, "detail": "", "text": "the sum is right", "answer": "41, I think",
                                     "soft": True}
    assert hard_failures(data) == {}
    with pytest.raises(CheckFailed):
        real.check("bad-requests", "bad requests are 4xx", False)
    assert list(hard_failures(real.summary.data)) == ["bad-requests"]


def test_skipped_work_is_recorded_with_its_reason(tmp_path):
    lab = _lab(tmp_path, "phi4-nano")
    assert lab.skip("engine stack", "no Docker daemon") is None
    assert lab.summary.data["values"]["skipped"] == {"engine stack": "no Docker daemon"}


def test_start_all_checks_every_backend_fits_together_before_starting_any(tmp_path, monkeypatch):
    lab = chapter.Chapter("05_x", _env(ram_gb=16.0), "local", models.get("qwen2.5-coder-0.5b"), Summary("05_x", tmp_path))
    started = []
    monkeypatch.setattr(lab, "start", lambda backend, **kw: started.append(backend))
    with pytest.raises(models.ResourceError, match="does not fit this machine"):
        lab.start_all(also_needs=("transformers",))
    assert started == []
