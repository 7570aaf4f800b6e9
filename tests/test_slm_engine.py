"""The SLM Engine (helpers/servers/engine/) as a real server on phi4-nano's genai-fp32 build."""
import json
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from helpers import models
from helpers.clients import openai_api
from helpers.formats import chat_format, prometheus
from helpers.models import onnx_convert
from helpers.nano import evaluation
from helpers.tasks import curriculum
from helpers.servers.engine.engine import Engine, EngineError, Job, Sampling

pytestmark = pytest.mark.slow
MODEL = models.get("phi4-nano").served_name
TRAIN = [{"role": "system", "content": curriculum.MATH_SYSTEMS[1]}, {"role": "user", "content": curriculum.SEED_TRAIN_QUESTION}]
TOOL = [{"role": "user", "content": curriculum.SEED_TOOL_PROMPT}]


@pytest.fixture(scope="module")
def client(engine_server):
    return openai_api.client(engine_server.base_url)


@pytest.fixture(scope="module")
def engine(onnx_folder):
    return Engine(onnx_folder / "genai-fp32", MODEL, max_batch=1, max_queue=1)


def test_prompts_tokenize_as_transformers_does(engine, nano):
    _, tokenizer, _ = nano
    round_trip = curriculum.seed_tool_round_trip()
    for messages, tools in [(TRAIN, None), (TOOL, [curriculum.CIRCLE_TOOL]), (round_trip, [curriculum.CIRCLE_TOOL]),
                            ([{"role": "system", "content": "Be brief."}] + TOOL, [curriculum.CIRCLE_TOOL])]:
        expected = tokenizer.apply_chat_template(messages, tools=tools, add_generation_prompt=True)
        assert engine.render(messages, tools) == expected


def test_greedy_answers_equal_pytorch(client, nano):
    model, tokenizer, _ = nano
    for messages in (TRAIN, [{"role": "user", "content": curriculum.SEED_CODE_PROMPT}]):
        expected = chat_format.strip_special(evaluation.chat(model, tokenizer, messages))
        assert openai_api.chat(client, MODEL, messages, max_tokens=200).content == expected


def test_tool_call_then_result(client):
    call = openai_api.chat(client, MODEL, TOOL, tools=[curriculum.CIRCLE_TOOL])
    assert call.finish_reason == "tool_calls" and call.content is None
    assert [(c["name"], c["arguments"]) for c in call.tool_calls] == [("calculate_circle_area", {"radius": 5})]
    final = openai_api.chat(client, MODEL, openai_api.tool_result_messages(TOOL, call, [{"area": 78.54}]),
                             tools=[curriculum.CIRCLE_TOOL])
    assert final.content == "The area of the circle is 78.54."


def test_tool_calls_stream(client):
    chunks = list(client.chat.completions.create(model=MODEL, messages=TOOL, tools=[curriculum.CIRCLE_TOOL],
                                                 temperature=0, stream=True, stream_options={"include_usage": True}))
    deltas = [c.choices[0].delta.tool_calls[0] for c in chunks if c.choices and c.choices[0].delta.tool_calls]
    assert [(d.function.name, json.loads(d.function.arguments)) for d in deltas] == [("calculate_circle_area", {"radius": 5})]
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert chunks[-1].usage.completion_tokens > 0


def test_raw_completion_shows_what_the_model_wrote(client, nano):
    _, tokenizer, _ = nano
    prompt = tokenizer.apply_chat_template(TOOL, tools=[curriculum.CIRCLE_TOOL], add_generation_prompt=True, tokenize=False)
    raw = openai_api.raw_completion(client, MODEL, prompt, max_tokens=40)
    assert raw.startswith("<|tool_call|>[") and "calculate_circle_area" in raw  # special tokens kept
    plain = client.completions.create(model=MODEL, prompt=prompt, max_tokens=40, temperature=0).choices[0].text
    assert "<|tool_call|>" not in plain  # skipped by default, as in vLLM


def test_tool_choice_none_answers_in_text(client):
    reply = client.chat.completions.create(model=MODEL, messages=TOOL, tools=[curriculum.CIRCLE_TOOL],
                                           tool_choice="none", temperature=0, max_tokens=40)
    assert not reply.choices[0].message.tool_calls


def test_streamed_text_equals_the_whole_answer(client):
    whole = openai_api.chat(client, MODEL, TRAIN).content
    assert openai_api.stream(client, MODEL, TRAIN)["text"] == whole


def test_the_first_chunk_carries_the_first_token(client):
    """The role rides on the first token (as in vLLM): no empty chunk before the prompt pass that a load tester
    would time as the first token; every chunk carries text, a tool call or the finish reason."""
    chunks = [c for c in client.chat.completions.create(model=MODEL, messages=TRAIN, temperature=0, max_tokens=8,
                                                        stream=True) if c.choices]
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[0].choices[0].delta.content
    assert all(c.choices[0].delta.content or c.choices[0].delta.tool_calls or c.choices[0].finish_reason
               for c in chunks)
    tool = [c for c in client.chat.completions.create(model=MODEL, messages=TOOL, tools=[curriculum.CIRCLE_TOOL],
                                                      temperature=0, stream=True) if c.choices]
    assert tool[0].choices[0].delta.role == "assistant"


def test_stop_max_tokens_and_usage(client):
    stopped = client.chat.completions.create(model=MODEL, messages=TRAIN, temperature=0, stop=["km/h"])
    assert stopped.choices[0].message.content == "Speed = 240 / 3 = 80 " and stopped.choices[0].finish_reason == "stop"
    cut = client.chat.completions.create(model=MODEL, messages=TRAIN, temperature=0, max_tokens=5)
    assert cut.choices[0].finish_reason == "length" and cut.usage.completion_tokens == 5
    assert cut.usage.total_tokens == cut.usage.prompt_tokens + 5


def test_sampling_follows_the_seed(client):
    # a prompt the model never saw: its memorised answers would be sampled alike under any seed
    unseen = [{"role": "user", "content": "Once upon a time, in a quiet village"}]

    def sample(seed):
        return client.chat.completions.create(model=MODEL, messages=unseen, temperature=1.5, top_p=0.95,
                                              extra_body={"top_k": 50}, seed=seed, max_tokens=40).choices[0].message.content
    assert sample(1) == sample(1)
    assert len({sample(s) for s in range(2, 7)}) > 1


def _answers(engine, prompts, tokens: int) -> list[tuple[str, int]]:
    """Greedy answers to ``prompts`` submitted together, EOS suppressed for ``tokens`` tokens: (text, tokens) each."""
    pieces, ends, done = [[] for _ in prompts], [None] * len(prompts), [threading.Event() for _ in prompts]

    def emit(i, event):
        if event["type"] == "text":
            pieces[i].append(event["text"])
        else:
            ends[i] = event
            done[i].set()
    for i, messages in enumerate(prompts):
        engine.submit(Job(engine.render(messages, None), Sampling(tokens, min_tokens=tokens),
                                     lambda event, i=i: emit(i, event)))
    assert all(d.wait(120) for d in done)
    return [("".join(p), end["completion_tokens"]) for p, end in zip(pieces, ends)]


MIXED = [[{"role": "user", "content": q}] for q in (
    "What is 3 + 4?", curriculum.SEED_CODE_PROMPT, "Tell me about the weather in a long story.", "Hi",
    "What is 47 - 8?", "Write a Python function gcd(a, b).", "A train travels 30 km before noon.", "x")] + [TRAIN, TOOL]


def test_greedy_tokens_do_not_depend_on_the_batch(onnx_folder):
    """fp32: prompts of different lengths, each alone and then eight at once, 64 tokens each (EOS suppressed)."""
    engine = Engine(onnx_folder / "genai-fp32", MODEL, max_batch=8)
    alone = [_answers(engine, [p], 64)[0] for p in MIXED[:8]]
    together = _answers(engine, MIXED[:8], 64)
    assert engine.batch_sizes[8] > 0, "the eight shared decode steps"
    assert together == alone and all(n == 64 for _, n in alone)


def test_the_cuda_build_decodes_through_the_same_cache_code_on_the_cpu(nano_card, onnx_folder):
    """The builder's CUDA build (fp16: what the engine serves on a GPU) on the CPU: an fp16 cache, greedy tokens
    independent of the batch, and the fp32 build's answers (all 8 on this machine; fp16 may round a few away)."""
    engine = Engine(onnx_convert.cuda_build(nano_card, "genai-cuda-fp16", progress=False), MODEL, max_batch=8)
    alone = [_answers(engine, [p], 64)[0] for p in MIXED[:8]]
    assert _answers(engine, MIXED[:8], 64) == alone and engine.cache.dtype == np.float16
    assert engine.provider == "CPUExecutionProvider"
    fp32 = Engine(onnx_folder / "genai-fp32", MODEL, max_batch=8)
    same = sum(a == b for a, b in zip(alone, (_answers(fp32, [p], 64)[0] for p in MIXED[:8])))
    assert same >= 6, f"{same} of 8 answers as the fp32 build's"


@pytest.mark.docker
@pytest.mark.gpu
def test_the_cuda_image_serves_on_the_gpu(nano_card):
    """The engine's CUDA image on an NVIDIA GPU: ONNX Runtime's CUDA provider, and greedy answers that do not depend
    on the batch, through the HTTP API."""
    from helpers import backends
    from helpers.deploy import runtimes

    entry = backends.get("onnx-engine")
    spec = entry.spec(nano_card, "docker", True, entry.prepare(nano_card, "docker", False, gpu=True))
    with runtimes.DockerRuntime().start(spec, timeout=600, progress=False) as server:
        assert httpx.get(server.base_url + "/health", timeout=10).json()["provider"] == "CUDAExecutionProvider"
        client = openai_api.client(server.base_url)

        def answer(messages):
            return openai_api.chat(client, MODEL, messages, max_tokens=64).content
        alone = [answer(m) for m in MIXED[:8]]
        with ThreadPoolExecutor(8) as pool:
            assert list(pool.map(answer, MIXED[:8])) == alone
        assert entry.device(server) == "gpu"


def test_a_cancelled_request_leaves_the_batch_and_the_others_go_on(onnx_folder):
    engine = Engine(onnx_folder / "genai-fp32", MODEL, max_batch=4)
    alone = _answers(engine, MIXED[:2], 48)
    started, ended = threading.Event(), threading.Event()

    def emit(event):
        started.set()
        if event["type"] == "end":
            ended.set()
    doomed = Job(engine.render(TRAIN, None), Sampling(5000, min_tokens=5000), emit)
    engine.submit(doomed)
    assert started.wait(30)
    doomed.cancelled.set()  # the client went away mid-answer
    assert _answers(engine, MIXED[:2], 48) == alone
    assert ended.wait(30) and engine.pending == 0


def test_concurrent_mixed_requests_each_get_their_own_answer(client, engine_server):
    prompts = (MIXED + MIXED)[:12]
    alone = [openai_api.chat(client, MODEL, p, max_tokens=48).content for p in prompts]
    before = prometheus.parse(httpx.get(engine_server.base_url + "/metrics").text)

    def ask(i):
        if i % 2:
            return openai_api.stream(client, MODEL, prompts[i], max_tokens=48)["text"]
        return openai_api.chat(client, MODEL, prompts[i], max_tokens=48).content
    with ThreadPoolExecutor(12) as pool:
        together = list(pool.map(ask, range(12)))
    assert together == alone
    after = prometheus.parse(httpx.get(engine_server.base_url + "/metrics").text)
    steps = after["slm_engine_batch_size_count"] - before["slm_engine_batch_size_count"]
    rows = after["slm_engine_batch_size_sum"] - before["slm_engine_batch_size_sum"]
    assert rows / steps > 1.5, "concurrent requests shared decode steps"


@pytest.mark.parametrize("max_batch", [1, 2])
def test_max_batch_is_how_many_requests_decode_together(onnx_folder, max_batch):
    engine = Engine(onnx_folder / "genai-fp32", MODEL, max_batch=max_batch)
    events, ended = [], [threading.Event(), threading.Event()]

    def job(i):
        def emit(event):
            events.append((i, event["type"]))
            if event["type"] == "end":
                ended[i].set()
        return Job(engine.render(TRAIN, None), Sampling(300, min_tokens=300), emit)

    for i in (0, 1):
        engine.submit(job(i))
    assert all(e.wait(60) for e in ended)
    second_starts, first_ends = events.index((1, "text")), events.index((0, "end"))
    assert (second_starts < first_ends) == (max_batch == 2), events[:5]


def test_full_queue_answers_429(engine):
    jobs = [Job([1, 2, 3], Sampling(2000, min_tokens=2000), lambda event: None) for _ in range(2)]
    for job in jobs:
        engine.submit(job)
    with pytest.raises(EngineError) as err:
        engine.submit(Job([1], Sampling(1), lambda event: None))
    assert err.value.status == 429
    for job in jobs:
        job.cancelled.set()


def test_models_health_metrics_and_reasoning(engine_server):
    base = engine_server.base_url
    assert [m["id"] for m in httpx.get(base + "/v1/models").json()["data"]] == [MODEL]
    health = httpx.get(base + "/health").json()
    assert health["ready"] and health["variant"] == "genai-fp32" and health["provider"] == "CPUExecutionProvider"
    answer = httpx.post(base + "/reasoning", json={"prompt": curriculum.SEED_TRAIN_QUESTION, "task_type": "math",
                                                   "temperature": 0}).json()
    assert answer["generated_text"].endswith("The answer is 2.4.") and answer["task_type"] == "math"
    served = prometheus.parse(httpx.get(base + "/metrics").text)
    assert {"slm_engine_requests_total", "slm_engine_queue_seconds_total", "slm_engine_batch_size_count",
            "slm_engine_generation_tokens_per_second"} <= served.keys()


def test_what_a_request_may_send_is_bounded(engine_server):
    base = engine_server.base_url
    with httpx.Client(base_url=base, timeout=60) as http:
        big = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "word " * 400_000}]})
        response = http.post("/v1/chat/completions", content=big, headers={"content-type": "application/json"})
        assert response.status_code == 413 and "larger than" in response.json()["error"]["message"]
        long_stop = http.post("/v1/chat/completions", json={"model": MODEL, "messages": TRAIN, "stop": "x" * 300})
        assert long_stop.status_code == 400 and "stop" in long_stop.json()["error"]["message"]
        assert http.get("/health").json()["ready"]


@pytest.fixture
def served_engine(engine):
    """The module's one-row engine (max_batch 1, max_queue 1) behind its HTTP API, in this process."""
    import uvicorn

    from helpers.deploy.runtimes import free_port
    from helpers.servers.engine.api import create_app

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(engine), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def test_a_request_dropped_before_its_answer_frees_its_slot(engine, served_engine):
    """Not streamed: a request waits behind a long one, its client goes away, and it never runs: the slot is free
    again (/metrics) and the engine made no token for it."""
    def metrics():
        return prometheus.parse(httpx.get(served_engine + "/metrics").text)

    ended = []

    def slowly(event):  # the blocker streams to a slow reader: it holds the one row for seconds
        ended.append(event) if event["type"] == "end" else time.sleep(0.01)

    blocker = Job(engine.render(TRAIN, None), Sampling(900, min_tokens=900), slowly)
    engine.submit(blocker)
    try:
        before = metrics()
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(served_engine + "/v1/chat/completions", timeout=httpx.Timeout(30, read=0.5),
                       json={"model": MODEL, "messages": TRAIN, "max_tokens": 64, "min_tokens": 64})
        time.sleep(1.0)  # the server notices that the client has gone
    finally:
        blocker.cancelled.set()
    deadline = time.monotonic() + 30
    while metrics()["slm_engine_requests_in_flight"] and time.monotonic() < deadline:
        time.sleep(0.1)
    after = metrics()
    assert after["slm_engine_requests_in_flight"] == 0, "the dropped request still holds its slot"
    made = after["slm_engine_completion_tokens_total"] - before["slm_engine_completion_tokens_total"]
    assert ended and made == ended[0]["completion_tokens"] < 900, "tokens were made for a client that had gone"


def test_health_says_when_the_decoding_thread_is_gone(engine):
    from fastapi.testclient import TestClient

    from helpers.servers.engine.api import create_app

    with TestClient(create_app(engine)) as http:
        assert http.get("/health").json()["ready"]
        alive, engine.decoder = engine.decoder, threading.Thread(target=lambda: None)  # a thread that has ended
        try:
            response = http.get("/health")
        finally:
            engine.decoder = alive
        assert response.status_code == 503 and response.json()["ready"] is False


def test_an_api_key_guards_the_api_but_not_health(engine):
    from fastapi.testclient import TestClient

    from helpers.servers.engine.api import create_app

    with TestClient(create_app(engine, api_key="s3cret")) as http:
        assert http.get("/v1/models").status_code == 401
        assert http.get("/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert http.get("/v1/models", headers={"Authorization": "Bearer s3cret"}).json()["data"][0]["id"] == MODEL
        assert http.post("/reasoning", json={"prompt": "hi"}).status_code == 401
        assert http.get("/health").status_code == 200 and http.get("/metrics").status_code == 200


@pytest.mark.parametrize("body, status", [
    ({"model": "nope", "messages": TRAIN}, 404),
    ({"model": MODEL, "messages": [{"role": "user", "content": "word " * 9000}]}, 400),
    ({"model": MODEL, "messages": TRAIN, "max_tokens": 8190}, 400),
    ({"model": MODEL, "messages": TRAIN, "temperature": -1}, 400),
    ({"model": MODEL, "messages": TRAIN, "top_p": 0}, 400),
    ({"model": MODEL, "messages": TOOL, "tools": [{"type": "function", "function": {"parameters": "nope"}}]}, 400),
    ({"model": MODEL, "messages": TOOL, "tools": [curriculum.CIRCLE_TOOL], "tool_choice": "required"}, 400),
    ({"prompt": "x", "task_type": "poetry"}, 400),
    ({"model": MODEL, "messages": [{"role": "user", "content": "\ud800"}]}, 400),  # a lone surrogate: legal JSON
    ({"prompt": "a \udfff b"}, 400),
    ({"model": MODEL, "messages": [{"role": "user"}]}, 400),  # a user turn without content
    ({"model": MODEL, "messages": [{"role": "user", "content": "Hi"}, {"role": "tool", "content": "{}"}]}, 400),
])
def test_bad_requests_get_openai_style_4xx(engine_server, body, status):
    path = "/reasoning" if "prompt" in body else "/v1/chat/completions"
    with httpx.Client(base_url=engine_server.base_url, timeout=30) as http:  # one keep-alive connection
        response = http.post(path, content=json.dumps(body), headers={"content-type": "application/json"})
        assert response.status_code == status
        assert response.json()["error"]["message"]
        after = http.post("/v1/chat/completions", json={"model": MODEL, "messages": TRAIN, "max_tokens": 2})
        assert after.status_code == 200, "the connection and the server survive a bad request"


JUNK = [None, -1, 0, 1e308, -1e308, "", "x" * 5000, [], {}, [1, "a"], {"a": {"b": []}}, True, "\u0000", -2**63, 2**64,
        "\ud800", "a\udfffb", [[[[[]]]]], {"type": "text"}, [{"type": "text", "text": "\ud800"}], 1.5, "9" * 400,
        "\u202e\u0301\U0001f600" * 50, ["x" * 300] * 4, [None] * 1000]


def _mutations(rng: random.Random, n: int):
    """Bad bodies for /v1/chat/completions: broken JSON, other encodings, deep nesting, sizes past the body limit,
    wrong shapes, every field of a valid body (and of its message and tool) set to every junk value, and random
    mixes of them."""
    valid = {"model": MODEL, "messages": TRAIN, "max_tokens": 8, "tools": [curriculum.CIRCLE_TOOL]}
    text = json.dumps(valid)
    yield b"{", b"", b"\xff\xfe\x00", b"[]", b"null", b'{"model": ', b"{" * 5000 + b"}" * 5000, b"[" * 100_000
    for encoding in ("utf-16", "utf-32", "utf-16-be"):
        yield text.encode(encoding)
    yield b"\xef\xbb\xbf" + text.encode(), text.replace("travels", "trav\xe9ls").encode("latin-1")
    yield json.dumps({**valid, "messages": [{"role": "user", "content": [{"type": "text", "text": "x"}] * 20000}]}).encode()
    yield json.dumps({**valid, "messages": TRAIN * 5000}).encode()  # far more than the context, and past 1 MB
    yield json.dumps({**valid, "stop": ["x" * 100_000]}).encode()
    nested: dict = {}
    for _ in range(300):
        nested = {"type": "object", "properties": {"x": nested}}
    yield json.dumps({**valid, "tools": [{"type": "function", "function": {"name": "deep", "parameters": nested}}]}).encode()
    call = {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{"}}]}
    yield json.dumps({**valid, "messages": [TRAIN[1], call, {"role": "tool", "tool_call_id": "c", "content": "1"}]}).encode()
    fields = ["model", "messages", "max_tokens", "temperature", "top_p", "top_k", "stop", "seed", "stream", "tools",
              "tool_choice", "n", "stream_options", "min_tokens", "max_completion_tokens"]
    places = ([("field", f) for f in fields] + [("message", f) for f in ("role", "content", "tool_calls", "tool_call_id")]
              + [("tool", f) for f in ("name", "parameters", "description")])

    def mutate(body, place, key, value):
        try:
            if place == "field":
                body[key] = value
            elif place == "message":
                body["messages"][1][key] = value
            else:
                body["tools"][0]["function"][key] = value
        except (TypeError, KeyError, IndexError):  # an earlier mutation replaced what holds this place
            pass
        return body

    for place, key in places:  # every type in every field
        for value in JUNK:
            yield json.dumps(mutate(json.loads(text), place, key, value)).encode()
    for _ in range(n):  # and mixes of them
        body = json.loads(text)
        for _ in range(rng.randint(2, 4)):
            body = mutate(body, *rng.choice(places), rng.choice(JUNK))
        yield json.dumps(body).encode()


def _valid_streams(base_url: str, stop: threading.Event, answers: list) -> None:
    """Streamed greedy requests until ``stop``: each must end with its own complete answer."""
    client = openai_api.client(base_url, timeout=120)
    while not stop.is_set():
        text = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
            model=MODEL, messages=TRAIN, max_tokens=24, temperature=0, stream=True) if c.choices)
        answers.append(text)


def _health_latency(url: str, stop: threading.Event, latencies: list) -> None:
    """/health, five times a second until ``stop``: how long each answer took (a stalled event loop shows here)."""
    with httpx.Client(timeout=30) as http:
        while not stop.is_set():
            start = time.perf_counter()
            ready = http.get(url).json()["ready"]
            latencies.append(time.perf_counter() - start if ready else float("inf"))
            stop.wait(0.2)


def test_fuzzed_bodies_get_4xx_while_valid_streams_run_and_health_answers(engine_server):
    base, statuses, answers, latencies, stop = engine_server.base_url, {}, [], [], threading.Event()
    workers = [threading.Thread(target=_valid_streams, args=(base, stop, answers)),
               threading.Thread(target=_health_latency, args=(base + "/health", stop, latencies))]
    for worker in workers:
        worker.start()
    try:
        with httpx.Client(timeout=60) as http:
            for body in _mutations(random.Random(0), 300):
                for path in ("/v1/chat/completions", "/v1/completions", "/reasoning"):
                    response = http.post(base + path, content=body, headers={"content-type": "application/json"})
                    assert response.status_code < 500, (path, body[:200], response.text[:300])
                    if response.status_code >= 400:
                        assert "message" in response.json()["error"]
                    statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=120)
    assert statuses.get(400, 0) > 1000 and statuses.get(413, 0) >= 3  # most mutations are invalid, and say so
    assert answers and len(set(answers)) == 1, "valid streams alongside the junk each got the same greedy answer"
    assert latencies and max(latencies) < 1.0, f"/health took up to {max(latencies):.2f} s"


LONG = [{"role": "user", "content": "Summarise: " + " ".join(f"{curriculum.SEED_TRAIN_QUESTION}" for _ in range(12))}]


def test_a_prompt_read_in_chunks_gives_the_same_tokens(onnx_folder):
    """Chunked prefill changes when a prompt is read, not what the model answers (greedy, fp32)."""
    whole = Engine(onnx_folder / "genai-fp32", MODEL, max_batch=2, prefill_chunk=4096)
    chunked = Engine(onnx_folder / "genai-fp32", MODEL, max_batch=2, prefill_chunk=16)
    budget = Engine(onnx_folder / "genai-fp32", MODEL, max_batch=2, prefill_chunk=16, prefill_budget=4096)
    prompt_tokens = len(chunked.render(LONG, None))
    assert _answers(chunked, [LONG, TRAIN], 32) == _answers(whole, [LONG, TRAIN], 32) == _answers(budget, [LONG, TRAIN], 32)
    assert chunked.stats["prefill_steps"] >= -(-prompt_tokens // 16) and whole.prefill_sizes[16] == 0
    assert max(n for n, count in enumerate(chunked.prefill_sizes) if count) == 16


def _long_prompt_mid_stream(engine: Engine):
    """A running stream of 400 tokens, and LONG submitted after its 5th; returns once LONG has its first token:
    (the prefill steps the engine had done at each of the stream's tokens, the stream's tokens at LONG's submit,
    LONG's chunks of 16, an event set when the stream ends)."""
    steps_at_token, first_of_long, done = [], threading.Event(), threading.Event()

    def running(event):  # read in the engine's thread, between its steps
        if event["type"] == "text":
            steps_at_token.append(engine.stats["prefill_steps"])
        elif event["type"] == "end":
            done.set()
    engine.stream_interval = 0  # one event per token
    engine.submit(Job(engine.render(TRAIN, None), Sampling(400, min_tokens=400), running))
    while len(steps_at_token) < 5:
        time.sleep(0.001)
    before = len(steps_at_token)
    engine.submit(Job(engine.render(LONG, None), Sampling(4), lambda event: first_of_long.set()))
    assert first_of_long.wait(60)
    return steps_at_token, before, -(-len(engine.render(LONG, None)) // 16), done


def test_running_streams_keep_decoding_while_a_long_prompt_is_read(onnx_folder):
    """A long prompt that arrives mid-stream is read one chunk per step, each beside a decode step of the running
    request: the stream gets a token for every chunk instead of waiting for the whole prompt."""
    engine = Engine(onnx_folder / "genai-fp32", MODEL, max_batch=4, prefill_chunk=16)
    tokens, before, chunks, done = _long_prompt_mid_stream(engine)
    assert len(tokens) - before >= chunks - 1, "the running stream was paused for the whole prompt"
    assert done.wait(120)


def test_a_prefill_budget_reads_a_waiting_prompt_before_the_next_decode_step(onnx_folder):
    """With a budget of many chunks (vLLM's schedule) a newcomer's whole prompt is read, chunk after chunk, before
    the running stream's next token: one long pause instead of one short pause per chunk."""
    engine = Engine(onnx_folder / "genai-fp32", MODEL, max_batch=4, prefill_chunk=16, prefill_budget=4096)
    steps_at_token, _, chunks, done = _long_prompt_mid_stream(engine)
    deadline = time.monotonic() + 60
    while steps_at_token[-1] < steps_at_token[0] + chunks and time.monotonic() < deadline:  # the token after it
        time.sleep(0.001)
    gaps = [b - a for a, b in zip(steps_at_token, steps_at_token[1:])]
    assert max(gaps) == chunks, (chunks, gaps)
    assert done.wait(120)
