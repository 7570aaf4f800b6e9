"""The SLM Engine (helpers/servers/engine/) as a real server on phi4-nano's genai-fp32 build."""
import json
import random
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from helpers import models
from helpers.clients import openai_api
from helpers.formats import chat_format, prometheus
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


def _mutations(rng: random.Random, n: int):
    """Bad bodies: broken JSON, other encodings, deep nesting, large sizes, wrong shapes, and a valid body with one
    field replaced by junk (every type, lone surrogates, nested containers)."""
    junk = [None, -1, 0, 1e308, "", "x" * 5000, [], {}, [1, "a"], {"a": {"b": []}}, True, "\u0000", -2**63,
            "\ud800", "a\udfffb", [[[[[]]]]], {"type": "text"}, [{"type": "text", "text": "\ud800"}], 1.5, "9" * 400]
    valid = {"model": MODEL, "messages": TRAIN, "max_tokens": 8, "tools": [curriculum.CIRCLE_TOOL]}
    text = json.dumps(valid)
    yield b"{", b"", b"\xff\xfe\x00", b"[]", b"null", b'{"model": ', b"{" * 5000 + b"}" * 5000
    yield text.encode("utf-16"), b"\xef\xbb\xbf" + text.encode(), text.replace("travels", "trav\xe9ls").encode("latin-1")
    yield json.dumps({**valid, "messages": [{"role": "user", "content": [{"type": "text", "text": "x"}] * 20000}]}).encode()
    yield json.dumps({**valid, "messages": TRAIN * 5000}).encode()  # far more than the context
    nested: dict = {}
    for _ in range(300):
        nested = {"type": "object", "properties": {"x": nested}}
    yield json.dumps({**valid, "tools": [{"type": "function", "function": {"name": "deep", "parameters": nested}}]}).encode()
    fields = ["model", "messages", "max_tokens", "temperature", "top_p", "top_k", "stop", "seed", "stream", "tools",
              "tool_choice", "n", "stream_options", "min_tokens", "max_completion_tokens"]
    for _ in range(n):
        body = json.loads(json.dumps(valid))
        target = rng.choice(["field", "message", "tool"])
        if target == "field":
            body[rng.choice(fields)] = rng.choice(junk)
        elif target == "message":
            body["messages"][rng.randrange(2)][rng.choice(["role", "content", "tool_calls", "tool_call_id"])] = rng.choice(junk)
        else:
            body["tools"][0]["function"][rng.choice(["name", "parameters", "description"])] = rng.choice(junk)
        yield json.dumps(body).encode()


def _valid_streams(base_url: str, stop: threading.Event, answers: list) -> None:
    """Streamed greedy requests until ``stop``: each must end with its own complete answer."""
    client = openai_api.client(base_url, timeout=120)
    while not stop.is_set():
        text = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
            model=MODEL, messages=TRAIN, max_tokens=24, temperature=0, stream=True) if c.choices)
        answers.append(text)


def test_fuzzed_bodies_never_500_and_the_server_survives(engine_server):
    url = engine_server.base_url + "/v1/chat/completions"
    statuses, answers, stop = {}, [], threading.Event()
    streamer = threading.Thread(target=_valid_streams, args=(engine_server.base_url, stop, answers))
    streamer.start()
    try:
        with httpx.Client(timeout=60) as http:
            for body in _mutations(random.Random(0), 300):
                response = http.post(url, content=body, headers={"content-type": "application/json"})
                assert response.status_code < 500, (body[:200], response.text[:300])
                if response.status_code >= 400:
                    assert "message" in response.json()["error"]
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            assert http.get(engine_server.base_url + "/health").json()["ready"]
    finally:
        stop.set()
        streamer.join(timeout=120)
    assert statuses.get(400, 0) > 100  # most mutations are invalid, and say so
    assert answers and len(set(answers)) == 1, "valid streams alongside the junk each got the same greedy answer"
