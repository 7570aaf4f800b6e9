"""compose/: every file validates and passes the lint; the lint catches the seed's flaws; k8s renders clean."""
import asyncio
import socket
import subprocess
import sys

import pytest

from helpers import compose_check, k8s, metrics
from helpers.paths import REPO


@pytest.mark.parametrize("path", compose_check.COMPOSE_FILES, ids=lambda p: p.parent.name)
def test_compose_file_is_valid(path):
    valid, detail = compose_check.validate(path)
    assert valid, detail


@pytest.mark.parametrize("path", compose_check.COMPOSE_FILES, ids=lambda p: p.parent.name)
def test_compose_file_passes_the_security_lint(path):
    assert compose_check.lint(path) == []
    assert all(reason for reason in compose_check.waivers(path).values()), "a waiver needs its reason"


def test_every_stack_is_there():
    assert {p.parent.name for p in compose_check.COMPOSE_FILES} == {"vllm", "ollama", "onnx-engine"}


def test_lint_catches_the_seeds_flaws():
    rules = {f.rule for p in compose_check.SEED_COMPOSE_FILES for f in compose_check.lint(p)}
    assert {"obsolete-version", "unpinned-image", "no-limits", "root-user", "no-curl", "no-healthcheck"} <= rules


@pytest.mark.parametrize("service, rule", [
    ({"image": "x:latest"}, "unpinned-image"), ({"image": "x"}, "unpinned-image"), ({"privileged": True}, "privileged"),
    ({"environment": {"HF_TOKEN": "hf_abc"}}, "inline-secret"), ({"environment": ["API_KEY=1"]}, "inline-secret"),
    ({"user": "0"}, "root-user"), ({"image": "ollama/ollama:1", "healthcheck": {"test": ["CMD", "curl", "x"]}}, "no-curl"),
])
def test_lint_rules(service, rule):
    assert rule in {f.rule for f in compose_check.lint_config({"services": {"s": service}})}


def test_waivers_silence_a_rule_and_jobs_need_no_healthcheck():
    job = {"image": "x:1", "restart": "no", "user": "1000", "read_only": True, "cap_drop": ["ALL"],
           "deploy": {"resources": {"limits": {"cpus": "1", "memory": "1g"}}}}
    assert compose_check.lint_config({"services": {"job": job}}) == []
    rooted = {**job, "user": "root"}
    assert compose_check.lint_config({"x-lint-waivers": {"root-user": "why"}, "services": {"s": rooted}}) == []


def test_k8s_manifests_render_and_pass_their_checks():
    docs = k8s.render({"replicas": 3})
    assert [d["kind"] for d in docs] == ["Namespace", "PersistentVolumeClaim", "Deployment", "Service",
                                         "HorizontalPodAutoscaler"]
    assert docs[2]["spec"]["replicas"] == 3 and k8s.problems(docs) == []
    broken = k8s.render({"image": "engine:latest"})
    container = broken[2]["spec"]["template"]["spec"]["containers"][0]
    del container["readinessProbe"]
    container["securityContext"]["readOnlyRootFilesystem"] = False
    broken[3]["spec"]["selector"] = {"app": "other"}
    assert len(k8s.problems(broken)) == 4


def test_prometheus_text_is_parsed():
    text = "# TYPE a counter\na_total 3\nb{x=\"1\"} 1.5\nb{x=\"2\"} 2\n"
    assert metrics.parse(text) == {"a_total": 3.0, "b": 3.5}


def test_tcp_lb_spreads_connections_over_replicas():
    """Two 'replicas' (127.0.0.1 and 127.0.0.2, same port) behind the balancer: connections alternate."""
    from helpers.deploy import free_port

    port, lb_port = free_port(), free_port()

    async def replica(host, name):
        async def handle(reader, writer):
            writer.write(name.encode())
            await writer.drain()
            writer.close()
        return await asyncio.start_server(handle, host, port)

    async def main():
        servers = [await replica("127.0.0.1", "a"), await replica("127.0.0.2", "b")]
        proc = subprocess.Popen([sys.executable, str(REPO / "compose" / "lb" / "tcp_lb.py"), "--listen",
                                 f"127.0.0.1:{lb_port}", "--backend", f"127.0.0.1,127.0.0.2:{port}"])
        try:
            for _ in range(50):
                try:
                    socket.create_connection(("127.0.0.1", lb_port), 0.2).close()
                    break
                except OSError:
                    await asyncio.sleep(0.1)
            seen = []
            for _ in range(4):
                reader, writer = await asyncio.open_connection("127.0.0.1", lb_port)
                seen.append((await reader.read(10)).decode())
                writer.close()
            return seen
        finally:
            proc.terminate()
            for server in servers:
                server.close()

    seen = asyncio.run(main())
    assert sorted(seen) == ["a", "a", "b", "b"] and seen[0] != seen[1]


def test_overview_has_a_clean_row_per_file():
    rows = compose_check.overview()
    assert [r["file"] for r in rows] == [str(p.relative_to(REPO)) for p in compose_check.COMPOSE_FILES]
    assert all(r["valid"] and r["lint findings"] == 0 for r in rows)
