"""Hugging Face configuration of a nanogpt-tui (modded-nanogpt style) GPT; written by `nanogpt-tui export`."""

from transformers import PretrainedConfig


class NanoGPTConfig(PretrainedConfig):
    """The model's shape; the names follow nanogpt-tui's ModelConfig (aliases give the usual HF names)."""

    model_type = "nanogpt_tui"
    attribute_map = {"hidden_size": "model_dim", "num_hidden_layers": "num_layers",
                     "num_attention_heads": "num_heads"}

    def __init__(self, vocab_size=50257, output_vocab_size=None, num_layers=12, num_heads=6, head_dim=128,
                 model_dim=768, num_value_embeds=3, no_attention_layers=(7,), window_pattern="LSSSLSSLSSSL",
                 max_window_tokens=1728, attn_block_size=128, bos_id=50256, logit_softcap=30.0,
                 attention_scale=0.12, attention_limit=None, **kwargs):
        self.vocab_size = vocab_size  # rows of the embedding tables
        # logits returned: the tokenizer's vocabulary (the head is padded to a multiple of 128 beyond it)
        self.output_vocab_size = output_vocab_size if output_vocab_size is not None else vocab_size
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.model_dim = model_dim
        self.num_value_embeds = num_value_embeds
        self.no_attention_layers = list(no_attention_layers)
        self.window_pattern = window_pattern
        self.max_window_tokens = max_window_tokens
        self.attn_block_size = attn_block_size
        self.bos_id = bos_id
        self.logit_softcap = logit_softcap
        self.attention_scale = attention_scale
        # no window reaches farther back than this many tokens (the length the model was trained on)
        self.attention_limit = attention_limit
        kwargs.setdefault("bos_token_id", bos_id)
        kwargs.setdefault("eos_token_id", bos_id)  # a document ends where the next one would begin
        kwargs.setdefault("tie_word_embeddings", False)
        super().__init__(**kwargs)

    @property
    def padded_vocab_size(self):
        return -(-self.vocab_size // 128) * 128
