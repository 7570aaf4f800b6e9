"""The engine's model: an ONNX Runtime session on a genai build's decoder, and the KV cache it decodes over."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def load_session(folder: Path, decoder: dict, threads: int):
    """An ONNX Runtime session on a genai build's decoder (``genai_config.json``'s entry), its LM head cut to each row's last position, with
    ``threads`` intra-op threads and no second pool.

    Left alone, ONNX Runtime sizes its pool by physical cores; on a 2-vCPU machine that reports them
    differently it ran one thread: Qwen2.5-Coder-0.5B fp32 decoded at 6.8 tok/s with the default and
    12.9 with 2 threads (PyTorch: 10.5 with its default of 2).
    """
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(folder / decoder["filename"]), load_external_data=False)  # weights stay in their file
    last_position_logits(model.graph, decoder["outputs"]["logits"])
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Every decode step has new shapes (one more past position): with ONNX Runtime's CPU memory arena on, Qwen fp32
    # decoded at 6.7-8.3 tok/s, with it off at 10.7 (onnxruntime-genai's own loop: 11.5; docs/onnx.md)
    options.enable_cpu_mem_arena = False
    options.add_session_config_entry("session.model_external_initializers_file_folder_path", str(folder))
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def last_position_logits(graph, logits: str) -> bool:
    """Make the graph compute logits for each row's last position only, the one the engine samples from: genai's
    builds compute them for every prompt position (Qwen: 600 MB of logits for a 1,000-token prompt, and 4-6 % of
    the pass). A Slice goes before the LM head's MatMul; False (graph unchanged) where no MatMul is found."""
    from onnx import TensorProto, helper

    producers = {out: node for node in graph.node for out in node.output}
    node = producers.get(logits)
    while node is not None and node.op_type not in ("MatMul", "MatMulNBits"):
        node = producers.get(node.input[0])  # a bias Add or a Cast after the LM head
    if node is None:
        return False
    hidden, sliced = node.input[0], node.input[0] + "/last_position"
    constants = [helper.make_tensor(f"{sliced}/{name}", TensorProto.INT64, [1], [value])
                 for name, value in (("starts", -1), ("ends", 2**62), ("axes", 1))]
    graph.initializer.extend(constants)
    graph.node.insert(list(graph.node).index(node),
                      helper.make_node("Slice", [hidden, *(c.name for c in constants)], [sliced], name=sliced))
    node.input[0] = sliced
    output = next(o for o in graph.output if o.name == logits)
    output.type.tensor_type.shape.dim[1].dim_value = 1
    return True


NUMPY_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64,
                "tensor(int32)": np.int32}


class KVCache:
    """Keys and values of the running sequences, one row each (rows 0..n-1), right-padded to ``capacity``.

    onnxruntime-genai's builder emits ONNX Runtime's GroupQueryAttention, which reads row b's first
    ``seqlens_k[b]`` positions (the row's attention-mask sum) and, when past and present are the same buffer,
    writes the new position in place. So one step copies no cache, and a row never attends to another row's
    positions: a sequence's tokens do not depend on what else is in the batch (tests/test_slm_engine.py).
    """

    def __init__(self, decoder: dict, dtype, limit: int):
        inputs, outputs = decoder["inputs"], decoder["outputs"]
        self.names = [(inputs[f"past_{kind}_names"] % i, outputs[f"present_{kind}_names"] % i)
                      for i in range(decoder["num_hidden_layers"]) for kind in ("key", "value")]
        self.heads, self.head_size, self.dtype, self.limit = decoder["num_key_value_heads"], decoder["head_size"], dtype, limit
        self.rows, self.capacity, self.arrays = 0, 0, []
        self.generation = 0  # bumped when the arrays are replaced: bindings to the old ones are stale

    def ensure(self, rows: int, length: int) -> None:
        """Room for ``rows`` sequences of ``length`` tokens; grows by doubling (a copy, seldom)."""
        if rows <= self.rows and length <= self.capacity:
            return
        new_rows = self.rows if rows <= self.rows else max(rows, min(2 * self.rows, rows + 8))
        capacity = self.capacity if length <= self.capacity else min(self.limit, max(length, 2 * self.capacity, 256))
        arrays = [np.zeros((new_rows, self.heads, capacity, self.head_size), self.dtype) for _ in self.names]
        for old, new in zip(self.arrays, arrays):
            new[:self.rows, :, :self.capacity] = old
        self.rows, self.capacity, self.arrays = new_rows, capacity, arrays
        self.generation += 1

    def move(self, source: int, target: int) -> None:
        """Row ``source``'s keys and values into row ``target`` (a request left; the last row takes its place)."""
        for array in self.arrays:
            array[target] = array[source]

    def bind(self, binding, start: int, stop: int) -> None:
        """Rows ``start:stop`` as both past and present of every layer: views of the arrays, which stay alive
        until the cache grows (and bindings of an older ``generation`` are not run again)."""
        import onnxruntime as ort

        for (past, present), array in zip(self.names, self.arrays):
            value = ort.OrtValue.ortvalue_from_numpy(array[start:stop])
            binding.bind_ortvalue_input(past, value)
            binding.bind_ortvalue_output(present, value)
