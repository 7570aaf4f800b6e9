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


def test_threads_leave_out_the_cores_others_keep_busy(monkeypatch):
    from helpers.system import cpus as cpus_module

    monkeypatch.setattr(cpus_module, "usable_cpus", lambda: set(range(4)))
    monkeypatch.setattr(cpus_module.time, "sleep", lambda s: None)
    monkeypatch.setattr(cpus_module, "available_cpus", lambda: 4)
    monkeypatch.delenv(cpus_module.THREADS_VARIABLE, raising=False)
    for busy, free, chosen in [((0, 0, 0, 0), 4, [0, 1, 2, 3]), ((0, 1, 0, 0), 3, [0, 2, 3]),
                               ((0.4, 1, 0, 0), 3, [0, 2, 3]), ((1, 1, 0.6, 1), 1, [2]), ((1, 1, 1, 1), 1, [0])]:
        samples = iter([{c: (0, 0) for c in range(4)}, {c: (100, int(b * 100)) for c, b in enumerate(busy)}])
        monkeypatch.setattr(cpus_module, "_jiffies", lambda cpus: next(samples))
        assert cpus_module.free_cpus() == free, busy
        samples = iter([{c: (0, 0) for c in range(4)}, {c: (100, int(b * 100)) for c, b in enumerate(busy)}])
        monkeypatch.setattr(cpus_module, "_last_sample", [0.0, {}])
        assert cpus_module.thread_cpus() == chosen, busy
    monkeypatch.setenv(cpus_module.THREADS_VARIABLE, "2")  # the learner's choice wins
    samples = iter([{c: (0, 0) for c in range(4)}, {c: (100, 100 * (c == 0)) for c in range(4)}])
    monkeypatch.setattr(cpus_module, "_last_sample", [0.0, {}])
    assert cpus_module.thread_cpus() == [1, 2]
    assert cpus_module.thread_cpus() == [1, 2]  # a sample seconds old is reused, not taken again


def test_threads_without_proc_stat_take_every_usable_cpu(monkeypatch):
    from helpers.system import cpus as cpus_module

    monkeypatch.setattr(cpus_module, "_jiffies", lambda cpus: None)  # macOS, Windows
    monkeypatch.delattr(cpus_module.os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(cpus_module.os, "cpu_count", lambda: 8)
    monkeypatch.setattr(cpus_module, "available_cpus", lambda: 8)
    monkeypatch.delenv(cpus_module.THREADS_VARIABLE, raising=False)
    monkeypatch.setattr(cpus_module, "_last_sample", [0.0, {}])
    assert cpus_module.thread_cpus() == list(range(8))


def test_cgroup_memory_limit_and_use_v1_and_v2(tmp_path):
    """A cgroup's limit and what it holds less droppable page cache, read from v2's unified folder or v1's memory one."""
    v2, v1 = tmp_path / "v2", tmp_path / "v1"
    (v2 / "lab").mkdir(parents=True)
    (v2 / "lab" / "memory.max").write_text(str(8 * 2**30))
    (v2 / "lab" / "memory.current").write_text(str(3 * 2**30))
    (v2 / "lab" / "memory.stat").write_text(f"anon 1\nfile {2**30}\n")
    (v1 / "memory" / "lab").mkdir(parents=True)
    (v1 / "memory" / "lab" / "memory.limit_in_bytes").write_text("9223372036854771712")  # v1's "no limit"
    (v1 / "memory" / "lab" / "memory.usage_in_bytes").write_text(str(2**30))
    (v1 / "memory" / "lab" / "memory.stat").write_text("total_inactive_file 0\n")
    (tmp_path / "cg2").write_text("0::/lab\n")
    (tmp_path / "cg1").write_text("4:cpu,cpuacct:/lab\n3:memory:/lab\n")
    assert machine.cgroup_memory_limit(v2, tmp_path / "cg2") == 8.0
    assert machine._cgroup_memory_used(v2, tmp_path / "cg2") == 2.0
    assert machine.cgroup_memory_limit(v1, tmp_path / "cg1") is None
    assert machine._cgroup_memory_used(v1, tmp_path / "cg1") == 1.0
