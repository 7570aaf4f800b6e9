"""phi4-nano: a tiny model with Phi-4-mini's architecture, trained by this lab and shipped with it.

The trained folder is committed in ``helpers/data/phi4-nano/``: a normal Hugging Face model folder (config,
generation config, safetensors, tokenizer, chat template) plus ``report.json`` with the training and
held-out figures and the hash of the recipe it was trained from. ``load()`` takes seconds; it refuses
weights whose recipe hash is not the current recipe's (``helpers.nano.training``, ``make nano-train``).

``phi4-nano`` (the console script) prints the report; ``helpers.nano.report`` presents it.
"""
from __future__ import annotations

import json
from pathlib import Path

from helpers.nano.report import format_report
from helpers.nano.training import SHIPPED, recipe_key


class RecipeMismatch(RuntimeError):
    """The committed weights were trained from another recipe than the current one."""


def model_dir() -> Path:
    """The committed phi4-nano folder, after checking that it was trained from the current recipe."""
    report_file = SHIPPED / "report.json"
    if not report_file.exists():
        raise RecipeMismatch(f"{SHIPPED} holds no trained phi4-nano: run `make nano-train` (docs/phi4-nano.md)")
    trained, current = json.loads(report_file.read_text())["key"], recipe_key()
    if trained != current:
        raise RecipeMismatch(
            f"the committed phi4-nano ({SHIPPED}) was trained from recipe {trained}, but helpers/nano/training.py "
            f"and helpers/tasks/curriculum.py now describe recipe {current}: run `make nano-train` to retrain it "
            "(about 95 minutes on 2 cores) and commit helpers/data/phi4-nano/, or undo the change to the recipe")
    return SHIPPED


def load():
    """(model, tokenizer, folder) of the committed phi4-nano."""
    from transformers import AutoTokenizer, Phi3ForCausalLM

    folder = model_dir()
    tokenizer = AutoTokenizer.from_pretrained(folder, fix_mistral_regex=False)  # see models.sources.load_tokenizer
    return Phi3ForCausalLM.from_pretrained(folder).eval(), tokenizer, folder


def report(folder: Path | None = None) -> dict:
    """The training report saved beside the weights."""
    return json.loads(((folder or model_dir()) / "report.json").read_text())


def main() -> None:
    """Print the committed model's training report and held-out accuracy."""
    print(format_report(report(model_dir())))
