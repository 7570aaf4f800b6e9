import pytest

from helpers.system import machine


def _env(**overrides):
    base = dict(python="3.11.7", platform="Linux", cpus=2, ram_gb=24.0, ram_available_gb=20.0, disk_free_gb=80.0,
                cpu_flags=["avx2"], docker=None, docker_error="no socket", nvidia_runtime=False, gpus=[])
    return machine.Environment(**{**base, **overrides})


def test_auto_picks_docker_only_when_a_daemon_answers_and_images_can_be_pulled():
    assert machine.resolve_runtime("auto", _env()) == "local"
    assert machine.resolve_runtime("auto", _env(docker="28.2.2", docker_error=None)) == "local"  # no registry
    assert machine.resolve_runtime("auto", _env(docker="28.2.2", docker_error=None, registry=True)) == "docker"


def test_docker_without_daemon_is_a_clear_error():
    with pytest.raises(RuntimeError, match="needs a reachable Docker daemon: no socket"):
        machine.resolve_runtime("docker", _env())


def test_unknown_runtime_rejected():
    with pytest.raises(ValueError, match="runtime must be one of"):
        machine.resolve_runtime("kubernetes", _env())


def test_gpu_memory_is_read_from_nvidia_smi_lines():
    assert machine.gpu_memory_gb(["NVIDIA H100 80GB HBM3, 81559 MiB", "NVIDIA T4, 15360 MiB"]) == 85.5
    assert machine.gpu_memory_gb([]) == 0.0


def test_check_environment_reads_this_machine():
    env = machine.check_environment()
    assert env.cpus >= 1 and env.ram_gb > 0 and env.python.count(".") == 2
    from helpers.workbook import doctor
    assert "Docker" in doctor.describe_machine(env)
