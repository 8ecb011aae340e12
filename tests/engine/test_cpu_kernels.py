"""The CPU kernel switch: each kernel dispatches for itself, and the whole model trains the same either way."""

from __future__ import annotations

import pytest
import torch

from engine.model import cpu_kernels, norms, relu2_mlp, softcap_loss
from engine.config import ModelConfig
from engine.model import GPT
from engine.model.cpu_kernels import cpu_kernels as kernels_switched
from tests.helpers import assert_close_to_float64

CONFIG = ModelConfig(vocab_size=300, num_layers=2, num_heads=2, head_dim=16, model_dim=32, num_value_embeds=1,
                     window_pattern="LS", max_window_tokens=32, attn_block_size=8, bos_id=0)
# the autograd Functions behind the four hand-written paths
KERNELS = {"rms_norm": norms._RMSNorm, "qk_norm_rotary": norms._QKNormRotary,
           "relu2_mlp": relu2_mlp._Relu2MLP, "softcap_loss": softcap_loss._SoftcapCrossEntropy}


@pytest.fixture
def kernel_calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Counts each hand-written kernel's calls, so a test can tell which path the model took."""
    calls = dict.fromkeys(KERNELS, 0)
    for name, function in KERNELS.items():
        original = function.apply

        def counted(*args, _name=name, _original=original):
            calls[_name] += 1
            return _original(*args)

        monkeypatch.setattr(function, "apply", counted)
    return calls


def _model(dtype: torch.dtype) -> GPT:
    torch.manual_seed(0)
    model = GPT(CONFIG, max_seq_len=64)
    with torch.no_grad():
        for param in model.parameters():  # zero-initialised projections and heads would hide a wrong gradient
            if param.dim() >= 2:
                param.normal_(std=0.3)
    return model.to(dtype)  # cast after drawing, so both dtypes hold the same weights


def _loss_and_grads(model: GPT, tokens: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad()
    loss = model(tokens[:, :-1], tokens[:, 1:])
    loss.backward()
    return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters()}


def test_whole_model_loss_and_every_gradient_equal_with_kernels_on_and_off(kernel_calls: dict[str, int]) -> None:
    tokens = torch.randint(1, CONFIG.vocab_size, (3, 41), generator=torch.Generator().manual_seed(1))
    tokens[1, 17] = CONFIG.bos_id  # a document boundary inside a row
    reference_loss, reference_grads = _loss_and_grads(_model(torch.float64), tokens)  # float64: plain maths
    assert sum(kernel_calls.values()) == 0, "float64 must take the plain path"
    results = {}
    for on in (True, False):
        with kernels_switched(on):
            before = dict(kernel_calls)
            results[on] = _loss_and_grads(_model(torch.float32), tokens)
            used = {name for name in KERNELS if kernel_calls[name] > before[name]}
        assert used == (set(KERNELS) if on else set()), f"kernels {'on' if on else 'off'} used {sorted(used)}"
    for on, (loss, grads) in results.items():
        label = "kernels on" if on else "kernels off"
        assert_close_to_float64(loss, reference_loss, f"{label}: loss")
        assert grads.keys() == reference_grads.keys()
        for name, grad in grads.items():
            assert_close_to_float64(grad, reference_grads[name], f"{label}: {name}", rel=1e-4)


def test_kernels_are_for_training_only(kernel_calls: dict[str, int]) -> None:
    model = _model(torch.float32)
    tokens = torch.randint(1, CONFIG.vocab_size, (2, 17))
    with torch.no_grad():
        model(tokens[:, :-1], tokens[:, 1:])
        model(tokens)
    assert sum(kernel_calls.values()) == 0, f"evaluation took a training kernel: {kernel_calls}"


@pytest.mark.parametrize(("value", "on"), [("0", False), ("off", False), ("False", False), ("1", True), ("", True)])
def test_environment_switch(monkeypatch: pytest.MonkeyPatch, value: str, on: bool) -> None:
    monkeypatch.setenv(cpu_kernels.ENV_VAR, value)
    assert cpu_kernels.enabled() is on
    with kernels_switched(not on):  # the in-process switch wins over the environment, and is restored
        assert cpu_kernels.enabled() is (not on)
    assert cpu_kernels.enabled() is on
