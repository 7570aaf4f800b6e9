"""ipywidgets for learners who would rather click than edit; static under papermill."""
from __future__ import annotations

from helpers.system.machine import RUNTIMES


def choice_picker(runtime: str, model: str, on_change):
    """Toggle buttons for the runtime and the model; ``on_change(runtime, model)`` saves each change
    (notebook 00 remembers it for the later notebooks)."""
    import ipywidgets as w

    from helpers.models import MODELS

    runtimes = w.ToggleButtons(options=list(RUNTIMES), value=runtime, description="runtime",
                               tooltips=["backends as local processes (offline)",
                                         "official images through Docker (or local stand-in images)"])
    models = w.ToggleButtons(options=list(MODELS), value=model, description="model",
                             tooltips=[card.notes for card in MODELS.values()])
    status = w.Label()

    def changed(_):
        status.value = f"saved: {on_change(runtimes.value, models.value)}"

    runtimes.observe(changed, names="value")
    models.observe(changed, names="value")
    return w.VBox([runtimes, models, status])


def prompt_box(answer, placeholder: str = "What is 17 + 25?"):
    """A prompt box and button that show ``answer(prompt)`` below them."""
    import ipywidgets as w

    text = w.Text(value=placeholder, description="prompt", layout=w.Layout(width="70%"))
    button = w.Button(description="answer", button_style="primary")
    out = w.Output()

    def on_click(_):
        out.clear_output()
        with out:
            print(answer(text.value))

    button.on_click(on_click)
    return w.VBox([w.HBox([text, button]), out])
