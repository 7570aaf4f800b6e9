"""An instructor's live dashboard: one prompt, several backends side by side, streaming.

``Dashboard.widget()`` is for a live session (ipywidgets: prompt box, backend checkboxes,
temperature and max-token sliders, side-by-side streaming answers with live tokens/s, and
a button that re-runs the task suite and redraws the accuracy chart). ``Dashboard.ask()``
does the same comparison without widgets and returns the results, so a notebook executed
by papermill shows static output instead.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass


@dataclass
class Endpoint:
    kind: str  # "openai" or "ollama": the backend's API flavour (helpers.backends)
    base_url: str
    model: str

    @classmethod
    def of(cls, backend: str, base_url: str, card) -> "Endpoint":
        from helpers.backends import get
        return cls(get(backend).api, base_url, card.served_name)


def stream_answer(endpoint: Endpoint, prompt: str, temperature: float, max_tokens: int):
    """Text pieces of one streamed answer, through the backend's own client."""
    messages = [{"role": "user", "content": prompt}]
    if endpoint.kind == "ollama":
        import ollama
        for chunk in ollama.Client(host=endpoint.base_url).chat(model=endpoint.model, messages=messages, stream=True,
                                                                options={"temperature": temperature,
                                                                         "num_predict": max_tokens}):
            if chunk.message.content:
                yield chunk.message.content
        return
    from helpers import openai_chat
    for chunk in openai_chat.client(endpoint.base_url).chat.completions.create(
            model=endpoint.model, messages=messages, temperature=temperature, max_tokens=max_tokens, stream=True):
        if chunk.choices and chunk.choices[0].delta.content:
            yield chunk.choices[0].delta.content


class Dashboard:
    def __init__(self, endpoints: dict[str, Endpoint], count_tokens, run_suite=None):
        """``count_tokens(text)`` counts with the model's tokenizer; ``run_suite()`` returns a figure."""
        self.endpoints, self.count, self.run_suite = endpoints, count_tokens, run_suite

    def _one(self, name: str, prompt: str, temperature: float, max_tokens: int, on_piece=None) -> dict:
        start, first, text = time.perf_counter(), None, ""
        try:
            for piece in stream_answer(self.endpoints[name], prompt, temperature, max_tokens):
                first = first or time.perf_counter()
                text += piece
                if on_piece:
                    elapsed = time.perf_counter() - first
                    on_piece(name, piece, self.count(text) / elapsed if elapsed > 0 else 0.0)
        except Exception as err:  # one failing backend must not take the others down
            return {"backend": name, "answer": f"error: {err}", "tokens": 0, "ttft_s": None, "tok_s": 0.0}
        end = time.perf_counter()
        tokens = self.count(text)
        return {"backend": name, "answer": text, "tokens": tokens, "ttft_s": round((first or end) - start, 3),
                "tok_s": round(tokens / (end - first), 1) if first and end > first else 0.0}

    def ask(self, prompt: str, backends: list[str] | None = None, temperature: float = 0.0, max_tokens: int = 128,
            on_piece=None) -> list[dict]:
        """The prompt to every chosen backend at once; one row per backend."""
        names = backends or list(self.endpoints)
        with ThreadPoolExecutor(len(names)) as pool:
            return list(pool.map(lambda n: self._one(n, prompt, temperature, max_tokens, on_piece), names))

    def widget(self, prompt: str = ""):
        import ipywidgets as w
        from IPython.display import display

        box = w.Textarea(value=prompt, description="prompt", layout=w.Layout(width="100%", height="70px"))
        picks = {name: w.Checkbox(value=True, description=name, indent=False) for name in self.endpoints}
        temperature = w.FloatSlider(value=0.0, min=0.0, max=1.5, step=0.1, description="temperature")
        max_tokens = w.IntSlider(value=128, min=8, max=512, step=8, description="max tokens")
        send, suite = w.Button(description="Send", button_style="primary"), w.Button(description="Run task suite")
        panes = {name: w.Output(layout=w.Layout(width=f"{96 // len(self.endpoints)}%", border="1px solid #ddd"))
                 for name in self.endpoints}
        speeds = {name: w.Label(value=f"{name}: –") for name in self.endpoints}
        charts = w.Output()

        def on_piece(name, piece, tok_s):
            panes[name].append_stdout(piece)
            speeds[name].value = f"{name}: {tok_s:,.0f} tok/s"

        def on_send(_):
            chosen = [n for n, c in picks.items() if c.value]
            for name in chosen:
                panes[name].clear_output()
            self.ask(box.value, chosen, temperature.value, max_tokens.value, on_piece)

        def on_suite(_):
            if self.run_suite:
                charts.clear_output(wait=True)
                with charts:
                    display(self.run_suite())

        send.on_click(on_send)
        suite.on_click(on_suite)
        return w.VBox([box, w.HBox(list(picks.values())), w.HBox([temperature, max_tokens, send, suite]),
                       w.HBox(list(speeds.values())), w.HBox(list(panes.values())), charts])
