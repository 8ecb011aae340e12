"""The GPT: parameters compatible with the original, the masking rule, both attention backends, losses and training."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from engine.config import ModelConfig
from engine.model import GPT, Rotary, create_model
from engine.model.attention import build_mask, dense_mask, document_ids, resolve_backend
from engine.model.norms import apply_rotary
from tests.helpers import assert_close_scaled

# 4 layers, layer 2 without attention; 8-token blocks, long window 4 blocks (32 tokens), short 2
TINY = ModelConfig(vocab_size=64, num_layers=4, num_heads=2, head_dim=16, model_dim=32, num_value_embeds=1,
                   no_attention_layers=(2,), window_pattern="LSSL", max_window_tokens=32, attn_block_size=8,
                   bos_id=0)


def randomized_model(config: ModelConfig = TINY, seed: int = 0) -> GPT:
    """A model whose zero-initialised projections are random too, so every path affects the logits."""
    torch.manual_seed(seed)
    model = GPT(config, max_seq_len=64)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("c_proj.weight") or name == "lm_head.weight":
                param.normal_(std=0.3)
    return model


def multi_document_tokens(batch_size: int = 2, seq_len: int = 64, seed: int = 0) -> torch.Tensor:
    """(B, T) random tokens with several BOS (id 0) boundaries at different places in each row."""
    tokens = torch.randint(1, TINY.vocab_size, (batch_size, seq_len), generator=torch.Generator().manual_seed(seed))
    tokens[0, [p for p in (5, 30, 41) if p < seq_len]] = TINY.bos_id
    tokens[batch_size - 1, [p for p in (0, 17, 50) if p < seq_len]] = TINY.bos_id
    return tokens


def _original_state_dict_shapes() -> dict[str, tuple[int, ...]]:
    vocab, dim, padded_vocab = 50257, 768, 50304
    expected: dict[str, tuple[int, ...]] = {
        "embed.weight": (vocab, dim),
        "value_embeds.0.weight": (vocab, dim),
        "value_embeds.1.weight": (vocab, dim),
        "value_embeds.2.weight": (vocab, dim),
        "lm_head.weight": (padded_vocab, dim),
        "skip_weights": (6,),
    }
    for layer in range(12):
        expected[f"blocks.{layer}.lambdas"] = (2,)
        expected[f"blocks.{layer}.mlp.c_fc.weight"] = (3072, dim)
        expected[f"blocks.{layer}.mlp.c_proj.weight"] = (dim, 3072)
        if layer != 7:  # the original drops attention in layer 7
            expected[f"blocks.{layer}.attn.qkv_w"] = (3, 768, dim)
            expected[f"blocks.{layer}.attn.lambdas"] = (2,)
            expected[f"blocks.{layer}.attn.c_proj.weight"] = (dim, 768)
    return expected


def test_speedrun_state_dict_matches_the_original() -> None:
    with torch.device("meta"):
        model = create_model()
    shapes = {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}
    expected = _original_state_dict_shapes()
    assert set(shapes) == set(expected), (
        f"missing {sorted(set(expected) - set(shapes))}, unexpected {sorted(set(shapes) - set(expected))}"
    )
    wrong = {name: (shapes[name], expected[name]) for name in expected if shapes[name] != expected[name]}
    assert not wrong, f"shapes differ from the original's (got, expected): {wrong}"
    assert model.rotary.cos.is_meta, "a meta-device model must not allocate rotary tables"


def test_initialisation_follows_the_original() -> None:
    model = GPT(TINY)
    block = model.blocks[0]
    assert block.attn is not None and model.blocks[2].attn is None
    assert block.lambdas.tolist() == [1.0, 0.0] and block.attn.lambdas.tolist() == [0.5, 0.5]
    for zero in (block.attn.c_proj.weight, block.mlp.c_proj.weight, model.lm_head.weight):
        assert not zero.any(), "output projections and lm_head start at zero"
    assert model.skip_weights.tolist() == [1.0, 1.0]
    bound = 3**0.5 * 0.5 * TINY.model_dim**-0.5
    for weight in (block.attn.qkv_w, block.mlp.c_fc.weight):
        assert weight.abs().max() <= bound and weight.abs().max() > 0.9 * bound, "uniform(-bound, bound) init"
    assert model.num_params() == sum(p.numel() for p in model.parameters())


def test_value_embeddings_are_used_012_012() -> None:
    config = dataclasses.replace(TINY, num_layers=8, window_pattern="LSSLLSSL", num_value_embeds=3)
    model = GPT(config)
    tokens = multi_document_tokens()
    ves = model._layer_value_embeds(tokens)
    expected = [0, 1, 2, None, None, 0, 1, 2]
    got = [None if ve is None else next(i for i, e in enumerate(model.value_embeds) if torch.equal(ve, e(tokens)))
           for ve in ves]
    assert got == expected, f"value embedding per layer should be {expected}, got {got}"


def test_mask_rule_on_a_hand_checked_example() -> None:
    tokens = torch.tensor([[5, 0, 5, 5, 5, 0, 5, 5]])  # BOS (0) at 1 and 5: documents 0 | 1 1 1 1 | 2 2 2
    docs = document_ids(tokens, bos_id=0)
    assert docs.tolist() == [[0, 1, 1, 1, 1, 2, 2, 2]]
    # blocks of 2 tokens, window of 2 blocks: q sees k iff k <= q, same document, q//2 - k//2 < 2
    expected_rows = [
        "10000000",
        "01000000",
        "01100000",
        "01110000",
        "00111000",  # q=4 (block 2) no longer sees k=1 (block 0)
        "00000100",  # q=5 starts document 2
        "00000110",
        "00000111",
    ]
    expected = torch.tensor([[c == "1" for c in row] for row in expected_rows])
    mask = build_mask("sdpa", docs, window_blocks=2, block_size=2)
    assert mask.shape == (1, 1, 8, 8)
    assert torch.equal(mask[0, 0], expected), f"mask differs from the rule:\n{mask[0, 0].int()}"
    # a window of one block: only keys in the query's own block
    own_block = build_mask("sdpa", docs, window_blocks=torch.tensor(1), block_size=2)[0, 0]
    assert own_block.tolist()[7] == [False, False, False, False, False, False, True, True]


def test_dense_mask_on_absolute_positions_matches_the_full_mask() -> None:
    docs = document_ids(multi_document_tokens(), bos_id=0)  # (2, 64)
    full = build_mask("sdpa", docs, window_blocks=3, block_size=8)
    positions = torch.arange(64)
    part = dense_mask(positions[40:50], positions[16:50], docs[:, 40:50], docs[:, 16:50], 3, 8)
    assert torch.equal(part, full[:, :, 40:50, 16:50])


def test_resolve_backend() -> None:
    assert resolve_backend("auto", torch.device("cpu")) == "sdpa"
    assert resolve_backend("auto", torch.device("cuda")) == "flex"
    assert resolve_backend("flex", torch.device("cpu")) == "flex"
    with pytest.raises(ValueError, match="unknown attention backend"):
        resolve_backend("xformers", torch.device("cpu"))


# flex_attention runs eagerly on CPU (unfused, forward only) and says so; that is all this test needs
@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
@pytest.mark.parametrize("window", [None, 2, torch.tensor(1)])
def test_sdpa_and_flex_backends_agree(window: int | torch.Tensor | None) -> None:
    model = randomized_model()
    tokens = multi_document_tokens()
    with torch.no_grad():
        model.attention_backend = "sdpa"
        sdpa_logits = model(tokens, sliding_window_num_blocks=window)
        model.attention_backend = "flex"
        flex_logits = model(tokens, sliding_window_num_blocks=window)
    assert sdpa_logits.shape == (2, 64, TINY.padded_vocab_size)
    assert_close_scaled(flex_logits, sdpa_logits, rel=1e-4)


def test_windows_and_documents_change_the_logits() -> None:
    model = randomized_model()
    tokens = multi_document_tokens()
    with torch.no_grad():
        full = model(tokens)
        short = model(tokens, sliding_window_num_blocks=1)
        # row 1 alone must give the same logits as inside a batch: rows are independent
        alone = model(tokens[1])
    assert not torch.allclose(full[:, 40:], short[:, 40:]), "the sliding window should matter beyond 32 tokens"
    torch.testing.assert_close(full[:, :8], short[:, :8])  # inside the first block every window sees the same
    assert_close_scaled(alone[0], full[1], rel=1e-5)


def test_rotary_tables_grow_for_longer_sequences() -> None:
    model = randomized_model()
    tokens = multi_document_tokens(seq_len=128)
    with torch.no_grad():
        grown = model(tokens)
        reference = GPT(TINY, max_seq_len=128)
        reference.load_state_dict(model.state_dict())
        torch.testing.assert_close(grown, reference(tokens))
    assert model.rotary.cos.size(0) >= 128


def test_rotary_equals_the_full_width_rotation_bit_for_bit() -> None:
    # the original rotates all head_dim/2 pairs, half of them by angle 0; skipping those must not change a bit
    rotary = Rotary(head_dim=16, max_seq_len=32)
    x = torch.randn(2, 32, 3, 16)
    cos, sin = rotary.cos[None, :, None, :], rotary.sin[None, :, None, :]  # full width (1, T, 1, 8)
    x1, x2 = x.chunk(2, dim=-1)
    reference = torch.cat((x1 * cos + x2 * sin, x1 * (-sin) + x2 * cos), dim=-1)
    assert torch.equal(apply_rotary(x, *rotary(0, 32)), reference)
    assert torch.equal(apply_rotary(x[:, 5:9], *rotary(5, 4)), reference[:, 5:9])  # a cached chunk's positions


def test_loss_mask_mean_and_sum() -> None:
    model = randomized_model()
    tokens = multi_document_tokens(seq_len=33)
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    loss_mask = targets > 30
    with torch.no_grad():
        logits = model(inputs)
        per_token = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none")
        kept = per_token[loss_mask.flatten()]
        torch.testing.assert_close(model(inputs, targets, loss_mask=loss_mask), kept.mean())
        torch.testing.assert_close(model(inputs, targets, reduction="sum", loss_mask=loss_mask), kept.sum())
        torch.testing.assert_close(model(inputs, targets), per_token.mean())
        torch.testing.assert_close(model(inputs, targets, reduction="sum"), per_token.sum())
        everything = torch.ones_like(targets, dtype=torch.bool)
        torch.testing.assert_close(model(inputs, targets, loss_mask=everything), per_token.mean())
        nothing = model(inputs, targets, loss_mask=torch.zeros_like(everything))
    assert nothing.item() == 0.0, "an all-False loss_mask must give 0, not NaN"
    with pytest.raises(ValueError, match="reduction"):
        model(inputs, targets, reduction="none")


def test_one_dimensional_input_is_a_batch_of_one() -> None:
    model = randomized_model()
    tokens = multi_document_tokens(batch_size=1, seq_len=33)[0]
    with torch.no_grad():
        logits = model(tokens[:-1])
        assert logits.shape == (1, 32, TINY.padded_vocab_size)
        torch.testing.assert_close(model(tokens[:-1], tokens[1:]), model(tokens[None, :-1], tokens[None, 1:]))


def test_bf16_weights_run_close_to_fp32() -> None:
    model = randomized_model()
    tokens = multi_document_tokens()
    bf16_model = randomized_model().bfloat16()
    with torch.no_grad():
        reference = model(tokens)
        logits = bf16_model(tokens)
    assert logits.dtype == torch.float32, "logits are returned in fp32 whatever the weights"
    assert bf16_model.rotary.cos.dtype == torch.float32, "rotary tables must stay fp32 after a cast"
    assert (logits - reference).abs().max() < 0.2, "bf16 logits should be within bf16 rounding of fp32"


def test_loss_decreases_on_a_repeating_sequence() -> None:
    torch.manual_seed(0)
    model = GPT(TINY, max_seq_len=64)
    tokens = torch.arange(1, 9).repeat(9)[None]  # (1, 72): 1..8 repeated, one document
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-2)
    losses = []
    for _ in range(30):
        optimizer.zero_grad(set_to_none=True)
        loss = model(tokens[:, :-1], tokens[:, 1:])
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.25 * losses[0], (
        f"loss should fall on a memorisable sequence: {losses[0]:.3f} -> {losses[-1]:.3f}"
    )
