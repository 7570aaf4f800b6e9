"""The engine's model: an ONNX Runtime session on a genai build's decoder, and the KV cache it decodes over."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def load_session(folder: Path, decoder: dict, threads: int, device: str = "cpu"):
    """An ONNX Runtime session on a genai build's decoder (``genai_config.json``'s entry), its LM head cut to each row's
    last position, on ``device`` ("cpu", or "cuda": onnxruntime-gpu's CUDA provider), with ``threads`` intra-op
    threads and no second pool.

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
    session = ort.InferenceSession(model.SerializeToString(), options, providers=providers(device))
    started = session.get_providers()[0]
    if device == "cuda" and started != "CUDAExecutionProvider":
        raise SystemExit(f"--device cuda: ONNX Runtime could not start its CUDA provider and fell back to {started} "
                         "(its log above says why: no GPU in the container, or a driver older than the CUDA build; "
                         "docs/gpu.md)")
    return session


def providers(device: str) -> list:
    """ONNX Runtime's execution providers for ``device``; for "cuda", the CUDA and cuDNN libraries of the image's
    NVIDIA pip packages are loaded first (onnxruntime-gpu finds them only so); an ONNX Runtime without the CUDA
    provider stops the engine with the reason (``load_session`` stops it where the provider does not start)."""
    import onnxruntime as ort

    if device == "cpu":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise SystemExit(f"--device cuda needs onnxruntime-gpu; this ONNX Runtime ({ort.__version__}) offers "
                         f"{ort.get_available_providers()} (the engine's CUDA image has it: docs/gpu.md)")
    ort.preload_dlls(directory="")
    return [("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"]


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
    """Keys and values of the running sequences, one row each (rows 0..n-1), right-padded to ``capacity``, in
    ``device`` memory ("cpu" or "cuda"): one ONNX Runtime tensor per layer's keys and per layer's values.

    onnxruntime-genai's builder emits ONNX Runtime's GroupQueryAttention, which reads row b's first
    ``seqlens_k[b]`` positions (the row's attention-mask sum) and, when past and present are the same buffer,
    writes the new position in place. So one step copies no cache, and a row never attends to another row's
    positions: a sequence's tokens do not depend on what else is in the batch (tests/test_slm_engine.py).
    Growing the cache and moving a row are ONNX Runtime runs too (Pad, Identity) on the same device, so the
    cache never leaves the GPU and the CPU runs the very same code.
    """

    def __init__(self, decoder: dict, dtype, limit: int, device: str = "cpu"):
        inputs, outputs = decoder["inputs"], decoder["outputs"]
        self.names = [(inputs[f"past_{kind}_names"] % i, outputs[f"present_{kind}_names"] % i)
                      for i in range(decoder["num_hidden_layers"]) for kind in ("key", "value")]
        self.heads, self.head_size, self.dtype, self.limit = decoder["num_key_value_heads"], decoder["head_size"], dtype, limit
        self.device = device
        self.rows, self.capacity, self.values = 0, 0, []
        self.generation = 0  # bumped when the tensors are replaced: bindings to the old ones are stale
        self.copy, self.pad = _tensor_op("Identity", dtype, device), _tensor_op("Pad", dtype, device)

    def ensure(self, rows: int, length: int) -> None:
        """Room for ``rows`` sequences of ``length`` tokens; grows by doubling (a copy, seldom)."""
        import onnxruntime as ort

        if rows <= self.rows and length <= self.capacity:
            return
        new_rows = self.rows if rows <= self.rows else max(rows, min(2 * self.rows, rows + 8))
        capacity = self.capacity if length <= self.capacity else min(self.limit, max(length, 2 * self.capacity, 256))
        shape = (new_rows, self.heads, capacity, self.head_size)
        values = []
        for old in self.values or [None] * len(self.names):
            if old is None:  # zeros to start with; later the Pad fills the new rows and positions with zeros
                values.append(ort.OrtValue.ortvalue_from_numpy(np.zeros(shape, self.dtype), self.device, 0))
                continue
            new = ort.OrtValue.ortvalue_from_shape_and_type(shape, self.dtype, self.device, 0)
            pads = np.array([0, 0, 0, 0, new_rows - self.rows, 0, capacity - self.capacity, 0], np.int64)
            self._run(self.pad, self._view(old, 0, self.rows), self._view(new, 0, new_rows), pads)
            values.append(new)
        self.rows, self.capacity, self.values = new_rows, capacity, values
        self.generation += 1

    def move(self, source: int, target: int) -> None:
        """Row ``source``'s keys and values into row ``target`` (a request left; the last row takes its place)."""
        for value in self.values:
            self._run(self.copy, self._view(value, source, source + 1), self._view(value, target, target + 1))

    def bind(self, binding, start: int, stop: int) -> None:
        """Rows ``start:stop`` as both past and present of every layer, bound by address (the tensors stay alive
        until the cache grows, and bindings of an older ``generation`` are not run again)."""
        for (past, present), value in zip(self.names, self.values):
            binding.bind_input(past, *self._view(value, start, stop))
            binding.bind_output(present, *self._view(value, start, stop))

    def _view(self, value, start: int, stop: int) -> tuple:
        """Rows ``start:stop`` of ``value`` as IOBinding's (device, id, type, shape, address)."""
        shape = value.shape()
        row_bytes = int(np.prod(shape[1:])) * np.dtype(self.dtype).itemsize
        return self.device, 0, self.dtype, [stop - start, *shape[1:]], value.data_ptr() + start * row_bytes

    @staticmethod
    def _run(session, source: tuple, target: tuple, pads: np.ndarray | None = None) -> None:
        binding = session.io_binding()
        binding.bind_input("x", *source)
        if pads is not None:
            binding.bind_cpu_input("pads", pads)
        binding.bind_output("y", *target)
        session.run_with_iobinding(binding)


def _tensor_op(op: str, dtype, device: str):
    """A one-node ONNX Runtime session on ``device``: y = op(x) (Identity: a copy; Pad: zeros added at the ends)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    element = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    inputs = [helper.make_tensor_value_info("x", element, ["r", "h", "c", "d"])]
    if op == "Pad":
        inputs.append(helper.make_tensor_value_info("pads", TensorProto.INT64, [8]))
    graph = helper.make_graph([helper.make_node(op, [i.name for i in inputs], ["y"])], op, inputs,
                              [helper.make_tensor_value_info("y", element, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep the copy a copy
    return ort.InferenceSession(model.SerializeToString(), options, providers=providers(device))
