"""The GPT and everything its forward pass runs: attention and its masks, the KV cache, the CPU kernels, FP8.

`gpt.py` is the model (the original's public names: GPT, Block, CausalSelfAttention, MLP, create_model);
`attention.py` the one masking rule for SDPA and FlexAttention; `kv_cache.py` the rolling cache for
generation; `norms.py`, `relu2_mlp.py`, `softcap_loss.py` the CPU training kernels, each choosing its
hand-written backward or the plain maths, under the one switch in `cpu_kernels.py`; `fp8.py` the FP8 head.
Importing this package imports torch.
"""

from engine.model.gpt import (
    ATTENTION_SCALE,
    DEFAULT_MAX_SEQ_LEN,
    GPT,
    LOGIT_SOFTCAP,
    MLP,
    Block,
    CastedLinear,
    CausalSelfAttention,
    Rotary,
    create_model,
)

__all__ = ["ATTENTION_SCALE", "DEFAULT_MAX_SEQ_LEN", "GPT", "LOGIT_SOFTCAP", "MLP", "Block", "CastedLinear",
           "CausalSelfAttention", "Rotary", "create_model"]
