"""Metric events folded into curves (no Textual): what the dashboard's worker keeps and snapshots."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

SPARK_CHARS = "▁▂▃▄▅▆▇█"
# EMA weight of the previous value (TensorBoard's default smoothing)
SMOOTHING = 0.9
# step times kept for the ETA: recent enough to follow a change of speed
ETA_WINDOW = 50


def decimate(count: int, max_points: int) -> list[int]:
    """Indices of at most max_points evenly spaced items of `count`, always keeping the last."""
    if count <= max_points:
        return list(range(count))
    stride = count / max_points
    indices = [int(i * stride) for i in range(max_points - 1)]
    return indices + [count - 1]


def sparkline(values: list[float] | tuple[float, ...], width: int) -> str:
    """A one-line chart of `values` (decimated to `width` characters)."""
    picked = [values[i] for i in decimate(len(values), width)]
    if not picked:
        return ""
    low, high = min(picked), max(picked)
    span = (high - low) or 1.0
    top = len(SPARK_CHARS) - 1
    return "".join(SPARK_CHARS[round((v - low) / span * top)] for v in picked)


@dataclass(frozen=True, slots=True)
class Curve:
    """One metric against steps and tokens seen; `smoothed` is the EMA of `values`."""

    steps: tuple[int, ...] = ()
    tokens: tuple[int, ...] = ()
    values: tuple[float, ...] = ()
    smoothed: tuple[float, ...] = ()


@dataclass
class _CurveBuilder:
    steps: list[int] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    smoothed: list[float] = field(default_factory=list)
    _ema: float = 0.0

    def add(self, step: int, tokens: int, value: float) -> None:
        self._ema = SMOOTHING * self._ema + (1 - SMOOTHING) * value
        # debias the EMA so the first points are not pulled towards zero
        self.smoothed.append(self._ema / (1 - SMOOTHING ** (len(self.values) + 1)))
        self.steps.append(step)
        self.tokens.append(tokens)
        self.values.append(value)

    def curve(self, max_points: int) -> Curve:
        picked = decimate(len(self.values), max_points)
        return Curve(
            steps=tuple(self.steps[i] for i in picked),
            tokens=tuple(self.tokens[i] for i in picked),
            values=tuple(self.values[i] for i in picked),
            smoothed=tuple(self.smoothed[i] for i in picked),
        )


@dataclass(frozen=True, slots=True)
class SeriesSnapshot:
    """Everything the dashboard draws, decimated; immutable so it can cross threads."""

    train: Curve
    val: Curve
    tokens_per_s: tuple[float, ...]
    step: int
    lr: float | None
    last_loss: float | None
    last_val_loss: float | None
    last_val_bpb: float | None
    last_tokens_per_s: float | None
    sample: str
    sample_step: int | None
    # mean of the recent step times, for the ETA
    step_time_ms: float | None
    # the trainer's fraction done by whichever bound (steps, time budget) ends the run
    progress: float | None = None


class RunSeries:
    """Accumulates a run's metric events; owned by one worker thread."""

    def __init__(self) -> None:
        self._train = _CurveBuilder()
        self._val = _CurveBuilder()
        self._tokens_per_s: list[float] = []
        self._step_times: deque[float] = deque(maxlen=ETA_WINDOW)
        self._latest_train: dict[str, Any] = {}
        self._latest_val: dict[str, Any] = {}
        self._sample: dict[str, Any] = {}
        self._step = 0

    def add(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            kind, step = event["kind"], event["step"]
            self._step = max(self._step, step)
            if kind == "train" and is_number(event.get("loss")):
                self._train.add(step, int(event.get("tokens", 0)), float(event["loss"]))
                self._latest_train = event
                if is_number(event.get("tokens_per_s")):
                    self._tokens_per_s.append(float(event["tokens_per_s"]))
                if is_number(event.get("step_time_ms")):
                    self._step_times.append(float(event["step_time_ms"]))
            elif kind == "val" and is_number(event.get("val_loss")):
                self._val.add(step, int(event.get("tokens", 0)), float(event["val_loss"]))
                self._latest_val = event
            elif kind == "sample" and isinstance(event.get("text"), str):
                self._sample = event

    def val_curve(self, max_points: int) -> Curve:
        return self._val.curve(max_points)

    def snapshot(self, max_points: int, spark_points: int = 60) -> SeriesSnapshot:
        rates = self._tokens_per_s
        return SeriesSnapshot(
            train=self._train.curve(max_points),
            val=self._val.curve(max_points),
            tokens_per_s=tuple(rates[i] for i in decimate(len(rates), spark_points)),
            step=self._step,
            lr=self._latest_train.get("lr"),
            last_loss=self._latest_train.get("loss"),
            last_val_loss=self._latest_val.get("val_loss"),
            last_val_bpb=self._latest_val.get("val_bpb"),
            last_tokens_per_s=rates[-1] if rates else None,
            sample=self._sample.get("text", ""),
            sample_step=self._sample.get("step"),
            step_time_ms=sum(self._step_times) / len(self._step_times) if self._step_times else None,
            progress=float(value) if is_number(value := self._latest_train.get("progress")) else None,
        )


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
