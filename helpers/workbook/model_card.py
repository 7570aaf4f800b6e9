"""A model card as a learner reads it (notebook 00): architecture, sizes, the chat template rendered, and
where the weights come from (for phi4-nano: its training report and plots)."""
from __future__ import annotations

from helpers.tasks import curriculum


def model_card(card, model, tokenizer) -> str:
    """Where the model comes from, its architecture and sizes."""
    c = model.config
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
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def rendered_template(tokenizer) -> str:
    """The chat template rendered for a sample conversation with a tool: where the tools go, and what format the
    model is asked to answer in."""
    return tokenizer.apply_chat_template(
        [{"role": "system", "content": "You are a helpful assistant with some tools."},
         {"role": "user", "content": curriculum.SEED_TOOL_PROMPT}],
        tools=[curriculum.CIRCLE_TOOL], add_generation_prompt=True, tokenize=False)


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
    from helpers.nano import phi4_nano, report

    rep = phi4_nano.report(card.hf_folder(progress=False))
    print(report.format_report(rep))
    report.plot_report(rep)
