"""compose/: every file validates and passes the lint; the lint catches the seed's flaws; k8s renders clean."""
import pytest

from helpers.deploy import compose_lint, k8s
from helpers.formats import prometheus
from helpers.system.paths import REPO


@pytest.mark.parametrize("path", compose_lint.COMPOSE_FILES, ids=lambda p: p.parent.name)
def test_compose_file_is_valid(path):
    valid, detail = compose_lint.validate(path)
    assert valid, detail


@pytest.mark.parametrize("path", compose_lint.COMPOSE_FILES, ids=lambda p: p.parent.name)
def test_compose_file_passes_the_security_lint(path):
    assert compose_lint.lint(path) == []
    assert all(reason for reason in compose_lint.waivers(path).values()), "a waiver needs its reason"


def test_every_stack_is_there():
    assert {p.parent.name for p in compose_lint.COMPOSE_FILES} == {"vllm", "ollama", "onnx-engine"}


def test_lint_catches_the_seeds_flaws():
    rules = {f.rule for p in compose_lint.SEED_COMPOSE_FILES for f in compose_lint.lint(p)}
    assert {"obsolete-version", "unpinned-image", "no-limits", "root-user", "no-curl", "no-healthcheck",
            "public-port"} <= rules


@pytest.mark.parametrize("service, rule", [
    ({"image": "x:latest"}, "unpinned-image"), ({"image": "x"}, "unpinned-image"), ({"privileged": True}, "privileged"),
    ({"environment": {"HF_TOKEN": "hf_abc"}}, "inline-secret"), ({"environment": ["API_KEY=1"]}, "inline-secret"),
    ({"user": "0"}, "root-user"), ({"image": "ollama/ollama:1", "healthcheck": {"test": ["CMD", "curl", "x"]}}, "no-curl"),
    ({"ports": ["8000:8000"]}, "public-port"), ({"ports": ["0.0.0.0:8000:8000"]}, "public-port"), ({"ports": ["8000"]}, "public-port"),
    ({"ports": [{"target": 80, "published": 8080}]}, "public-port"), ({"ports": ["[::]:80:80"]}, "public-port"),
])
def test_lint_rules(service, rule):
    assert rule in {f.rule for f in compose_lint.lint_config({"services": {"s": service}})}


@pytest.mark.parametrize("port", ["127.0.0.1:8000:8000", "127.0.0.1:${PORT:-80}:80", "[::1]:80:80",
                                  {"target": 80, "published": 80, "host_ip": "127.0.0.1"}, {"target": 80}])
def test_ports_on_loopback_pass(port):
    assert "public-port" not in {f.rule for f in compose_lint.lint_config({"services": {"s": {"ports": [port]}}})}


def test_waivers_silence_a_rule_and_jobs_need_no_healthcheck():
    job = {"image": "x:1", "restart": "no", "user": "1000", "read_only": True, "cap_drop": ["ALL"],
           "deploy": {"resources": {"limits": {"cpus": "1", "memory": "1g"}}}}
    assert compose_lint.lint_config({"services": {"job": job}}) == []
    rooted = {**job, "user": "root"}
    assert compose_lint.lint_config({"x-lint-waivers": {"root-user": "why"}, "services": {"s": rooted}}) == []


def test_k8s_manifests_render_and_pass_their_checks():
    from helpers import models

    docs = k8s.render(k8s.values_for(models.get("phi-4-mini"), 3, "genai-int4"))
    container = docs[2]["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["memory"] == "8Gi" and "phi4-mini" in container["args"]
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
    assert prometheus.parse(text) == {"a_total": 3.0, "b": 3.5}


def test_the_load_balancer_is_haproxy_configured_for_http_health_and_streaming():
    cfg = (REPO / "compose" / "lb" / "haproxy.cfg").read_text()
    for line in ("mode http", "balance leastconn", "option httpchk GET /health", "no option http-buffer-request",
                 "server-template engine 4 engine:8080", "nameserver dns 127.0.0.11:53", "stats uri /stats",
                 "timeout check 10s"):  # a replica busy on one core answers /health late
        assert line in cfg, line
    assert not list((REPO / "compose" / "lb").glob("*.py")), "no project-written balancer"
    lb = compose_lint.yaml.safe_load((REPO / "compose" / "onnx-engine" / "compose.yaml").read_text())["services"]["lb"]
    assert lb["image"] == "${LB_IMAGE:-haproxy:2.6.12}" and "haproxy.cfg" in lb["volumes"][0]


def test_model_dependent_stack_values_come_from_the_environment():
    services = compose_lint.yaml.safe_load((REPO / "compose" / "onnx-engine" / "compose.yaml").read_text())["services"]
    engine = services["engine"]
    assert engine["deploy"]["resources"]["limits"]["memory"] == "${ENGINE_MEMORY:-8g}"
    assert "${SERVED_MODEL_NAME:-phi4-mini}" in engine["command"] and "${ENGINE_CONTEXT:-4096}" in engine["command"]
    convert = services["convert"]
    assert "${CONVERT_SOURCE:-hf-cache}:/source:ro" in convert["volumes"] and convert["user"] == "1000:1000"
    dockerfile = (REPO / "compose" / "onnx-engine" / "Dockerfile.convert").read_text()
    assert "mkdir -p /models && chown convert:convert /models" in dockerfile  # a fresh volume is writable by the job


def test_validation_is_skipped_not_failed_without_compose(monkeypatch):
    monkeypatch.setattr(compose_lint, "compose_command", lambda: None)
    valid, detail = compose_lint.validate(compose_lint.COMPOSE_FILES[0])
    assert valid is None and "not installed" in detail


@pytest.mark.parametrize("v2, v1, expected", [(0, 0, ("docker", "compose")), (1, 0, ("docker-compose",)), (1, 1, None)])
def test_compose_v2_first_v1_accepted(monkeypatch, v2, v1, expected):
    """One place decides: the `docker compose` plugin where it answers (Docker Desktop, docker-ce), else v1."""
    from helpers.deploy import compose

    codes = {("docker", "compose"): v2, ("docker-compose",): v1}

    def run(argv, **kwargs):
        return type("Done", (), {"returncode": codes[tuple(argv[:-1])]})()

    compose.compose_command.cache_clear()
    monkeypatch.setattr(compose.subprocess, "run", run)
    try:
        assert compose.compose_command() == expected
    finally:
        compose.compose_command.cache_clear()


# What Compose v2 (docker compose 2.x) prints and names: containers `<project>-<service>-<n>` (v1: underscores).
V2_UP = ("[+] Running 3/3\n ✔ Network slm-lab-engine_default     Created\n"
         " ✔ Container slm-lab-engine-engine-1  Started\n ✔ Container slm-lab-engine-lb-1      Started\n")


class _Container:
    def __init__(self, name, service):
        self.name, self.labels = name, {"com.docker.compose.project": "slm-lab-engine",
                                        "com.docker.compose.service": service}
        self.attrs = {"State": {"Status": "running", "Health": {"Status": "healthy"}}}


def test_compose_v2_runs_through_the_same_code_path(monkeypatch, tmp_path):
    """v2's command line and its container names (recorded output): the stack asks Docker for containers by the
    compose labels both versions set, so it reads either naming."""
    from helpers.deploy import compose

    ran = []

    def run(argv, **kwargs):
        ran.append(argv)
        return type("Done", (), {"returncode": 0, "stdout": V2_UP, "stderr": ""})()

    monkeypatch.setattr(compose, "compose_command", lambda: ("docker", "compose"))
    monkeypatch.setattr(compose.subprocess, "run", run)
    file = tmp_path / "compose.yaml"
    file.write_text("services:\n  engine: {image: e}\n  lb: {image: h}\n")
    stack = compose.ComposeStack(file, "slm-lab-engine")
    containers = [_Container("slm-lab-engine-engine-1", "engine"), _Container("slm-lab-engine-lb-1", "lb")]

    class Client:
        class containers:
            @staticmethod
            def list(all, filters):  # noqa: A002 - the SDK's keyword
                wanted = dict(f.split("=", 1) for f in filters["label"])
                return [c for c in containers if wanted.items() <= c.labels.items()]

        class volumes:
            @staticmethod
            def list(filters):
                return []

    stack.__dict__["client"] = Client
    stack.up(timeout=5)
    assert ran[0][:4] == ["docker", "compose", "-p", "slm-lab-engine"] and ran[0][-3:] == ["up", "-d", "--no-build"]
    assert [r["container"] for r in stack.status()] == ["slm-lab-engine-engine-1", "slm-lab-engine-lb-1"]
    assert [c.name for c in stack.containers("engine")] == ["slm-lab-engine-engine-1"]


def test_overview_has_a_clean_row_per_file():
    rows = compose_lint.overview()
    assert [r["file"] for r in rows] == [str(p.relative_to(REPO)) for p in compose_lint.COMPOSE_FILES]
    assert all(r["valid"] and r["lint findings"] == 0 for r in rows)


def test_findings_by_rule_name_each_place_once_per_rule():
    findings = [compose_lint.Finding("a/x.yaml", "-", "obsolete-version", "old"),
                compose_lint.Finding("a/x.yaml", "web", "root-user", "runs as root"),
                compose_lint.Finding("a/y.yaml", "db", "root-user", "runs as root too")]
    assert compose_lint.by_rule(findings) == [
        {"rule": "obsolete-version", "where": "x.yaml", "for example": "old"},
        {"rule": "root-user", "where": "web, db", "for example": "runs as root"}]
