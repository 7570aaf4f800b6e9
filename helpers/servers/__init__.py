"""The servers this project ships in its images: the SLM Engine (ONNX Runtime) and the Ollama-API stand-in
on llama.cpp. They import only ``helpers.formats`` and ``helpers.system`` (what the images carry).
"""
