"""The Ollama-API stand-in (helpers/servers/ollama_standin/), driven through the official ``ollama`` client.

Response shapes are checked against examples from Ollama's API documentation
(tests/fixtures/ollama_api_examples.json).
"""
import json
from pathlib import Path

import ollama
import pytest

from helpers import backends, models
from helpers.clients import ollama_api, openai_api
from helpers.deploy import runtimes
from helpers.formats import chat_format
from helpers.nano import evaluation
from helpers.tasks import curriculum, grading

pytestmark = pytest.mark.slow
DOCS = json.loads((Path(__file__).parent / "fixtures" / "ollama_api_examples.json").read_text())
NAME = "phi4-nano"
MODEL = f"{NAME}:latest"
GREEDY = {"temperature": 0}
TRAIN = [{"role": "system", "content": curriculum.MATH_SYSTEMS[1]}, {"role": "user", "content": curriculum.SEED_TRAIN_QUESTION}]
TOOL = [{"role": "user", "content": curriculum.SEED_TOOL_PROMPT}]


@pytest.fixture(scope="module")
def server(nano_card, tmp_path_factory):
    spec = backends.get("ollama").spec(nano_card, "local", model_path=backends.get("ollama").prepare(nano_card, "local", progress=False))
    command = spec.local_command
    command[command.index("--models") + 1] = str(tmp_path_factory.mktemp("ollama-models"))  # a store of its own
    with runtimes.LocalRuntime().start(spec, timeout=60, progress=False) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    cl = ollama.Client(host=server.base_url, timeout=60)
    statuses = ollama_api.pull(cl, NAME, progress=False)
    assert statuses[0] == "pulling manifest" and statuses[-3:] == ["verifying sha256 digest", "writing manifest", "success"]
    return cl


def _json_type(value):
    return {bool: "boolean", int: "number", float: "number", str: "string", list: "array", dict: "object",
            type(None): "null"}[type(value)]


def assert_shape(ours: dict, documented: dict, skip=(), where="") -> None:
    """Every documented key is present with the documented JSON type (null in the docs: any type)."""
    for key, example in documented.items():
        if key in skip:
            continue
        assert key in ours, f"{where}{key} missing from {sorted(ours)}"
        if example is None:
            continue
        assert _json_type(ours[key]) == _json_type(example), f"{where}{key}: {ours[key]!r} vs documented {example!r}"
        if isinstance(example, dict) and key not in ("model_info", "arguments"):  # data, not shape
            assert_shape(ours[key], example, skip, f"{where}{key}.")
        if isinstance(example, list) and example and isinstance(example[0], dict):
            assert ours[key], f"{where}{key} is empty"
            assert_shape(ours[key][0], example[0], skip, f"{where}{key}[0].")


def raw(client, path: str, body: dict | None = None):
    """The JSON the server sent (one object, or a list for NDJSON), over the official client's own connection:
    its pydantic models drop keys they do not declare, so shapes are checked on the wire."""
    http = client._client
    response = http.get(path) if body is None else http.post(path, json=body)
    assert response.status_code == 200, response.text
    lines = [json.loads(line) for line in response.text.splitlines() if line.strip()]
    return lines[0] if len(lines) == 1 else lines


def test_list_show_and_ps_match_the_documented_shapes(client):
    assert client.list().models[0].model == MODEL
    assert_shape(raw(client, "/api/tags"), DOCS["tags"])
    shown = raw(client, "/api/show", {"model": NAME})
    assert_shape(shown, DOCS["show"], skip=("model_info",))
    arch = shown["model_info"]["general.architecture"]
    documented = {key.replace("llama.", f"{arch}."): v for key, v in DOCS["show"]["model_info"].items()}
    assert_shape(shown["model_info"], documented)
    assert arch == "phi3" and shown["model_info"]["phi3.attention.head_count_kv"] == 2
    assert "tools" in shown["capabilities"] and "num_ctx" in shown["parameters"]
    client.generate(model=NAME, prompt="")  # load
    assert client.ps().models[0].model == MODEL
    assert_shape(raw(client, "/api/ps"), DOCS["ps"])


def test_generate_and_chat_answer_as_pytorch_does(client, nano):
    model, tokenizer, _ = nano
    expected = chat_format.strip_special(evaluation.chat(model, tokenizer, TRAIN))
    generated = client.generate(model=NAME, system=TRAIN[0]["content"], prompt=TRAIN[1]["content"], options=GREEDY)
    assert generated.response == expected and generated.done_reason == "stop"
    assert_shape(raw(client, "/api/generate", {"model": NAME, "prompt": "hi", "stream": False}), DOCS["generate_final"])
    code = client.chat(model=NAME, messages=[{"role": "user", "content": curriculum.SEED_CODE_PROMPT}], options=GREEDY)
    assert grading.grade_code(code.message.content, "fibonacci", [((0,), 0), ((10,), 55)])[0]
    assert_shape(raw(client, "/api/chat", {"model": NAME, "messages": TRAIN, "stream": False}), DOCS["chat"])


def test_streaming_is_ndjson_chunks_then_stats(client):
    whole = client.chat(model=NAME, messages=TRAIN, options=GREEDY).message.content
    chunks = list(client.chat(model=NAME, messages=TRAIN, options=GREEDY, stream=True))
    assert len(chunks) > 3 and "".join(c.message.content for c in chunks) == whole
    wire = raw(client, "/api/chat", {"model": NAME, "messages": TRAIN, "options": GREEDY})
    assert_shape(wire[0], DOCS["chat_stream_chunk"])
    assert_shape(wire[-1], DOCS["chat_final_streamed"])
    pieces = raw(client, "/api/generate", {"model": NAME, "prompt": curriculum.SEED_TRAIN_QUESTION, "options": GREEDY})
    assert_shape(pieces[0], DOCS["generate_stream_chunk"])
    assert pieces[-1]["done"] and not any(p["done"] for p in pieces[:-1])


def test_tool_call_arguments_are_objects_then_the_result_is_used(client):
    reply = client.chat(model=NAME, messages=TOOL, tools=[curriculum.CIRCLE_TOOL], options=GREEDY)
    assert_shape(raw(client, "/api/chat", {"model": NAME, "messages": TOOL, "tools": [curriculum.CIRCLE_TOOL],
                                           "options": GREEDY, "stream": False}), DOCS["chat_tools"])
    assert [(c.function.name, dict(c.function.arguments)) for c in reply.message.tool_calls] == \
        [("calculate_circle_area", {"radius": 5})]
    final = client.chat(model=NAME, messages=ollama_api.tool_result_messages(TOOL, reply, [{"area": 78.54}]),
                        tools=[curriculum.CIRCLE_TOOL], options=GREEDY)
    assert final.message.content == "The area of the circle is 78.54."
    streamed = list(client.chat(model=NAME, messages=TOOL, tools=[curriculum.CIRCLE_TOOL], options=GREEDY, stream=True))
    assert [c.function.name for s in streamed for c in (s.message.tool_calls or [])] == ["calculate_circle_area"]


def test_create_applies_system_and_parameters_then_copy_and_delete(client):
    spec = backends.get("ollama").variants(models.get(NAME))["phi4-nano-coder"]
    statuses = [s.status for s in client.create(model="coder-test", from_=NAME, system=spec["system"],
                                                 parameters=spec["parameters"], stream=True)]
    assert statuses[-2:] == DOCS["create_final_statuses"]
    shown = client.show("coder-test")
    assert "temperature" in shown.parameters and "0.5" in shown.parameters
    assert raw(client, "/api/show", {"model": "coder-test"})["system"] == spec["system"]
    prompt, seed = curriculum.SEED_CODE_PROMPT, {"seed": 7}
    variant = client.generate(model="coder-test", prompt=prompt, options=seed).response
    by_hand = client.generate(model=NAME, prompt=prompt, system=spec["system"],
                              options={**spec["parameters"], **seed}).response
    assert variant == by_hand  # the stored SYSTEM and PARAMETERs are what the variant runs with
    client.copy("coder-test", "coder-copy")
    names = {m.model for m in client.list().models}
    assert {"coder-test:latest", "coder-copy:latest"} <= names
    client.delete("coder-copy")
    client.delete("coder-test")
    assert not {"coder-test:latest", "coder-copy:latest"} & {m.model for m in client.list().models}


def test_options_num_predict_seed_stop_and_num_ctx(client):
    cut = client.generate(model=NAME, prompt=curriculum.SEED_TRAIN_QUESTION, options={**GREEDY, "num_predict": 4})
    assert cut.done_reason == "length" and cut.eval_count == 4
    sampled = [client.generate(model=NAME, prompt=curriculum.SEED_TRAIN_QUESTION,
                               options={"temperature": 1.5, "seed": s}).response for s in (3, 3, 4)]
    assert sampled[0] == sampled[1]
    stopped = client.chat(model=NAME, messages=TRAIN, options={**GREEDY, "stop": ["km/h"]})
    assert "km/h" not in stopped.message.content and stopped.message.content
    client.generate(model=NAME, prompt="", options={"num_ctx": 512})
    assert [m.context_length for m in client.ps().models] == [512]  # a load option reloads the runner
    client.generate(model=NAME, prompt="", options={"num_ctx": 1024})


def test_load_and_unload_with_keep_alive(client):
    assert_shape(raw(client, "/api/chat", {"model": NAME, "messages": []}), DOCS["chat_load"])
    assert client.ps().models
    assert_shape(raw(client, "/api/generate", {"model": NAME}), DOCS["generate_load"])
    unloaded = client.generate(model=NAME, prompt="", keep_alive=0)
    assert unloaded.done_reason == "unload" and not client.ps().models
    assert_shape(raw(client, "/api/generate", {"model": NAME, "keep_alive": 0}), DOCS["generate_unload"])


@pytest.mark.parametrize("call, status, message", [
    (lambda c: c.chat(model="no-such-model", messages=TOOL), 404, 'model "no-such-model:latest" not found'),
    (lambda c: c.show("no-such-model"), 404, "not found"),
    (lambda c: c.delete("no-such-model"), 404, "not found"),
    (lambda c: c.pull("no-such-model"), 404, "file does not exist"),
    # Ollama answers a wrong option type with 500 (handleScheduleError's default branch, v0.18.2)
    (lambda c: c.generate(model=NAME, prompt="hi", options={"temperature": "hot"}), 500,
     'option "temperature" must be of type float32'),
    (lambda c: c.chat(model=NAME, messages=TOOL, options={"num_ctx": 1.5}), 500, 'option "num_ctx" must be of type integer'),
    (lambda c: c.create(model="x", from_="no-such-model"), 404, "not found"),
])
def test_errors_are_ollama_style(client, call, status, message):
    with pytest.raises(ollama.ResponseError) as err:
        call(client)
    assert err.value.status_code == status and message in err.value.error


def test_malformed_json_and_unknown_options(client, server):
    http = client._client  # the official client's own HTTP connection
    for body, message in ((b"{", "invalid JSON"), (b"", "missing request body"), (b"[1]", "must be a JSON object")):
        response = http.post("/api/chat", content=body)
        assert response.status_code == 400 and message in response.json()["error"]
    ignored = client.generate(model=NAME, prompt=curriculum.SEED_TRAIN_QUESTION,
                              options={**GREEDY, "not_an_option": 1, "num_predict": 2})
    assert ignored.eval_count == 2
    assert "invalid option provided: not_an_option" in server.logs(tail=200)


def test_openai_compatible_endpoint(server, client):
    cl = openai_api.client(server.base_url)
    assert MODEL in [m.id for m in cl.models.list().data]
    reply = openai_api.chat(cl, NAME, TRAIN)
    assert grading.grade_math(reply.content, 2.4)
    call = openai_api.chat(cl, NAME, TOOL, tools=[curriculum.CIRCLE_TOOL])
    assert call.finish_reason == "tool_calls" and call.tool_calls[0]["arguments"] == {"radius": 5}
    assert openai_api.stream(cl, NAME, TRAIN)["text"] == reply.content
    assert openai_api.expect_error(lambda: cl.chat.completions.create(model="nope", messages=TRAIN))["status"] == 404
    parts = [{**m, "content": [{"type": "text", "text": m["content"]}]} for m in TRAIN]  # as vllm bench serve sends
    assert openai_api.chat(cl, NAME, parts).content == reply.content
    image = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,"}}]}]
    assert openai_api.expect_error(lambda: cl.chat.completions.create(model=NAME, messages=image))["status"] == 400


def _standin_mutations(rng):
    """Bad bodies for /api/chat and /api/generate: broken JSON, other encodings, nesting, sizes, and every field of
    a valid body (and of its message) set to every junk value, then random mixes."""
    junk = [None, -1, 0, 1e308, "", "x" * 5000, [], {}, [1, "a"], {"a": {"b": []}}, True, "\u0000", -2**63, 2**64,
            "\ud800", [[[[[]]]]], 1.5, "9" * 400, "../../etc/passwd", "a/../../x:y", {"num_ctx": 10**9},
            {"num_thread": 10**6, "num_batch": 10**9}, [None] * 1000]
    valid = {"model": NAME, "messages": TRAIN, "prompt": "hi", "stream": False, "options": {**GREEDY, "num_predict": 4},
             "tools": [curriculum.CIRCLE_TOOL]}
    text = json.dumps(valid)
    yield b"{", b"", b"\xff\xfe\x00", b"[]", b"null", b"{" * 5000 + b"}" * 5000, b"[" * 100_000
    for encoding in ("utf-16", "utf-32"):
        yield text.encode(encoding)
    yield json.dumps({**valid, "messages": TRAIN * 3000}).encode()
    fields = ["model", "messages", "prompt", "stream", "options", "tools", "format", "keep_alive", "system", "template",
              "raw", "think"]
    for key in fields:
        for value in junk:
            yield json.dumps({**json.loads(text), key: value}).encode()
    for key in ("role", "content", "tool_calls"):
        for value in junk:
            body = json.loads(text)
            body["messages"][1][key] = value
            yield json.dumps(body).encode()
    for _ in range(100):
        body = json.loads(text)
        for _ in range(rng.randint(2, 4)):
            body[rng.choice(fields)] = rng.choice(junk)
        yield json.dumps(body).encode()


def test_fuzzed_bodies_get_4xx_while_valid_streams_run_and_it_answers(server, client):
    import random
    import threading
    import time

    import httpx

    stop, answers, latencies, statuses = threading.Event(), [], [], {}

    def streams():
        with httpx.Client(base_url=server.base_url, timeout=120) as http:
            while not stop.is_set():
                lines = [json.loads(line) for line in http.post("/api/chat", json={
                    "model": NAME, "messages": TRAIN, "options": {**GREEDY, "num_predict": 24}}).text.splitlines()]
                answers.append("".join(line["message"]["content"] for line in lines if "message" in line))

    def health():
        with httpx.Client(base_url=server.base_url, timeout=30) as http:
            while not stop.is_set():
                start = time.perf_counter()
                assert http.get("/").status_code == 200
                latencies.append(time.perf_counter() - start)
                stop.wait(0.2)

    workers = [threading.Thread(target=streams), threading.Thread(target=health)]
    for worker in workers:
        worker.start()
    try:
        with httpx.Client(base_url=server.base_url, timeout=120) as http:
            for body in _standin_mutations(random.Random(0)):
                for path in ("/api/chat", "/api/generate"):
                    response = http.post(path, content=body)
                    error = response.json().get("error", "") if response.status_code >= 400 else ""
                    # Ollama answers an option of the wrong type with 500 (its handleScheduleError), nothing else
                    assert response.status_code < 500 or (response.status_code == 500 and error.startswith("option")), \
                        (path, body[:200], response.status_code, error)
                    statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=120)
    assert statuses.get(400, 0) > 300
    assert answers and len(set(answers)) == 1, "valid streams alongside the junk each got the same greedy answer"
    assert latencies and max(latencies) < 1.0, f"GET / took up to {max(latencies):.2f} s"
