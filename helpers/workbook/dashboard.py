"""An instructor's live dashboard: one prompt, several backends side by side, streaming.

``Dashboard.widget()`` is for a live room (JupyterLab, or ``make present``: Voilà serves
notebooks/dashboard.ipynb as an app without code). A *race* sends the prompt to every
chosen backend at once (``concurrency`` copies each) through the backend's own client;
each column streams its answer while its time to first token and tokens/s update. The
tool-call switch offers the seed's tools and shows either the parsed ``tool_calls`` or
the raw text the model wrote before any parser. Buttons re-run a small benchmark and
the task suite and redraw their plots. A backend that fails shows its error in its own
column; the others go on. ``Dashboard.race()`` does the same without widgets and
returns the rows, so a notebook executed by papermill shows static output instead.
"""
from __future__ import annotations

import html
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

MODES = ("chat", "tools: parsed", "tools: raw text")
UPDATE_EVERY_S = 0.1  # a column redraws at most this often while it streams (every token would flood the page)


def parsed_tool_calls(reply) -> str:
    """A reply's parsed ``tool_calls`` (one ``name(arguments)`` line each), or its text when it called none."""
    if not reply.tool_calls:
        return f"(no tool_calls) {reply.content or ''}"
    return "\n".join(f"tool_calls → {c['name']}({json.dumps(c['arguments'])})" for c in reply.tool_calls)


def connect(lab, endpoints: str | None = None) -> dict[str, str]:
    """Backend -> base URL of running backends: the instructor's (``endpoints`` as JSON, e.g. the
    ``SLM_LAB_ENDPOINTS`` variable), those ``lab`` already runs, else every backend of the registry started by
    ``lab`` (stopped with the kernel) where they fit in memory together; {} where they do not (``for_lab`` then
    races them one after another)."""
    if endpoints:
        return json.loads(endpoints)
    from helpers import backends

    if set(lab.running) == set(backends.BACKENDS):
        return {name: server.base_url for name, server in lab.running.items()}
    together, why = lab.fit_together()
    print(f"dashboard: the backends run {why}")
    return {name: server.base_url for name, server in lab.start_all().items()} if together else {}


def for_lab(lab, endpoints: str | None = None) -> "Dashboard":
    """The dashboard of ``lab``'s model on the backends ``connect`` finds or starts; where they do not fit in
    memory together, on every backend of the registry started in turn (a race runs one column after another)."""
    from helpers import backends

    urls = connect(lab, endpoints)
    if urls:
        return Dashboard.for_backends(urls, lab.model)
    return Dashboard(dict.fromkeys(backends.BACKENDS), lab.model, switch=lab.switch_to)


class Dashboard:
    def __init__(self, clients: dict, card, count_tokens=None, tools: list[dict] | None = None, switch=None):
        """``clients`` (column name -> a ``helpers.clients`` client) all serve ``card``'s model; ``count_tokens(text)``
        defaults to the model's tokenizer; ``tools`` for the tool-call switch (default: the seed's circle tool
        and a weather tool). ``switch(name)``: for backends that run one at a time, makes ``name`` the running one
        and returns its client; races then run one column after another."""
        from helpers.measure import serving_bench
        from helpers.tasks import curriculum

        self.clients, self.card, self.switch = clients, card, switch
        self.tools = tools or [curriculum.CIRCLE_TOOL, curriculum.WEATHER_TOOL]
        self.count = count_tokens or serving_bench.token_counter(card.hf_folder(progress=False) / "tokenizer.json")

    def client(self, name: str):
        """``name``'s client (started first where backends run in turn)."""
        if self.switch:
            self.clients[name] = self.switch(name)
        return self.clients[name]

    @classmethod
    def for_backends(cls, urls: dict[str, str], card) -> "Dashboard":
        """The dashboard of the registry's backends at ``urls`` (backend -> base URL)."""
        from helpers import backends

        return cls({name: backends.get(name).client(url, card) for name, url in urls.items()}, card)

    # ------------------------------------------------------------------ the race, without widgets

    def _answer(self, client, prompt: str, mode: str, temperature: float, max_tokens: int, on_text):
        """One request; ``on_text(text so far)`` after every piece. In raw mode ``prompt`` is the rendered one."""
        messages = [{"role": "user", "content": prompt}]
        if mode == "tools: parsed":
            on_text(parsed_tool_calls(client.chat(messages, self.tools, max_tokens, temperature)))
        elif mode == "tools: raw text":
            on_text(client.raw(prompt, max_tokens))
        else:
            pieces = []

            def piece(text):
                pieces.append(text)
                on_text("".join(pieces))
            client.stream(messages, max_tokens=max_tokens, on_text=piece, temperature=temperature)

    def _column(self, name: str, prompt: str, mode: str, temperature: float, max_tokens: int, concurrency: int,
                on_update=None) -> dict:
        """``concurrency`` copies of the prompt to one backend at once; its row (the first copy's answer and time
        to first token; every copy's tokens per second: after the first token when streamed, else since the
        request)."""
        start, lock = time.perf_counter(), threading.Lock()
        texts, firsts = [""] * concurrency, [None] * concurrency
        row = {"backend": name, "answer": "", "tokens": 0, "ttft_s": None, "tok_s": 0.0, "error": ""}
        last_update = [0.0]

        def refresh(final: bool = False):
            now = time.perf_counter()
            with lock:
                if not final and now - last_update[0] < UPDATE_EVERY_S:
                    return
                last_update[0] = now
                started = [f for f in firsts if f]
                row["answer"], row["tokens"] = texts[0], sum(self.count(t) for t in texts)
                row["ttft_s"] = round(firsts[0] - start, 3) if firsts[0] else None
                since = min(started) if started and mode == "chat" else start  # a streamed answer: after its first token
                row["tok_s"] = round(row["tokens"] / (now - since), 1) if started and now > since else 0.0
                snapshot = dict(row)
            if on_update:
                on_update(name, snapshot)

        def one(i):
            def on_text(text):
                firsts[i] = firsts[i] or time.perf_counter()
                texts[i] = text
                refresh()
            self._answer(client, prompt, mode, temperature, max_tokens, on_text)

        try:
            if self.switch and on_update:
                on_update(name, {**row, "state": f"starting {name} (backends run one at a time here)…"})
            client = self.client(name)
            start = time.perf_counter()  # after a start in turn: the race times the answer, not the start
            with ThreadPoolExecutor(concurrency) as pool:
                list(pool.map(one, range(concurrency)))
        except Exception as err:  # one failing backend must not take the others down
            row["error"] = f"{type(err).__name__}: {err}"
        refresh(final=True)
        return row

    def race(self, prompt: str, backends: list[str] | None = None, mode: str = "chat", temperature: float = 0.0,
             max_tokens: int = 128, concurrency: int = 1, on_update=None) -> list[dict]:
        """The prompt to every chosen backend at once (one after another where they run in turn); one row per
        backend. ``on_update(backend, row)`` is called while the answers stream (at most every ``UPDATE_EVERY_S``)
        and once at the end."""
        from helpers.measure import reference

        names = backends or list(self.clients)
        if mode == "tools: raw text":  # rendered once, before the threads (transformers' lazy imports race)
            prompt = reference.prompt_text(self.card, [{"role": "user", "content": prompt}], self.tools)
        with ThreadPoolExecutor(1 if self.switch else len(names)) as pool:
            return list(pool.map(lambda n: self._column(n, prompt, mode, temperature, max_tokens, concurrency,
                                                        on_update), names))

    def benchmark(self, backends: list[str], concurrency: int, max_tokens: int) -> dict[str, list[dict]]:
        """A small serving benchmark (concurrency 1 and ``concurrency``) of the chosen backends, one at a time."""
        from helpers.clients import openai_api
        from helpers.measure import serving_bench, task_suite

        prompts = [openai_api.messages(t.messages) for t in task_suite.suite(self.card) if not t.tools][:8]
        levels = sorted({1, concurrency})
        return {name: serving_bench.sweep(self.client(name).base_url, self.card.served_name, prompts, self.count, levels,
                                          requests_per_level=max(4, concurrency), warmup=1, max_tokens=max_tokens,
                                          progress=False) for name in backends}

    def suite_accuracy(self, backends: list[str]) -> dict[str, dict[str, float]]:
        """The model's graded task suite through each chosen backend's own client."""
        from helpers.measure import task_suite

        tasks = task_suite.suite(self.card)
        return {name: task_suite.accuracy(task_suite.run(task_suite.Served(self.client(name), self.card),
                                                         tasks, progress=False)) for name in backends}

    # ------------------------------------------------------------------ the live widget

    def widget(self, prompt: str = ""):
        """The dashboard as ipywidgets (a live kernel: JupyterLab or Voilà)."""
        import ipywidgets as w
        import matplotlib.pyplot as plt
        from IPython.display import display

        from helpers.measure import comparison
        from helpers.tasks.curriculum import SEED_TOOL_PROMPT

        box = w.Textarea(value=prompt, description="prompt", layout=w.Layout(width="95%", height="70px"))
        picks = {name: w.Checkbox(value=True, description=name, indent=False) for name in self.clients}
        temperature = w.FloatSlider(value=0.0, min=0.0, max=1.5, step=0.1, description="temperature")
        max_tokens = w.IntSlider(value=min(128, self.card.budget.bench_tokens * 2), min=8, max=512, step=8,
                                 description="max tokens")
        concurrency = w.IntSlider(value=1, min=1, max=8, description="concurrency",
                                  tooltip="requests per backend at once (race and benchmark)")
        mode = w.ToggleButtons(options=MODES, description="tool calls",
                               tooltips=["a plain chat answer, streamed", "the seed's tools offered; the server's "
                                         "parsed tool_calls", "the seed's tools offered; the raw text the model "
                                         "wrote, before any parser (greedy)"])
        race = w.Button(description="Race", button_style="primary", icon="play")
        bench = w.Button(description="Run benchmark", icon="tachometer")
        suite = w.Button(description="Run task suite", icon="check")
        status = w.Label(value="this machine holds one backend at a time: a race starts each in turn, one column "
                                "after another" if self.switch else "")
        status.add_class("slm-status")
        runs = [0]
        width = f"{98 // len(self.clients)}%"
        stats = {name: w.HTML(value="–") for name in self.clients}
        answers = {name: w.HTML(value="") for name in self.clients}
        columns = {}
        for name in self.clients:
            columns[name] = w.VBox([w.HTML(f"<b>{html.escape(name)}</b>"), stats[name], answers[name]],
                                   layout=w.Layout(width=width, border="1px solid #ccc", padding="4px"))
            columns[name].add_class("slm-column")
            columns[name].add_class(f"slm-backend-{name}")
            stats[name].add_class("slm-stats")
            answers[name].add_class("slm-answer")
        plots = {"benchmark": w.Output(), "suite": w.Output()}
        for name, out in plots.items():
            out.add_class(f"slm-plot-{name}")

        def show(name, row):
            ttft = "–" if row["ttft_s"] is None else f"{row['ttft_s']:.2f} s"
            stats[name].value = row.get("state") or (
                f"TTFT {ttft} · {row['tok_s']:,.1f} tok/s · {row['tokens']} tokens"
                + (" · <span style='color:#b00'>failed</span>" if row["error"] else ""))
            body = html.escape(row["answer"]) + (
                f"<div style='color:#b00'>error: {html.escape(row['error'])}</div>" if row["error"] else "")
            answers[name].value = f"<pre style='white-space:pre-wrap;margin:0'>{body}</pre>"

        def chosen():
            return [n for n, c in picks.items() if c.value]

        def busy(what, work):
            for button in (race, bench, suite):
                button.disabled = True
            runs[0] += 1
            what = f"{what} #{runs[0]}"
            status.value = f"{what}…"
            start = time.perf_counter()
            try:
                work()
                status.value = f"{what}: done in {time.perf_counter() - start:.1f} s"
            except Exception as err:  # shown, never a dead button
                status.value = f"{what}: failed: {type(err).__name__}: {err}"
            finally:
                for button in (race, bench, suite):
                    button.disabled = False

        def on_race(_):
            for name in chosen():  # never a silent column: a model's first request also loads it
                show(name, {"answer": "", "tokens": 0, "ttft_s": None, "tok_s": 0.0, "error": "",
                            "state": "waiting for the first token (the first request also loads the model)…"})
            busy("race", lambda: self.race(box.value, chosen(), mode.value, temperature.value, max_tokens.value,
                                           concurrency.value, on_update=show))

        def redraw(out, figure):
            out.clear_output(wait=True)
            with out:
                display(figure)
            plt.close(figure)

        def on_bench(_):
            busy("benchmark", lambda: redraw(plots["benchmark"], comparison.plot_concurrency(
                self.benchmark(chosen(), concurrency.value, max_tokens.value))))

        def on_suite(_):
            busy("task suite", lambda: redraw(plots["suite"], comparison.plot_accuracy(
                self.suite_accuracy(chosen()))))

        def on_mode(change):
            if change["new"] != "chat" and box.value == prompt:
                box.value = SEED_TOOL_PROMPT

        race.on_click(on_race)
        bench.on_click(on_bench)
        suite.on_click(on_suite)
        mode.observe(on_mode, names="value")
        return w.VBox([box, w.HBox(list(picks.values())), w.HBox([temperature, max_tokens, concurrency]), mode,
                       w.HBox([race, bench, suite, status]), w.HBox(list(columns.values())),
                       plots["benchmark"], plots["suite"]])
