"""Notebook 06's helpers, without Docker: the stack's settings from the model card, HAProxy's stats, readable sources."""
import stat

from helpers import models
from helpers.workbook import production

CSV = """# pxname,svname,qcur,qmax,scur,smax,slim,stot,status,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx
engine,FRONTEND,,,0,2,512,109,OPEN,0,109,0,0,0
engines,engine1,0,0,1,2,,82,UP,0,80,0,2,0
engines,engine2,0,0,0,2,,27,UP,0,27,0,0,0
engines,engine3,0,0,0,0,,0,MAINT (resolution),0,0,0,0,0
engines,BACKEND,0,0,1,2,,109,UP,0,107,0,2,0
"""


def test_lb_stats_are_per_replica_found_by_dns(monkeypatch):
    monkeypatch.setattr("requests.get", lambda url, timeout: type("R", (), {"text": CSV})())
    assert production.lb_stats(8404) == [
        {"server": "engine1", "status": "UP", "requests": 82, "active now": 1},
        {"server": "engine2", "status": "UP", "requests": 27, "active now": 0}]


def test_the_stack_takes_its_values_from_the_model_card(monkeypatch, tmp_path):
    card = models.get("phi-4-mini")
    monkeypatch.setattr(type(card.source), "hf_folder", lambda self, progress=True: tmp_path)  # no Hub here
    stack = production.stack(card, 18080, 18404, 1.0, "haproxy:2.6.12")
    assert {k: stack.env[k] for k in ("CONVERT_SOURCE", "CONVERT_PRECISION", "ENGINE_VARIANT", "SERVED_MODEL_NAME",
                                      "ENGINE_CONTEXT", "ENGINE_MEMORY", "LB_IMAGE")} == {
        "CONVERT_SOURCE": str(tmp_path), "CONVERT_PRECISION": "int4", "ENGINE_VARIANT": "genai-int4",
        "SERVED_MODEL_NAME": "phi4-mini", "ENGINE_CONTEXT": "4096", "ENGINE_MEMORY": "8g", "LB_IMAGE": "haproxy:2.6.12"}


def test_sources_are_made_readable_for_the_unprivileged_convert_job(tmp_path):
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"x")
    weights.chmod(0o600)  # how safetensors writes them
    production.readable(tmp_path)
    assert weights.stat().st_mode & stat.S_IROTH


def test_failed_requests_are_shown_with_their_errors():
    ok = {"concurrency": 1, "failed": 0, "errors": []}
    busy = {"concurrency": 4, "failed": 3, "errors": ["HTTP 503: no server is available"]}
    assert production.failures({"1 replica": [ok, busy], "2 replicas": [ok]}) == [
        {"stack": "1 replica", "concurrency": 4, "failed": 3, "errors": ["HTTP 503: no server is available"]}]
