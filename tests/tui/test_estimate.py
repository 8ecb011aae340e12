"""engine.estimate: parameter counts equal the real model's, and the batch must split over the ranks."""

from __future__ import annotations

import dataclasses

import pytest

from engine.config import PRESETS, preset
from engine.errors import ConfigError
from engine.estimate import count_params, estimate, training_seconds


@pytest.mark.parametrize("name", ["shakespeare-cpu", "speedrun-124m"])
def test_count_equals_the_real_model(name: str) -> None:
    model_module = pytest.importorskip("engine.model", reason="engine.model is not importable yet")
    torch = pytest.importorskip("torch")
    config = preset(name).model
    with torch.device("meta"):
        model = model_module.GPT(config)
    real = sum(p.numel() for p in model.parameters())
    assert count_params(config) == real, f"estimate counts {count_params(config)} parameters, GPT has {real}"


def test_original_model_count_is_known() -> None:
    # 124M without embeddings; the original's state_dict shapes give 275,598,388 in all
    assert count_params(preset("speedrun-124m").model) == 275_598_388


def test_every_preset_estimates() -> None:
    for name in PRESETS:
        est = estimate(preset(name))
        assert est.num_params > 0 and est.flops_per_step > 0 and est.activation_bytes_per_rank > 0, name


def test_tokens_and_accumulation() -> None:
    hp = preset("speedrun-124m")
    est = estimate(hp, nproc=8)
    assert est.tokens_per_step == 8 * 48 * 1024
    assert est.accum_steps == 1
    assert estimate(hp, nproc=2).accum_steps == 4


def test_batch_that_does_not_split_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="train.batch_size"):
        estimate(preset("speedrun-124m"), nproc=3)


def test_time_budget_caps_the_time() -> None:
    hp = preset("shakespeare-cpu")
    est = estimate(hp)
    assert training_seconds(est, hp, flops_per_s=1.0) == hp.train.time_budget_s
    unlimited = dataclasses.replace(hp, train=dataclasses.replace(hp.train, time_budget_s=0.0))
    fast, slow = training_seconds(est, unlimited, 1e12), training_seconds(est, unlimited, 1e11)
    assert slow == pytest.approx(10 * fast), "time must scale inversely with the measured throughput"
