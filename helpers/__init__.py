"""SLM Deploy Lab's library, in layers: a module imports its own package and the packages below it, never
one above (tests/test_layout.py checks it, and that no imports run in a circle).

    formats   chat templates, tool-call formats, GGUF metadata, Prometheus text, Markdown tables
    system    paths and the content-keyed cache, free CPUs, what this machine offers, Python environments
    servers   what ships in the images: the SLM Engine and the Ollama-API stand-in
    tasks     what the models are asked (the curriculum, the seed's prompts) and how answers are graded
    nano      phi4-nano: its training, evaluation and report; its weights live in data/phi4-nano/
    models    the model registry: cards, where weights come from, GGUF and ONNX conversions, resource needs
    deploy    running a backend: specs, the docker and local runtimes, compose stacks, Kubernetes manifests
    clients   one client per API flavour (openai, ollama): the only code that branches on the API
    backends  the backend registry: one module per backend
    measure   the graded suite, the reference, parity, benchmarks, the comparison table, reports
    workbook  the notebook side: chapters and their checks, labs, dashboard, presentation, the runner
"""

LAYERS = ("formats", "system", "servers", "tasks", "nano", "models", "deploy", "clients", "backends", "measure",
          "workbook")
