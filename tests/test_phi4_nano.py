"""phi4-nano: architecture, tokenizer, the committed weights and their recipe, and the answers it gives."""
import json

import pytest

from helpers.formats import chat_format
from helpers.nano import evaluation, phi4_nano, training
from helpers.tasks import curriculum
from helpers.formats.tool_formats import parse_tool_calls


def test_architecture_is_phi4_mini_family_at_toy_widths(nano):
    model, tokenizer, _ = nano
    c = model.config
    assert c.architectures == ["Phi3ForCausalLM"] and c.model_type == "phi3"
    assert c.hidden_size // c.num_attention_heads == 64, "onnxruntime-genai's GQA kernel needs head_dim 64"
    assert c.num_key_value_heads < c.num_attention_heads and c.partial_rotary_factor == 0.75
    assert c.rope_scaling["type"] == "longrope" and c.original_max_position_embeddings == 1024
    assert len(c.rope_scaling["long_factor"]) == len(c.rope_scaling["short_factor"]) == 24
    assert c.tie_word_embeddings and model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert c.vocab_size == len(tokenizer) == 4096


def test_tokenizer_keeps_digits_single_and_special_tokens_whole(nano):
    _, tokenizer, _ = nano
    assert tokenizer.tokenize("17 + 25") == ["1", "7", "Ġ+", "Ġ", "2", "5"]
    multi_digit = [t for t in tokenizer.get_vocab() if len(t) > 1 and any(ch.isdigit() for ch in t)]
    assert not multi_digit
    for token in chat_format.SPECIAL_TOKENS:
        assert len(tokenizer.encode(token, add_special_tokens=False)) == 1
    assert tokenizer.model_input_names == ["input_ids", "attention_mask"]


def test_worked_sums_fit_the_answer_budget(nano):
    """Every worked sum, with its end token, fits the tokens every backend grants phi4-nano's answers."""
    _, tokenizer, _ = nano
    answers = [curriculum.worked_answer(a, b, op)[0]
               for a in range(100) for b in range(100) for op in "+-"[:1 + (a >= b)]]
    longest = max(len(ids) for ids in tokenizer(answers, add_special_tokens=False)["input_ids"]) + 1
    assert longest <= evaluation.MAX_NEW_TOKENS["default"]


def test_saved_folder_is_servable(nano):
    _, _, folder = nano
    for name in ["config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                 "tokenizer_config.json", "chat_template.jinja", "report.json"]:
        assert (folder / name).exists(), name
    assert json.loads((folder / "tokenizer_config.json").read_text())["tokenizer_class"] == "GPT2Tokenizer"
    eos = json.loads((folder / "generation_config.json").read_text())["eos_token_id"]
    assert eos == evaluation.stop_token_ids(nano[1])


def test_committed_weights_belong_to_the_current_recipe():
    assert phi4_nano.model_dir() == phi4_nano.SHIPPED  # else RecipeMismatch says to run `make nano-train`


def test_a_changed_recipe_refuses_the_committed_weights(monkeypatch):
    monkeypatch.setitem(training.RECIPE, "train", {**training.RECIPE["train"], "steps": 1})
    with pytest.raises(phi4_nano.RecipeMismatch, match="run `make nano-train`"):
        phi4_nano.model_dir()


def test_heldout_accuracy_is_the_recorded_one(nano):
    model, tokenizer, folder = nano
    recorded = phi4_nano.report(folder)["accuracy"]
    measured = evaluation.evaluate(model, tokenizer, training.RECIPE["eval"]["per_family"], progress=False)
    assert {f: r["accuracy"] for f, r in measured.items()} == {f: r["accuracy"] for f, r in recorded.items()}


def test_the_recipe_reproduces_the_start_of_the_committed_run(nano, monkeypatch):
    """The recipe's tokenizer is the committed one and its first ten steps give the committed losses: what the
    recipe key cannot see (library versions, this CPU) still reproduces the run's start. Later steps drift apart
    across CPU kinds (docs/phi4-nano.md), so only the start is checked here."""
    import torch
    import torch.nn.functional as F
    from transformers import Phi3ForCausalLM

    tokenizer = training.train_tokenizer(**training.RECIPE["tokenizer"])
    assert tokenizer.get_vocab() == nano[1].get_vocab()
    torch.manual_seed(training.RECIPE["train"]["seed"])
    model = Phi3ForCausalLM(training.make_config(tokenizer))
    losses, cross_entropy = [], F.cross_entropy

    def recorded(*args, **kwargs):
        loss = cross_entropy(*args, **kwargs)
        losses.append(loss.item())
        return loss

    class Enough(Exception):
        pass

    def stop_after_ten(step):
        if step == 10:
            raise Enough

    monkeypatch.setattr(F, "cross_entropy", recorded)
    try:
        with pytest.raises(Enough):
            training.train(model, tokenizer, on_step=stop_after_ten, progress=False, **training.RECIPE["train"])
    finally:
        torch.set_flush_denormal(False)  # train() turns it off only when it runs to the end
    assert losses == pytest.approx(phi4_nano.report(nano[2])["loss_first"], abs=2e-3)


@pytest.mark.slow
def test_the_recipe_trains_a_servable_folder(tmp_path, monkeypatch):
    """The training path end to end at a few steps (make nano-train runs the full recipe)."""
    monkeypatch.setitem(training.RECIPE, "train", {**training.RECIPE["train"], "steps": 4, "warmup": 2})
    monkeypatch.setitem(training.RECIPE, "eval", {"per_family": 1, "every": 2})
    rep = training.build(tmp_path, progress=False)
    assert rep["key"] == training.recipe_key() != phi4_nano.report(phi4_nano.SHIPPED)["key"]
    assert [point["step"] for point in rep["heldout_curve"]] == [2, 4]
    assert (tmp_path / "model.safetensors").exists() and (tmp_path / "chat_template.jinja").exists()


def test_compare_says_whether_a_retraining_reproduced_the_committed_run():
    committed = {"key": "k", "cpu": "Intel Xeon", "threads": 2, "loss_curve": [8.2, 7.6, 6.8],
                 "accuracy": {"arithmetic": {"accuracy": 0.95}}}
    assert training.compare(committed, committed).endswith(
        "same accuracies as the committed report; the loss curves are identical")
    other_cpu = {**committed, "cpu": "AMD EPYC", "loss_curve": [8.2, 7.6, 6.9],
                 "accuracy": {"arithmetic": {"accuracy": 0.9}}}
    assert training.compare(other_cpu, committed).endswith(
        "differs from the committed report; the loss curves part after step 20"
        " (committed: Intel Xeon, 2 threads; this run: AMD EPYC, 2 threads)")
    assert training.compare({**committed, "key": "new"}, committed).endswith("(its recipe differs)")
    assert training.compare(committed, None) == "no committed report to compare with"


def test_chat_template_renders_tools_in_the_system_turn(nano):
    _, tokenizer, _ = nano
    text = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], tools=[curriculum.CIRCLE_TOOL],
                                         add_generation_prompt=True, tokenize=False)
    assert text.startswith('<|system|><|tool|>[{"name": "calculate_circle_area"')
    assert text.endswith("<|/tool|><|end|><|user|>Hi<|end|><|assistant|>")


def test_seed_tool_prompt_gives_the_trained_tool_call(nano):
    model, tokenizer, _ = nano
    reply = evaluation.chat(model, tokenizer, [{"role": "user", "content": curriculum.SEED_TOOL_PROMPT}],
                           tools=[curriculum.CIRCLE_TOOL])
    assert parse_tool_calls(reply) == [{"name": "calculate_circle_area", "arguments": {"radius": 5}}]


def test_report_covers_every_family(nano):
    rep = phi4_nano.report(nano[2])
    assert set(rep["accuracy"]) == set(curriculum.FAMILIES) | {"seed"}
    assert rep["params"] == sum(p.numel() for p in nano[0].parameters())
    assert rep["loss_last"][-1] < rep["loss_first"][0] / 5, "training did not reduce the loss"
