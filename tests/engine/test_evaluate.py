"""Evaluation: hand-checked bits per byte, data sources (held-out split, shards, text), progress, samples."""

from __future__ import annotations

import math
import threading
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from engine.data.shards import write_shard
from engine.data.tokenizer import BPETokenizer, train_bpe
from engine.errors import DataError
from engine.inference.evaluate import (
    EvalData,
    default_eval_seq_len,
    eval_data,
    evaluate_batches,
    evaluate_model,
    evaluate_tokens,
    generate_samples,
    loss_and_bpb,
)
from engine.inference.generate import Generator, SamplingParams
from tests.engine.test_generate import TEXT, one_thread, tiny_model  # noqa: F401 (fixture)


@pytest.fixture(scope="module")
def tokenizer() -> BPETokenizer:
    return train_bpe([TEXT], 300)


class UniformModel(torch.nn.Module):
    """Predicts every one of its `vocab` tokens with equal probability: ln(vocab) nats per token."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.vocab = vocab

    def forward(self, inputs: torch.Tensor, targets: torch.Tensor, window: object = None,
                reduction: str = "mean", loss_mask: torch.Tensor | None = None) -> torch.Tensor:
        logits = torch.zeros(*inputs.shape, self.vocab)  # (B, T, V)
        if loss_mask is not None:
            logits, targets = logits[loss_mask], targets[loss_mask]
        return F.cross_entropy(logits.reshape(-1, self.vocab), targets.reshape(-1), reduction=reduction)


def test_bits_per_byte_by_hand() -> None:
    # 4 equally likely tokens = 2 bits per token; tokens 1..3 are 2 bytes long, token 0 (special) 0 bytes
    token_bytes = torch.tensor([0.0, 2.0, 2.0, 2.0], dtype=torch.float64)
    tokens = torch.tensor([0, 1, 2, 3, 1, 2, 0, 3, 1])
    result = evaluate_tokens(UniformModel(4), tokens, seq_len=4, token_bytes=token_bytes)
    # 8 targets x 2 bits = 16 bits over 7 targets x 2 bytes = 14 bytes (the target 0 has no bytes)
    assert (result.tokens, result.bytes) == (8, 14)
    assert result.loss == pytest.approx(math.log(4))
    assert result.bpb == pytest.approx(16 / 14)
    assert loss_and_bpb(8 * math.log(2), 8, 8).bpb == pytest.approx(1.0), "1 bit per token and byte"
    assert math.isnan(loss_and_bpb(1.0, 1, 0).bpb)


def test_a_loss_mask_counts_only_its_targets_and_their_bytes() -> None:
    # the fine-tune loop's batches: only the masked (assistant) targets count, in tokens and in bytes
    token_bytes = torch.tensor([0.0, 1.0, 2.0, 3.0], dtype=torch.float64)
    inputs = torch.tensor([[0, 1, 2], [3, 2, 1]])
    targets = torch.tensor([[1, 2, 3], [2, 1, 0]])
    mask = torch.tensor([[False, True, True], [True, False, False]])
    model = UniformModel(4).train()
    result = evaluate_batches(model, [(inputs, targets, mask)], token_bytes)
    assert (result.tokens, result.bytes) == (3, 2 + 3 + 2)
    assert result.loss == pytest.approx(math.log(4))
    assert model.training, "the model is put back in training mode"


def test_data_sources(tokenizer: BPETokenizer, tmp_path: Path) -> None:
    text_file = tmp_path / "notes.txt"
    text_file.write_text("the quick brown fox\r\njumps", encoding="utf-8")
    data = eval_data(str(text_file), tokenizer, None)
    assert data.tokens.tolist() == [tokenizer.bos_id, *tokenizer.encode("the quick brown fox\njumps")]
    shard = tmp_path / "shards" / "val_000000.bin"
    write_shard(shard, [0, 5, 6, 7, 0, 8])
    write_shard(tmp_path / "shards" / "val_000001.bin", [0, 9])
    assert eval_data(str(shard), tokenizer, None).tokens.tolist() == [0, 5, 6, 7, 0, 8]
    assert eval_data(str(tmp_path / "shards"), tokenizer, None).tokens.tolist() == [0, 5, 6, 7, 0, 8, 0, 9]
    assert eval_data(str(tmp_path / "shards" / "val_*.bin"), tokenizer, None).tokens.numel() == 8
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("All the world's a stage. " * 200 + "HELD OUT TAIL", encoding="utf-8")
    held_out = eval_data(None, tokenizer, {"data": {"corpus": str(corpus), "val_fraction": 0.1}})
    assert "held-out 10%" in held_out.description
    assert tokenizer.decode(held_out.tokens.tolist()[1:]).endswith("HELD OUT TAIL")
    assert held_out.tokens.numel() < len(tokenizer.encode(corpus.read_text())) / 5
    hp = {"data": {"corpus": "shards", "val_files": str(tmp_path / "shards" / "*.bin")}}
    assert eval_data(None, tokenizer, hp).tokens.numel() == 8


def test_data_errors(tokenizer: BPETokenizer, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="--data|does not say"):
        eval_data(None, tokenizer, None)
    with pytest.raises(DataError, match="does not exist"):
        eval_data(str(tmp_path / "missing.txt"), tokenizer, None)
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("café".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        eval_data(str(latin1), tokenizer, None)
    model = tiny_model(tokenizer.vocab_size)
    with pytest.raises(DataError, match="beyond the model's vocabulary"):
        evaluate_model(model, tokenizer, EvalData(torch.tensor([0, 1, 5000]), "foreign"), seq_len=8)


def test_evaluate_model_reports_progress(tokenizer: BPETokenizer, tmp_path: Path) -> None:
    model = tiny_model(tokenizer.vocab_size)
    text_file = tmp_path / "eval.txt"
    text_file.write_text(TEXT[:2000], encoding="utf-8")
    data = eval_data(str(text_file), tokenizer, None)
    seen: list[float] = []
    report = evaluate_model(model, tokenizer, data, seq_len=32, batch_size=2, progress=seen.append)
    assert seen and seen[-1] == 1.0 and seen == sorted(seen)
    assert math.isfinite(report.loss) and report.tokens == (data.tokens.numel() - 1) // 32 * 32
    expected_bpb = report.loss * report.tokens / (math.log(2) * report.bytes)
    assert report.bpb == pytest.approx(expected_bpb)
    assert model.training is False
    cancel = threading.Event()

    def cancel_after_first(fraction: float) -> None:
        cancel.set()

    partial = evaluate_model(model, tokenizer, data, seq_len=32, batch_size=2, progress=cancel_after_first, cancel=cancel)
    assert partial.cancelled and partial.tokens == 2 * 32 < report.tokens and not report.cancelled
    assert default_eval_seq_len({"train": {"val_seq_len": 256}}, 4096) == 256
    assert default_eval_seq_len(None, 1 << 20) == 2048, "CPU evaluation rows are capped"


def test_samples_from_prompts(tokenizer: BPETokenizer) -> None:
    generator = Generator(tiny_model(tokenizer.vocab_size), tokenizer, max_context=64)
    params = SamplingParams(temperature=0, max_new_tokens=6)
    samples = generate_samples(generator, ["hello", "the lazy dog"], params)
    assert [s.prompt for s in samples] == ["hello", "the lazy dog"]
    for sample in samples:
        assert sample.text == generator.complete(sample.prompt, params)
        assert sample.finish_reason in ("length", "stop_token")
