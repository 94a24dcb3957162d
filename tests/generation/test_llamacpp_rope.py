"""RoPE scaling (position interpolation, YaRN) reaches llama.cpp as the profile says, or fails with one line."""

from __future__ import annotations

import llama_cpp
import pytest

from chatqa.config import load_profile
from chatqa.errors import ModelLoadError
from chatqa.generation.llamacpp import LlamaCppGenerator, rope_kwargs


def test_rope_kwargs_map_profile_settings() -> None:
    assert rope_kwargs(None) == {} and rope_kwargs({}) == {}
    linear = rope_kwargs({"type": "linear", "factor": 4})
    assert linear == {"rope_scaling_type": llama_cpp.LLAMA_ROPE_SCALING_TYPE_LINEAR, "rope_freq_scale": 0.25}
    yarn = rope_kwargs({"type": "yarn", "factor": 2, "original_context": 8192})
    assert yarn["rope_scaling_type"] == llama_cpp.LLAMA_ROPE_SCALING_TYPE_YARN
    assert yarn["rope_freq_scale"] == 0.5 and yarn["yarn_orig_ctx"] == 8192
    with pytest.raises(ModelLoadError, match="no dynamic NTK"):
        rope_kwargs({"type": "dynamic", "factor": 2})
    with pytest.raises(ModelLoadError, match="unknown rope type"):
        rope_kwargs({"type": "ntk-by-parts", "factor": 2})


@pytest.mark.parametrize(
    ("profile", "kind", "scale", "window"),
    [
        ("smollm2-pi2", "LINEAR", 0.5, 16384),
        ("smollm2-pi4", "LINEAR", 0.25, 32768),
        ("smollm2-yarn2", "YARN", 0.5, 16384),
    ],
)
def test_scaled_profiles_load_with_scaled_positions(profile: str, kind: str, scale: float, window: int) -> None:
    gen = LlamaCppGenerator(load_profile(profile).generator)
    try:
        params = gen.llm.context_params
        assert params.rope_freq_scale == pytest.approx(scale) and gen.llm.n_ctx() == window
        assert params.rope_scaling_type == getattr(llama_cpp, f"LLAMA_ROPE_SCALING_TYPE_{kind}")
        if kind == "YARN":
            assert params.yarn_orig_ctx == 8192
        out = gen.generate("The capital of France is", 4)
        assert out.completion_tokens > 0  # the scaled model still runs end to end
    finally:
        gen.close()
