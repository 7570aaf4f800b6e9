"""slm-lab-int4's parts: llama.cpp's greedy tokens read beside transformers', and the agreement measure."""
import pytest

from helpers import models
from helpers.measure import int4_settings, onnx_parity


def test_agreement_counts_the_tokens_before_the_first_difference():
    assert int4_settings.agreement([1, 2, 3, 4], [1, 2, 3, 4]) == 1.0
    assert int4_settings.agreement([1, 2, 3, 4], [1, 2, 9, 4]) == 0.5
    assert int4_settings.agreement([1, 2, 3, 4], [1, 2]) == 0.5  # an early stop is a difference


@pytest.mark.slow
def test_llama_cpp_on_phi4_nanos_f16_gguf_gives_transformers_greedy_tokens(tmp_path):
    """phi4-nano's f16 GGUF decodes as transformers does: the llama.cpp row of the int4 table reads token ids right."""
    card = models.get("phi4-nano")
    chats = int4_settings.prompts(card)[:6]
    ref = onnx_parity.measure("pytorch", card.hf_folder(progress=False), chats, tmp_path / "ref", 12, with_logits=False)
    got = onnx_parity.measure("llamacpp", card.gguf(progress=False), chats, tmp_path / "llama", 12, with_logits=False)
    assert "error" not in got, got
    assert got["tokens"] == ref["tokens"] and all(len(t) > 0 for t in got["tokens"])
