"""The model in its CUDA configuration (bf16, FlexAttention, FP8 head) compiled on CPU: one graph,
forward and backward, no recompiles as the window grows, the same loss as the SDPA path."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
import torch.nn.attention.flex_attention as flex_module
from torch import Tensor

from engine.config import ModelConfig
from engine.model import GPT
from engine.train.device import FastPaths, prepare_model_for_device, window_argument

# 32-token attention blocks over 256 tokens: two FlexAttention tiles, windows of 1 to 8 blocks
CONFIG = ModelConfig(vocab_size=64, num_layers=4, num_heads=2, head_dim=16, model_dim=32, num_value_embeds=1,
                     no_attention_layers=(2,), window_pattern="LSSL", max_window_tokens=256, attn_block_size=32,
                     bos_id=0)
CUDA_PATHS = FastPaths("flex", "bfloat16", compile=True, fp8_head=True, fused_adam=False)


@pytest.fixture(autouse=True)
def flex_backward_on_cpu(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Lift only FlexAttention's refusal of CPU backward (a device check); its dense CPU path is differentiable."""
    refuse = flex_module._validate_device

    def validate(query: Tensor, key: Tensor, value: Tensor) -> None:
        if query.device.type != "cpu":
            refuse(query, key, value)

    monkeypatch.setattr(flex_module, "_validate_device", validate)
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _model(attention: str) -> GPT:
    torch.manual_seed(0)
    model = GPT(CONFIG, max_seq_len=256)
    with torch.no_grad():
        model.lm_head.weight.normal_(std=0.05)
        for name, param in model.named_parameters():
            if name.endswith("c_proj.weight"):
                param.normal_(std=0.1)  # non-zero, so attention reaches the loss
    paths = FastPaths(attention, CUDA_PATHS.dtype, compile=attention == "flex", fp8_head=True, fused_adam=False)
    return prepare_model_for_device(model, paths).train()


def _batch() -> tuple[Tensor, Tensor]:
    tokens = torch.randint(1, 64, (2, 256), generator=torch.Generator().manual_seed(0))
    tokens[0, [0, 100, 170]] = 0  # three documents in row 0, one in row 1
    tokens[1, 0] = 0
    return tokens, tokens.roll(-1, 1)


def test_the_cuda_configuration_traces_as_one_graph() -> None:
    inputs, targets = _batch()
    explained = torch._dynamo.explain(_model("flex"))(inputs, targets, window_argument(2, CUDA_PATHS, inputs.device))
    reasons = [str(reason.reason) for reason in explained.break_reasons]
    assert (explained.graph_count, explained.graph_break_count) == (1, 0), reasons


@pytest.mark.slow
def test_the_cuda_configuration_compiles_forward_and_backward_and_matches_sdpa() -> None:
    graphs: list[int] = []
    aot_eager = torch._dynamo.lookup_backend("aot_eager")

    def counting_aot_eager(graph_module: torch.fx.GraphModule, example_inputs: list) -> object:
        graphs.append(len(graph_module.graph.nodes))
        return aot_eager(graph_module, example_inputs)

    flex, sdpa = _model("flex"), _model("sdpa")
    compiled = torch.compile(flex, backend=counting_aot_eager, fullgraph=True, dynamic=False)
    inputs, targets = _batch()
    for blocks in (1, 3, 8):
        loss = compiled(inputs, targets, window_argument(blocks, CUDA_PATHS, inputs.device))
        loss.backward()
        reference = sdpa(inputs, targets, blocks)
        reference.backward()
        torch.testing.assert_close(loss.detach(), reference.detach(), rtol=1e-2, atol=1e-2)
        for (name, got), want in zip(flex.named_parameters(), sdpa.parameters()):
            assert got.grad is not None and want.grad is not None, f"{name} got no gradient"
            # bf16 activations: a few percent between two attention kernels' summation orders
            # (up to 9 % on the last block's two mixing scalars), far below what a wrong mask gives
            error = float((got.grad.float() - want.grad.float()).norm() / want.grad.float().norm())
            assert error < 0.15, f"{name}: gradient {error:.1%} off the SDPA path's at window {blocks}"
        flex.zero_grad(set_to_none=True), sdpa.zero_grad(set_to_none=True)
    assert len(graphs) == 1, f"{len(graphs)} graphs: the growing window recompiled the model"


needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.gpu
@needs_gpu
def test_on_the_gpu_the_compiled_fast_paths_train_like_the_sdpa_path() -> None:
    from engine.config import RunConfig
    from engine.model.attention import flex_block_mask
    from engine.train.device import choose_fast_paths, compile_for_training, detect_capabilities

    device = torch.device("cuda")
    paths = choose_fast_paths(detect_capabilities(device), RunConfig())
    flex = prepare_model_for_device(_model("sdpa").to(device), paths)  # inductor, flex, FP8 head where the GPU has it
    sdpa = _model("sdpa").to(device)
    sdpa.attention_backend, sdpa.use_fp8_head = "sdpa", paths.fp8_head
    compiled = compile_for_training(flex, paths)
    inputs, targets = (t.to(device) for t in _batch())
    for blocks in (1, 3, 8):
        loss = compiled(inputs, targets, window_argument(blocks, paths, device))
        loss.backward()
        reference = sdpa(inputs, targets, blocks)
        torch.testing.assert_close(loss.detach().float(), reference.detach().float(), rtol=3e-2, atol=3e-2)
        assert all(p.grad is None or torch.isfinite(p.grad).all() for p in flex.parameters())
        flex.zero_grad(set_to_none=True)
        # the same tile decisions on the GPU as on the CPU
        docs = (inputs == CONFIG.bos_id).cumsum(-1)
        on_gpu, on_cpu = flex_block_mask(docs, blocks, 32), flex_block_mask(docs.cpu(), blocks, 32)
        assert torch.equal(on_gpu.kv_num_blocks.cpu(), on_cpu.kv_num_blocks)
        assert torch.equal(on_gpu.full_kv_num_blocks.cpu(), on_cpu.full_kv_num_blocks)
