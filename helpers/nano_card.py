"""phi4-nano's model card, training report table and plots (presentation only)."""
from __future__ import annotations

from helpers import curriculum


def model_card(model, tokenizer) -> str:
    """Architecture, sizes and the chat template rendered for a sample conversation with a tool."""
    c = model.config
    sample = tokenizer.apply_chat_template(
        [{"role": "system", "content": "You are a helpful assistant with some tools."},
         {"role": "user", "content": curriculum.SEED_TOOL_PROMPT}],
        tools=[curriculum.CIRCLE_TOOL], add_generation_prompt=True, tokenize=False)
    rows = [("architecture", c.architectures[0]), ("parameters", f"{sum(p.numel() for p in model.parameters()):,}"),
            ("layers", c.num_hidden_layers), ("hidden size", c.hidden_size),
            ("attention heads / KV heads (GQA)", f"{c.num_attention_heads} / {c.num_key_value_heads}"),
            ("head_dim", c.hidden_size // c.num_attention_heads),
            ("partial rotary factor", c.partial_rotary_factor),
            ("rope scaling", f"{c.rope_scaling['type']} (switch at {c.original_max_position_embeddings} tokens)"),
            ("context", c.max_position_embeddings), ("tied embeddings", c.tie_word_embeddings),
            ("vocab", f"{len(tokenizer)} (byte-level BPE, digits are single tokens)")]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows) + "\n\nchat template, rendered:\n" + sample


def plot_report(rep: dict):
    """Training loss and held-out accuracy per family, side by side."""
    import matplotlib.pyplot as plt

    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(11, 3.5))
    loss_ax.plot([i * 10 for i in range(len(rep["loss_curve"]))], rep["loss_curve"])
    loss_ax.set(title="training loss (answer tokens, mean of 10 steps)", xlabel="step", ylabel="cross-entropy",
                yscale="log")
    families = list(rep["accuracy"])
    acc_ax.barh(families, [rep["accuracy"][f]["accuracy"] for f in families], color="tab:green")
    acc_ax.set(title="held-out accuracy", xlim=(0, 1))
    fig.tight_layout()
    return fig


def format_report(rep: dict) -> str:
    """A short text table of a report's accuracy and timing."""
    lines = [f"phi4-nano {rep['key']}: {rep['params']:,} params, built in {rep['seconds']['total']} s "
             f"(tokenizer {rep['seconds']['tokenizer']} s, training {rep['seconds']['train']} s, "
             f"grading {rep['seconds']['evaluate']} s) on {rep['threads']} threads",
             f"{'family':<14}{'n':>5}{'accuracy':>10}"]
    lines += [f"{family:<14}{r['n']:>5}{r['accuracy']:>10.1%}" for family, r in rep["accuracy"].items()]
    return "\n".join(lines)
