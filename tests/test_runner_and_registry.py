"""``make lab``'s first lines (which runtime and why, what it downloads) and the registry's download sizes."""
import pytest

from helpers.deploy import registry
from helpers.system import machine
from helpers.workbook import runner


def _env(**overrides):
    base = dict(python="3.11.7", platform="Linux", cpus=2, ram_gb=16.0, ram_available_gb=12.0, disk_free_gb=80.0,
                cpu_flags=["avx2"], docker="27.3.1", docker_error=None, nvidia_runtime=False, gpus=[], registry=True)
    return machine.Environment(**{**base, **overrides})


@pytest.mark.parametrize("env, runtime, why", [
    (_env(), "docker", "Docker Hub is reachable"),
    (_env(registry=False), "local", "RUNTIME=docker runs the lab's local stand-in images"),
    (_env(docker=None, docker_error="PermissionError: the socket"), "local", "no Docker daemon answers"),
])
def test_auto_picks_docker_only_where_the_official_images_can_be_pulled(env, runtime, why):
    chosen, reason = machine.runtime_choice("auto", env)
    assert chosen == runtime and why in reason
    assert machine.runtime_choice("local", env) == ("local", "asked for")


def test_the_workbook_says_which_runtime_and_what_it_downloads_first(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(machine, "check_environment", lambda: _env(registry=False))
    monkeypatch.setattr(runner, "RUNS", tmp_path)
    assert runner.main(["--model", "phi4-nano", "--only", "none-of-them"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("runtime: local (auto: Docker Hub does not answer")
    assert out[1] == "model: phi4-nano — phi4-nano" and out[2] == "downloaded or built on first use:"
    assert "ships with the lab" in out[3] and any("vllm" in line and "virtualenv" in line for line in out[4:])


class _Response:
    def __init__(self, body):
        self.body = body

    def json(self):
        return self.body


def test_download_size_reads_the_platforms_manifest(monkeypatch):
    """A recorded index and manifest (shapes as Docker Hub serves them): the layers and config of linux/arm64."""
    index = {"manifests": [{"digest": "sha256:amd", "platform": {"os": "linux", "architecture": "amd64"}},
                           {"digest": "sha256:arm", "platform": {"os": "linux", "architecture": "arm64"}}]}
    manifest = {"config": {"size": 7000}, "layers": [{"size": 1_000_000}, {"size": 2_500_000}]}
    asked = []

    def get(url, **kwargs):
        asked.append(url)
        if url == registry.AUTH:
            assert kwargs["params"]["scope"] == "repository:ollama/ollama:pull"
            return _Response({"token": "t"})
        return _Response(index if url.endswith("/manifests/0.18.2") else manifest)

    monkeypatch.setattr(registry.requests, "get", get)
    assert registry.download_size("ollama/ollama:0.18.2", "aarch64") == 3_507_000
    assert asked[-1].endswith("/ollama/ollama/manifests/sha256:arm")
    assert registry.download_size("ollama/ollama:0.18.2", "riscv64") is None  # no such platform published
    assert registry._repository_and_tag("python:3.11-slim") == ("library/python", "3.11-slim")
