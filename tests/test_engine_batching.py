"""The SLM Engine's batching parts without a model: sampling, the KV cache's rows, the batch-size histogram."""
import numpy as np
import pytest

from helpers.formats import prometheus
from helpers.measure import serving_bench
from helpers.servers.engine.api import _histogram
from helpers.system.cpus import available_cpus
from helpers.servers.engine.engine import pick, Sampling
from helpers.servers.engine.kv_cache import KVCache, last_position_logits, providers

DECODER = {"num_hidden_layers": 2, "num_key_value_heads": 2, "head_size": 8,
           "inputs": {"past_key_names": "past_key_values.%d.key", "past_value_names": "past_key_values.%d.value"},
           "outputs": {"present_key_names": "present.%d.key", "present_value_names": "present.%d.value"}}


def test_sampling_cuts_to_top_k_and_the_nucleus():
    rng, logits = np.random.default_rng(0), np.log(np.array([0.5, 0.3, 0.15, 0.05]))
    nucleus = np.bincount([pick(logits, Sampling(1, 1.0, top_p=0.7), rng) for _ in range(4000)],
                          minlength=4) / 4000
    assert nucleus[2:].sum() == 0 and abs(nucleus[0] - 0.625) < 0.03  # {0.5, 0.3}, renormalised
    assert {pick(logits, Sampling(1, 1.0, top_k=1), rng) for _ in range(50)} == {0}
    assert pick(logits, Sampling(1, 0.0), rng) == 0


def test_a_seed_repeats_its_draws():
    logits = np.random.default_rng(1).normal(size=5000)
    draw = [[pick(logits, Sampling(1, 1.0, top_p=0.9), np.random.default_rng(7)) for _ in range(3)]
            for _ in range(2)]
    assert draw[0] == draw[1]


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_the_cache_grows_keeping_rows_and_moves_a_row_into_a_freed_one(dtype):
    cache = KVCache(DECODER, dtype, limit=1024)
    cache.ensure(2, 10)
    assert (cache.rows, cache.capacity) == (2, 256) and len(cache.values) == 4
    for value in cache.values:
        array = value.numpy()
        array[1, :, :10] = 7.0
        value.update_inplace(array)
    generation = cache.generation
    cache.ensure(3, 10)
    assert cache.rows >= 3 and cache.capacity == 256, "more rows do not widen the rows"
    cache.ensure(3, 300)
    arrays = [value.numpy() for value in cache.values]
    assert cache.capacity == 512 and cache.generation == generation + 2
    assert all(a.shape == (cache.rows, 2, 512, 8) and a.dtype == dtype for a in arrays)
    assert all((a[1, :, :10] == 7.0).all() and (a[1, :, 10:] == 0).all() and (a[0] == 0).all() for a in arrays)
    cache.move(1, 0)
    assert all((a[0, :, :10] == 7.0).all() and (a[1] == a[0]).all() for a in (v.numpy() for v in cache.values))
    cache.ensure(3, 5000)
    assert cache.capacity == 1024  # never beyond the served context


def test_cuda_without_onnxruntime_gpu_says_what_is_missing():
    with pytest.raises(SystemExit, match="onnxruntime-gpu"):
        providers("cuda")


def test_batch_sizes_read_back_from_metrics():
    lines = _histogram("slm_engine_batch_size", "sequences per decode step", [0, 5, 0, 2, 1])
    parsed = prometheus.parse("\n".join(lines))
    assert parsed["slm_engine_batch_size_count"] == 8 and parsed["slm_engine_batch_size_sum"] == 5 + 6 + 4
    assert 'slm_engine_batch_size_bucket{le="4"} 8' in lines and 'slm_engine_batch_size_bucket{le="2"} 5' in lines
    before = {"slm_engine_batch_size_count": 2, "slm_engine_batch_size_sum": 2, "slm_engine_requests_total": 1,
              "slm_engine_queue_seconds_total": 0.0}
    after = {**parsed, "slm_engine_requests_total": 5, "slm_engine_queue_seconds_total": 0.4}
    assert serving_bench.batching(before, after) == {"decode steps": 6, "sequences per step": 2.17, "mean queue wait ms": 100.0}


def test_threads_follow_the_containers_cpu_quota(tmp_path, monkeypatch):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(8)))
    assert available_cpus(tmp_path) == 8  # no cgroup files: the affinity
    for quota, cpus in [("max 100000", 8), ("150000 100000", 2), ("100000 100000", 1), ("20000 100000", 1)]:
        (tmp_path / "cpu.max").write_text(quota)
        assert available_cpus(tmp_path) == cpus, quota


def test_the_lm_head_is_cut_to_the_last_position():
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight, bias = rng.normal(size=(4, 6)).astype(np.float32), rng.normal(size=6).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["hidden", "w"], ["projected"]), helper.make_node("Add", ["projected", "b"], ["logits"])],
        "head", [helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["batch", "seq", 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "seq", 6])],
        [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    assert last_position_logits(model.graph, "logits")
    hidden = rng.normal(size=(2, 5, 4)).astype(np.float32)
    out = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"hidden": hidden})[0]
    assert out.shape == (2, 1, 6) and np.allclose(out[:, 0], hidden[:, -1] @ weight + bias)
    onnx.checker.check_model(model)
    assert not last_position_logits(helper.make_graph([], "empty", [], []), "logits")
