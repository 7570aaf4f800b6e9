"""The Ollama-API stand-in holds up as Ollama does against names and digests that try to climb out of its store,
pages on other origins, hosts that are not local, a full queue and requests it cannot serve — checked against
its HTTP API with a store in a temporary folder and no model (no generation is needed to be refused)."""
import json
import struct

import pytest
from fastapi.testclient import TestClient

from helpers.servers.ollama_standin import store as store_module
from helpers.servers.ollama_standin.api import create_app, host_allowed, origin_allowed
from helpers.servers.ollama_standin.errors import OllamaError
from helpers.servers.ollama_standin.runners import BUSY, Service
from helpers.servers.ollama_standin.store import MEDIA, Store, model_name, publish

CLIMBING = ["a/../../../outside:victim", "../outside:victim", "a/b/c/d:e", ".hidden", "x:../y", "a//b", "/abs",
            "a/..", "..", "a/./b", "nul\x00l", "with space", "a:b:c", "ü", "x" * 81, "ns.dot/model", ":tag", "model:",
            "a\\..\\b", "~/x", "$HOME", "model:" + "t" * 81]


@pytest.fixture
def victim(tmp_path):
    """A file of the learner's beside the store: nothing the stand-in is asked may touch it."""
    path = tmp_path / "outside"
    path.mkdir()
    (path / "victim").write_text("the learner's file")
    return path / "victim"


def tiny_gguf(path):
    """A GGUF header with no tensors: enough to be pulled, shown and refused, never to generate."""
    def text(value: str) -> bytes:
        return struct.pack("<Q", len(value)) + value.encode()
    metadata = [("general.architecture", 8, text("llama")), ("llama.context_length", 4, struct.pack("<I", 128))]
    body = b"".join(text(key) + struct.pack("<I", kind) + value for key, kind, value in metadata)
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, len(metadata)) + body)
    return path


@pytest.fixture
def service(tmp_path):
    store = Store(tmp_path / "store" / "models")
    (store.root / "manifests" / "a").mkdir()  # a repository folder, as after any pull
    publish(tmp_path / "library", "tiny:latest", tiny_gguf(tmp_path / "model.gguf"))
    return Service(store, tmp_path / "library")


@pytest.fixture
def http(service):
    with TestClient(create_app(service), base_url="http://127.0.0.1:11434") as client:
        yield client


@pytest.mark.parametrize("name", CLIMBING)
def test_names_are_checked_as_ollama_checks_them(name):
    with pytest.raises(OllamaError) as err:
        model_name(name)
    assert err.value.status == 400 and err.value.message == "invalid model name"


@pytest.mark.parametrize("name, normal", [
    ("phi4-mini", "phi4-mini:latest"), ("qwen2.5-coder:0.5b", "qwen2.5-coder:0.5b"),
    ("library/phi4-mini:3.8b", "library/phi4-mini:3.8b"), ("registry.ollama.ai/library/phi4-mini:q4_K_M",
                                                           "registry.ollama.ai/library/phi4-mini:q4_K_M"),
    ("hf.co:443/user_1/Model-2.5:latest", "hf.co:443/user_1/Model-2.5:latest")])
def test_the_names_ollama_takes_are_taken(name, normal):
    assert model_name(name) == normal


@pytest.mark.parametrize("digest", ["sha256:../../outside/victim", "sha256:" + "0" * 63, "sha256:" + "G" * 64,
                                    "md5:" + "0" * 32, "sha256:" + "0" * 64 + "/x", "", None, 7])
def test_digests_are_sha256_and_64_hex_digits(service, digest):
    with pytest.raises(OllamaError) as err:
        service.store.blob(digest)
    assert err.value.status == 400
    assert service.store.blob("sha256:" + "a" * 64).parent == service.store.root / "blobs"


@pytest.mark.parametrize("name", CLIMBING[:6])
@pytest.mark.parametrize("method, path, body", [
    ("DELETE", "/api/delete", lambda n: {"model": n}), ("POST", "/api/show", lambda n: {"model": n}),
    ("POST", "/api/pull", lambda n: {"model": n, "stream": False}),
    ("POST", "/api/copy", lambda n: {"source": "tiny:latest", "destination": n}),
    ("POST", "/api/copy", lambda n: {"source": n, "destination": "x"}),
    ("POST", "/api/create", lambda n: {"model": n, "from": "tiny", "stream": False}),
    ("POST", "/api/create", lambda n: {"model": "x", "from": n, "stream": False}),
    ("POST", "/api/chat", lambda n: {"model": n, "messages": [{"role": "user", "content": "hi"}]}),
    ("POST", "/api/generate", lambda n: {"model": n, "prompt": "hi"}),
    ("POST", "/v1/chat/completions", lambda n: {"model": n, "messages": [{"role": "user", "content": "hi"}]})])
def test_no_endpoint_lets_a_name_climb_out_of_the_store(http, victim, tmp_path, method, path, body, name):
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    response = http.request(method, path, content=json.dumps(body(name)))
    assert response.status_code == 400, response.text
    assert victim.read_text() == "the learner's file"
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before, "nothing was written or removed"


def test_a_manifest_whose_layer_digest_climbs_out_is_refused(service, http, victim):
    """A manifest on disk that names a layer outside the store (as CVE-2024-37032's did) is never followed."""
    manifest = service.store.root / "manifests" / "evil" / "latest"
    manifest.parent.mkdir(parents=True)
    layer = {"mediaType": MEDIA["model"], "digest": "sha256:../../../outside/victim", "size": 1}
    manifest.write_text(json.dumps({"config": {"digest": "sha256:" + "0" * 64}, "layers": [layer]}))
    assert http.post("/api/show", json={"model": "evil"}).status_code == 400
    assert http.post("/api/chat", json={"model": "evil", "messages": [{"role": "user", "content": "hi"}]}).status_code == 400
    http.request("DELETE", "/api/delete", json={"model": "evil"})
    assert victim.read_text() == "the learner's file"


def test_pull_then_copy_and_delete_stay_inside_the_store(http, service, victim):
    assert http.post("/api/pull", json={"model": "tiny", "stream": False}).json()["status"] == "success"
    assert http.post("/api/copy", json={"source": "tiny", "destination": "ns/tiny2:v1"}).status_code == 200
    assert set(service.store.names()) == {"tiny:latest", "ns/tiny2:v1"}
    assert http.request("DELETE", "/api/delete", json={"model": "ns/tiny2:v1"}).status_code == 200
    assert http.request("DELETE", "/api/delete", json={"model": "tiny"}).status_code == 200
    assert not list((service.store.root / "blobs").iterdir()) and victim.exists()


@pytest.mark.parametrize("origin, allowed", [
    ("http://localhost:3000", True), ("http://127.0.0.1", True), ("https://0.0.0.0:8443", True), ("app://ollama", True),
    ("vscode-webview://abc", True), ("https://evil.example", False), ("http://localhost.evil.example", False),
    ("null", False), ("http://127.0.0.1.nip.io", False)])
def test_pages_from_other_origins_are_refused(http, origin, allowed):
    """A browser sends a text/plain POST to any origin without asking first: the Origin header is what stops it."""
    assert origin_allowed(origin) is allowed
    response = http.post("/api/pull", content='{"model": "tiny", "stream": false}',
                         headers={"Origin": origin, "Content-Type": "text/plain"})
    assert (response.status_code != 403) is allowed
    if allowed:
        assert response.headers["access-control-allow-origin"] == origin


def test_origins_can_be_added_as_ollama_origins_adds_them(service):
    with TestClient(create_app(service, origins=("https://*.example.org",)), base_url="http://127.0.0.1:11434") as http:
        assert http.get("/api/tags", headers={"Origin": "https://lab.example.org"}).status_code == 200
        assert http.get("/api/tags", headers={"Origin": "https://example.com"}).status_code == 403


@pytest.mark.parametrize("host, allowed", [
    ("127.0.0.1:11434", True), ("localhost:11434", True), ("[::1]:11434", True), ("10.1.2.3", True),
    ("my-lab.local", True), ("x.internal:80", True), ("evil.example", False), ("rebind.attacker.net:11434", False),
    ("8.8.8.8", False)])
def test_a_server_on_loopback_answers_only_local_host_names(service, host, allowed):
    """DNS rebinding: a page's own name, pointed at 127.0.0.1, arrives as its Host header."""
    assert host_allowed(host) is allowed
    with TestClient(create_app(service)) as http:
        assert (http.get("/api/tags", headers={"Host": host}).status_code == 200) is allowed
    with TestClient(create_app(service, listen="0.0.0.0")) as http:  # in a container: Docker publishes it
        assert http.get("/api/tags", headers={"Host": host}).status_code == 200


def test_a_full_queue_is_503_with_ollamas_words(http, service):
    assert http.post("/api/pull", json={"model": "tiny", "stream": False}).json()["status"] == "success"
    service.pending = service.max_pending  # OLLAMA_NUM_PARALLEL + OLLAMA_MAX_QUEUE requests in flight
    for stream in (False, True):
        response = http.post("/api/generate", json={"model": "tiny", "prompt": "hi", "stream": stream})
        assert response.status_code == 503 and response.json()["error"] == BUSY


def test_what_a_request_may_load_is_bounded(http, service):
    """num_ctx to the model's trained context (as Ollama), threads to the CPUs, the batch to the context."""
    from helpers.system.cpus import available_cpus

    http.post("/api/pull", json={"model": "tiny", "stream": False})
    model = service.store.model("tiny")
    options = service.options_for(model, {"num_ctx": 10**9, "num_thread": 10**6, "num_batch": 10**9})
    assert options["num_ctx"] == 128 and options["num_thread"] == available_cpus() and options["num_batch"] == 128
    assert service.options_for(model, {"num_ctx": 64, "num_thread": 1})["num_ctx"] == 64


def test_an_unexpected_error_is_a_plain_500_without_its_details(service, monkeypatch):
    monkeypatch.setattr(store_module.Store, "names", lambda self: (_ for _ in ()).throw(OSError("/secret/path")))
    with TestClient(create_app(service), base_url="http://127.0.0.1:11434", raise_server_exceptions=False) as http:
        response = http.get("/api/tags")
    assert response.status_code == 500 and response.json() == {"error": "internal server error"}


def test_a_generation_stops_when_its_client_goes_away(service, tmp_path):
    """llama.cpp stops at the next token once the stream's reader is gone (its callback answers "stop")."""
    import asyncio
    import threading

    from helpers.servers.ollama_standin import api
    from helpers.servers.ollama_standin.store import Model

    delivered = []

    class Runner:
        class server:
            @staticmethod
            def handle_completions(request, deliver):
                for i in range(10_000):
                    delivered.append(i)
                    if deliver({"choices": [{"text": f" w{i}"}]}):
                        return  # llama.cpp ends the generation here
                    threading.Event().wait(0.001)
                deliver({"choices": [{"text": "", "finish_reason": "length"}], "usage": {}})

    service.runners = type("Runners", (), {"acquire": lambda self, *a: (Runner, 0.0), "release": lambda self, r: None,
                                           "unload": lambda self, g: None})()
    service.hidden_tokens = lambda model: ()
    model = Model("m:latest", "0" * 64, tiny_gguf(tmp_path / "m.gguf"), 0, "")
    options = service.options_for(model, {})

    async def read_three_then_leave():
        events = api._pieces(lambda on_text, cancelled: service.run(model, "p", options, None, 300.0, None, on_text,
                                                                    cancelled))
        got = [await events.__anext__() for _ in range(3)]
        await events.aclose()  # what Starlette does to a stream whose client has gone
        return got

    assert [kind for kind, _ in asyncio.run(read_three_then_leave())] == ["text"] * 3
    assert len(delivered) < 1_000 and service.pending == 0, f"{len(delivered)} tokens made for nobody"
