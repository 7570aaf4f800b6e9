"""Model cards as a learner reads them, and phi4-nano's training report and plots (presentation only)."""
from __future__ import annotations

from helpers import curriculum


def model_card(card, model, tokenizer) -> str:
    """Where the model comes from, its architecture and sizes, and its chat template rendered for a
    sample conversation with a tool (where the tools go, and what format it is asked to answer in)."""
    c = model.config
    sample = tokenizer.apply_chat_template(
        [{"role": "system", "content": "You are a helpful assistant with some tools."},
         {"role": "user", "content": curriculum.SEED_TOOL_PROMPT}],
        tools=[curriculum.CIRCLE_TOOL], add_generation_prompt=True, tokenize=False)
    rope = c.rope_scaling or {}
    rows = [("model", card.describe()), ("served as", card.served_name),
            ("architecture", c.architectures[0]), ("parameters", f"{sum(p.numel() for p in model.parameters()):,}"),
            ("layers", c.num_hidden_layers), ("hidden size", c.hidden_size),
            ("attention heads / KV heads (GQA)", f"{c.num_attention_heads} / {c.num_key_value_heads}"),
            ("head_dim", getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads),
            ("partial rotary factor", getattr(c, "partial_rotary_factor", 1.0)),
            ("rope scaling", f"{rope.get('type', rope.get('rope_type'))} (switch at "
                             f"{c.original_max_position_embeddings} tokens)" if rope else "none"),
            ("context (trained / served here)", f"{c.max_position_embeddings} / {card.context}"),
            ("tied embeddings", c.tie_word_embeddings), ("vocab", len(tokenizer)),
            ("tool calls asked for", card.tool_format)]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows) + "\n\nchat template, rendered:\n" + sample


def plot_report(rep: dict):
    """Training loss, held-out accuracy per family as training went on, and the final held-out accuracy."""
    import matplotlib.pyplot as plt

    fig, (loss_ax, curve_ax, acc_ax) = plt.subplots(1, 3, figsize=(15, 3.5))
    loss_ax.plot([i * 10 for i in range(len(rep["loss_curve"]))], rep["loss_curve"])
    loss_ax.set(title="training loss (answer tokens, mean of 10 steps)", xlabel="step", ylabel="cross-entropy",
                yscale="log")
    families = list(rep["accuracy"])
    curve = rep.get("heldout_curve", [])
    for family in families:
        curve_ax.plot([p["step"] for p in curve], [p[family] for p in curve], marker=".", label=family)
    curve_ax.set(title="held-out accuracy while training", xlabel="step", ylim=(0, 1.02))
    curve_ax.legend(fontsize="small")
    acc_ax.barh(families, [rep["accuracy"][f]["accuracy"] for f in families], color="tab:green")
    acc_ax.set(title="held-out accuracy, final", xlim=(0, 1))
    fig.tight_layout()
    return fig


def format_report(rep: dict) -> str:
    """A short text table of a report's accuracy and timing."""
    lines = [f"phi4-nano {rep['key']}: {rep['params']:,} params, built in {rep['seconds']['total']} s "
             f"(tokenizer {rep['seconds']['tokenizer']} s, training {rep['seconds']['train']} s, "
             f"grading {rep['seconds']['evaluate']} s) on {rep['threads']} threads of {rep.get('cpu', 'a CPU')}, "
             f"torch {rep['torch']}",
             f"{'family':<14}{'n':>5}{'accuracy':>10}"]
    lines += [f"{family:<14}{r['n']:>5}{r['accuracy']:>10.1%}" for family, r in rep["accuracy"].items()]
    return "\n".join(lines)


def show_origin(card) -> None:
    """phi4-nano: its training report and held-out accuracy (plotted); any other model: where its weights
    come from and under which license."""
    if card.key != "phi4-nano":
        folder = card.hf_folder(progress=False)
        provenance = folder / "PROVENANCE.md"
        print(card.describe(), "\n")
        print(provenance.read_text() if provenance.exists() else f"downloaded to {folder}")
        print(f"license: {card.license}" + (f" (text: {folder / 'LICENSE'})" if (folder / "LICENSE").exists() else ""))
        return
    from helpers import phi4_nano

    rep = phi4_nano.report(card.hf_folder(progress=False))
    print(format_report(rep))
    plot_report(rep)
