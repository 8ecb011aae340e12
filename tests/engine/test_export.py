"""Exports: safetensors back into a run, transformers loads the hf folder with equal logits, the original's .pt."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from torch import nn

from engine.checkpoint import ORIGINAL_PREFIX
from engine.config import ModelConfig
from engine.errors import ConfigError
from engine.export import export_checkpoint
from engine.export.original import original_refusals
from engine.importer import import_checkpoint, load_model
from engine.inference.generate import Generator, SamplingParams
from tests.engine.test_generate import one_thread  # noqa: F401 (fixture)
from tests.cli.test_import_cli import offline_gpt2  # noqa: F401 (fixture)
from tests.engine.test_import import original_model, write_original
from tests.tui.model_fixtures import save_tiny_checkpoint

PROMPT = "ROMEO:\nBut soft, what light through yonder"
# pickle streams start with the PROTO opcode; torch.save files are zip archives
PICKLE_MAGIC, ZIP_MAGIC = b"\x80", b"PK\x03\x04"


def assert_no_pickles(folder: Path) -> None:
    for path in folder.iterdir():
        head = path.read_bytes()[:4]
        assert not head.startswith(PICKLE_MAGIC) and head != ZIP_MAGIC, f"{path.name} is a pickle or torch archive"
        assert path.suffix not in (".pt", ".pth", ".bin", ".pkl"), f"{path.name} has a pickle file's suffix"


def generator_tokenizer(loaded):
    from engine.data.tokenizer import tokenizer_from_payload

    return tokenizer_from_payload(loaded.tokenizer_payload)


def hf_model(folder: Path):
    transformers = pytest.importorskip("transformers")
    return transformers.AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True).eval()


@pytest.fixture(scope="module")
def our_export(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("export")
    checkpoint = save_tiny_checkpoint(root / "runs")
    result = export_checkpoint(checkpoint, root / "hf", "hf")
    return checkpoint, result.out_dir


def test_hf_export_loads_in_transformers_with_our_logits_and_greedy_output(our_export: tuple[Path, Path]) -> None:
    checkpoint, folder = our_export
    assert_no_pickles(folder)
    transformers = pytest.importorskip("transformers")
    model = hf_model(folder)
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    loaded = load_model(checkpoint)
    # transformers' greedy search takes the raw argmax; ours by default also keeps the text valid UTF-8
    generator = Generator(loaded.model, generator_tokenizer(loaded), device="cpu", utf8_constraint=False)
    ids = tokenizer(PROMPT, return_tensors="pt").input_ids  # (1, T)
    assert ids[0].tolist() == generator.encode_prompt(PROMPT), "the HF tokenizer must add BOS and encode as ours"
    with torch.no_grad():
        ours = generator.model(ids)[..., :generator.vocab_size]  # (1, T, V)
        theirs = model(ids).logits
    assert theirs.shape == ours.shape
    torch.testing.assert_close(theirs, ours, rtol=0, atol=1e-4)
    greedy = SamplingParams(temperature=0, max_new_tokens=24)
    mine = [chunk.token_id for chunk in generator.generate(ids[0].tolist(), greedy) if chunk.token_id is not None]
    out = model.generate(ids, max_new_tokens=24, do_sample=False)
    assert out[0, ids.size(1):].tolist() == mine, "transformers' greedy generate differs from ours"
    assert tokenizer.decode(out[0, ids.size(1):]) == generator.tokenizer.decode(mine)


def test_hf_batched_generate_with_left_padding_equals_each_row_alone(our_export: tuple[Path, Path]) -> None:
    _, folder = our_export
    transformers = pytest.importorskip("transformers")
    model = hf_model(folder)
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    prompts = [PROMPT, "JULIET:"]
    batch = tokenizer(prompts, return_tensors="pt", padding=True)
    together = model.generate(**batch, max_new_tokens=8, do_sample=False)[:, batch.input_ids.size(1):]
    for row, prompt in enumerate(prompts):
        alone_ids = tokenizer(prompt, return_tensors="pt").input_ids
        alone = model.generate(alone_ids, max_new_tokens=8, do_sample=False)[0, alone_ids.size(1):]
        assert together[row, :alone.numel()].tolist() == alone.tolist(), f"row {row} changed by padding"


def test_hf_windows_are_capped_at_the_trained_length_as_ours(tmp_path: Path) -> None:
    checkpoint = save_tiny_checkpoint(tmp_path / "runs", overrides=["train.train_seq_len=32"])
    loaded = load_model(checkpoint)
    assert loaded.model.attention_limit == 32, "the engine caps attention at the trained length"
    folder = export_checkpoint(checkpoint, tmp_path / "hf", "hf").out_dir
    tokens = torch.randint(8, loaded.config.vocab_size, (1, 70))
    tokens[0, 0] = loaded.config.bos_id
    with torch.no_grad():
        ours = loaded.model(tokens)[..., :generator_tokenizer(loaded).vocab_size]
        theirs = hf_model(folder)(tokens).logits
    torch.testing.assert_close(theirs, ours, rtol=0, atol=1e-4)


def test_imported_original_checkpoint_exports_with_equal_logits_and_its_dtypes(tmp_path: Path) -> None:
    model = original_model()  # 128-dim heads, bf16 embeddings as the speedrun saves them
    source = write_original(tmp_path / "logs" / "run" / "state_step004000.pt", model)
    run = import_checkpoint(source, "original")
    stored = torch.load(run.checkpoint, weights_only=True)["model"]
    assert stored["embed.weight"].dtype == torch.bfloat16, "the import widened bf16 embeddings to fp32"
    assert stored["blocks.0.mlp.c_fc.weight"].dtype == torch.float32
    folder = export_checkpoint(run.checkpoint, tmp_path / "hf", "hf").out_dir
    assert_no_pickles(folder)
    from safetensors import safe_open

    with safe_open(folder / "model.safetensors", "pt") as weights:
        assert weights.get_tensor("value_embeds.0.weight").dtype == torch.bfloat16
    tokens = torch.tensor([[63, 5, 9, 17, 2, 63, 40, 41, 3, 8, 60, 1]])
    with torch.no_grad():
        ours = model(tokens)[..., :64]
        theirs = hf_model(folder)(tokens).logits
    torch.testing.assert_close(theirs, ours, rtol=0, atol=1e-4)


def test_safetensors_export_imports_back_as_the_same_model(our_export: tuple[Path, Path], tmp_path: Path) -> None:
    checkpoint, _ = our_export
    folder = export_checkpoint(checkpoint, tmp_path / "st", "safetensors").out_dir
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors", "tokenizer.json"]
    assert_no_pickles(folder)
    result = import_checkpoint(folder, "back")
    before, after = load_model(checkpoint), load_model(result.checkpoint)
    assert after.config == before.config and after.hyperparameters == before.hyperparameters
    assert after.step == before.step
    assert after.tokenizer_payload == before.tokenizer_payload, "the tokenizer changed on the way out and back"
    tokens = torch.tensor([[0, 57, 54, 52, 313, 269, 311]])
    with torch.no_grad():
        torch.testing.assert_close(after.model(tokens), before.model(tokens), rtol=0, atol=0)
    with pytest.raises(ConfigError, match="already exists"):
        export_checkpoint(checkpoint, folder, "safetensors")


class OriginalShapes(nn.Module):
    """The original's model.py module names and shapes as ARCHITECTURE.md documents them (weights only, no maths)."""

    def __init__(self, vocab: int, layers: int, heads: int, dim: int) -> None:
        super().__init__()
        inner, padded = heads * 128, -(-vocab // 128) * 128
        self.embed = nn.Embedding(vocab, dim)
        self.value_embeds = nn.ModuleList(nn.Embedding(vocab, dim) for _ in range(3))
        self.blocks = nn.ModuleList()
        for layer in range(layers):
            block = nn.Module()
            block.lambdas = nn.Parameter(torch.empty(2))
            if layer != 7:
                block.attn = nn.Module()
                block.attn.qkv_w = nn.Parameter(torch.empty(3, inner, dim))
                block.attn.lambdas = nn.Parameter(torch.empty(2))
                block.attn.c_proj = nn.Linear(inner, dim, bias=False)
            block.mlp = nn.Module()
            block.mlp.c_fc = nn.Linear(dim, 4 * dim, bias=False)
            block.mlp.c_proj = nn.Linear(4 * dim, dim, bias=False)
            self.blocks.append(block)
        self.lm_head = nn.Linear(dim, padded, bias=False)
        self.skip_weights = nn.Parameter(torch.empty(layers // 2))


# the smallest shape the original can build: 12 layers, one 128-dim head, GPT-2's vocabulary
ORIGINAL_SMALL = ModelConfig(vocab_size=50257, num_layers=12, num_heads=1, head_dim=128, model_dim=128)


@pytest.mark.slow
def test_original_export_loads_into_the_originals_module_layout(tmp_path: Path) -> None:
    torch.manual_seed(0)
    from engine.model import GPT

    model = GPT(ORIGINAL_SMALL, max_seq_len=256).eval()
    with torch.no_grad():
        model.lm_head.weight.normal_(std=0.3)
        for embedding in (model.embed, *model.value_embeds):
            embedding.weight.copy_(embedding.weight.bfloat16().float())
    source = write_original(tmp_path / "logs" / "a" / "state_step000500.pt", model, step=500)
    result = export_checkpoint(source, tmp_path / "out", "original")
    assert result.files == ["state_step000500.pt"]
    data = torch.load(result.out_dir / result.files[0], weights_only=True)  # as the original's load_checkpoint does
    assert set(data) == {"step", "code", "model", "optimizers"} and data["step"] == 500
    assert all(key.startswith(ORIGINAL_PREFIX) for key in data["model"])
    assert data["model"]["_orig_mod.embed.weight"].dtype == torch.bfloat16, "dtypes of the source are kept"
    layout = OriginalShapes(vocab=50257, layers=12, heads=1, dim=128)
    layout.load_state_dict({k.removeprefix(ORIGINAL_PREFIX): v for k, v in data["model"].items()}, strict=True)
    tokens = torch.tensor([[50256, 5, 9, 17, 2, 300, 40]])
    with torch.no_grad():
        torch.testing.assert_close(load_model(result.out_dir / result.files[0]).model(tokens), model(tokens),
                                   rtol=0, atol=0)


def test_original_export_refuses_other_shapes_with_every_reason(our_export: tuple[Path, Path], tmp_path: Path) -> None:
    checkpoint, _ = our_export
    with pytest.raises(ConfigError, match="cannot express") as caught:
        export_checkpoint(checkpoint, tmp_path / "orig", "original")
    message = caught.value.message
    for reason in ("12 layers", "128-dimensional", "3 value embeddings", "layer 7", "50256"):
        assert reason in message, f"the refusal does not say {reason!r}: {message}"
    assert not (tmp_path / "orig").exists(), "a refused export left a folder behind"
    assert original_refusals(ModelConfig()) == [], "the original's own 124M shape must be exportable"
    wide = dataclasses.replace(ModelConfig(), model_dim=1024)
    assert any("model_dim" in reason for reason in original_refusals(wide))


def test_gpt2_models_export_their_tokenizer_converted_from_tiktoken(tmp_path: Path, offline_gpt2) -> None:
    transformers = pytest.importorskip("transformers")
    from engine.model import GPT
    from tests.engine.test_import import ORIGINAL_TINY

    torch.manual_seed(2)
    model = GPT(dataclasses.replace(ORIGINAL_TINY, vocab_size=258, bos_id=257))
    source = write_original(tmp_path / "logs" / "r" / "state_step000010.pt", model, step=10)
    result = export_checkpoint(source, tmp_path / "hf", "hf")
    assert "tokenizer.json" in result.files and result.notes == []
    tokenizer = transformers.AutoTokenizer.from_pretrained(result.out_dir)
    text = "the thin path: théâtre ✓\nthrough"
    assert tokenizer(text).input_ids == [257, *offline_gpt2.encode(text)], "ids differ from tiktoken's (+ BOS)"
    assert tokenizer.decode(offline_gpt2.encode(text)) == text


def test_tiktoken_conversion_reproduces_a_bpe_with_many_merges() -> None:
    """Our trained BPE's merges as tiktoken ranks, converted back: the same ids for any text."""
    import tiktoken

    from engine.data.tokenizer import GPT2_EOT, SPLIT_PATTERN
    from engine.export.tiktoken_json import tokenizer_json
    from tests.tui.model_fixtures import tiny_tokenizer

    ours = tiny_tokenizer()  # ids 0..7 are special; the rest are bytes, then merges in training order
    ranks = {ours.decode_bytes([index]): index for index in range(8, ours.vocab_size)}
    encoding = tiktoken.Encoding(name="from-bpe", pat_str=SPLIT_PATTERN, mergeable_ranks=ranks,
                                 special_tokens={GPT2_EOT: ours.vocab_size})
    from tokenizers import Tokenizer

    converted = Tokenizer.from_str(tokenizer_json(encoding, GPT2_EOT))
    text = "ROMEO:\nBut soft, what light through yonder window breaks? Romeo, wherefore art thou 42 ✓"
    assert converted.encode(text).ids == [ours.vocab_size, *ours.encode(text)]
    assert encoding.encode_ordinary(text) == ours.encode(text), "the ranks themselves must encode as the BPE"
