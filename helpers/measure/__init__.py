"""Measuring backends: the graded task suite, the transformers reference, ONNX parity, the serving
benchmark, the engine's decode benchmark, the seed's comparison table and the exported report.
"""
