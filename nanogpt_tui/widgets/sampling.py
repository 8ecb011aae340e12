"""The sampling controls shared by the chat and evaluate screens: five sliders, a seed and three presets."""

from __future__ import annotations

import random

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Input, Label

from engine.sampling_params import SamplingParams
from nanogpt_tui.widgets.slider import Slider

DEFAULTS = SamplingParams()  # the engine's defaults, which the CLI's flags share
# (id, label, minimum, maximum, default, step, big step, decimals)
SLIDERS = (
    ("temperature", "Temperature", 0.0, 2.0, DEFAULTS.temperature, 0.05, 0.25, 2),
    ("top-k", "Top-k (0 off)", 0, 500, DEFAULTS.top_k, 1, 25, 0),
    ("top-p", "Top-p", 0.0, 1.0, DEFAULTS.top_p, 0.01, 0.1, 2),
    ("max-tokens", "Max tokens", 16, 2048, DEFAULTS.max_new_tokens, 16, 128, 0),
    ("repetition", "Repetition", 1.0, 2.0, DEFAULTS.repetition_penalty, 0.01, 0.1, 2),
)
# slider values by preset; max tokens is left as the user set it
PRESETS: dict[str, dict[str, float]] = {
    "precise": {"temperature": 0.2, "top-k": 20, "top-p": 0.8, "repetition": 1.1},
    "balanced": {"temperature": 0.8, "top-k": 50, "top-p": 0.95, "repetition": 1.0},
    "creative": {"temperature": 1.1, "top-k": 200, "top-p": 1.0, "repetition": 1.0},
}
SEED_MAX = 2**31 - 1


class SamplingPanel(Vertical):
    """Reads as SamplingParams; a blank seed draws a fresh one for each reply (and says which)."""

    DEFAULT_CSS = """
    SamplingPanel { height: auto; }
    SamplingPanel .sampling-row { height: 1; margin-top: 1; }
    SamplingPanel .sampling-row > Label { width: 14; color: $text-muted; }
    SamplingPanel #seed { width: 12; }
    SamplingPanel .presets Button { min-width: 10; margin-right: 1; }
    """

    def compose(self) -> ComposeResult:
        for key, label, low, high, default, step, big, decimals in SLIDERS:
            yield Slider(label, low, high, default, step=step, big_step=big, decimals=decimals, id=key)
        with Horizontal(classes="sampling-row"):
            yield Label("Seed (blank=new)")
            yield Input("0", placeholder="random", compact=True, restrict=r"[0-9]*", max_length=10, id="seed")
        with Horizontal(classes="sampling-row presets"):
            for name in PRESETS:
                yield Button(name, compact=True, id=f"preset-{name}")

    def slider(self, key: str) -> Slider:
        return self.query_one(f"#{key}", Slider)

    def apply_preset(self, name: str) -> None:
        for key, value in PRESETS[name].items():
            self.slider(key).value = value
        self.notify(f"{name} sampling: " + ", ".join(f"{k} {v:g}" for k, v in PRESETS[name].items()), timeout=3)

    @on(Button.Pressed, ".presets Button")
    def _preset_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.apply_preset(str(event.button.id).removeprefix("preset-"))

    def values(self) -> SamplingParams:
        """The current settings; a blank seed is replaced by a random one."""
        seed_text = self.query_one("#seed", Input).value.strip()
        seed = int(seed_text) % (SEED_MAX + 1) if seed_text else random.randint(0, SEED_MAX)
        return SamplingParams(
            temperature=self.slider("temperature").value,
            top_k=int(self.slider("top-k").value),
            top_p=self.slider("top-p").value,
            max_new_tokens=int(self.slider("max-tokens").value),
            repetition_penalty=self.slider("repetition").value,
            seed=seed,
        )
