"""Formats the lab reads and writes: chat templates and tool calls, GGUF metadata, Prometheus text,
Markdown tables. The bottom layer: stdlib (and jinja2) only, shipped in the servers' images.
"""
