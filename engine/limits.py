"""The one numeric check: every config field and every numeric command-line option has a `Limit` here.

A value that is not finite (NaN, infinity) or outside its meaning (a negative learning rate, a
probability above 1) is refused with the field's name before anything launches: `validate(hp)`
checks each config field against `FIELD_LIMITS`, `SamplingParams.validate` checks the sampling
values against `SAMPLING_LIMITS`, and the CLI's numeric options (nanogpt_tui/commands/options.py)
and the app's forms ask `Limit.problem` of the same limits, so a value means the same thing wherever
it is typed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from engine.errors import ConfigError

SEED_MAX = 2**63 - 1  # the largest seed torch.Generator.manual_seed takes


@dataclass(frozen=True, slots=True)
class Limit:
    """An allowed range; `low_open`/`high_open` exclude the end itself. `integer` refuses fractions."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    integer: bool = False
    hint: str = ""

    def describe(self) -> str:
        """The range in words, e.g. 'a number > 0' or 'an integer in [0, 65535]'."""
        kind = "an integer" if self.integer else "a number"
        if self.low is not None and self.high is not None:
            left, right = ("(" if self.low_open else "["), (")" if self.high_open else "]")
            return f"{kind} in {left}{_num(self.low)}, {_num(self.high)}{right}"
        if self.low is not None:
            return f"{kind} {'>' if self.low_open else '>='} {_num(self.low)}"
        if self.high is not None:
            return f"{kind} {'<' if self.high_open else '<='} {_num(self.high)}"
        return kind if self.integer else "a finite number"

    def problem(self, value: float) -> str | None:
        """Why `value` is refused, or None when it is allowed."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"must be {self.describe()}, got {value!r}"
        if isinstance(value, float) and not math.isfinite(value):
            return f"must be {self.describe()}, got {value} (not a finite number)"
        if self.integer and not float(value).is_integer():
            return f"must be {self.describe()}, got {value}"
        too_low = self.low is not None and (value <= self.low if self.low_open else value < self.low)
        too_high = self.high is not None and (value >= self.high if self.high_open else value > self.high)
        if too_low or too_high:
            return f"must be {self.describe()}, got {_num(value)}"
        return None


def _num(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def positive(integer: bool = True, hint: str = "") -> Limit:
    return Limit(0, low_open=True, integer=integer, hint=hint)


def at_least(low: float, integer: bool = True, hint: str = "") -> Limit:
    return Limit(low, integer=integer, hint=hint)


def fraction(*, open_low: bool = False, open_high: bool = False, hint: str = "") -> Limit:
    return Limit(0.0, 1.0, low_open=open_low, high_open=open_high, hint=hint)


LEARNING_RATE = at_least(0.0, integer=False, hint="a learning rate is >= 0 (0 freezes those weights)")
BETA = fraction(open_high=True, hint="a decay factor such as 0.9 or 0.95")
SEED = Limit(0, SEED_MAX, integer=True)

# one entry per int/float field of engine.config's sections (a test checks none is missing);
# relations between fields (multiples, one letter per layer, ...) are checked by config.validate
FIELD_LIMITS: dict[str, Limit] = {
    "model.vocab_size": positive(),
    "model.num_layers": positive(),
    "model.num_heads": positive(),
    "model.head_dim": positive(),
    "model.model_dim": positive(),
    "model.num_value_embeds": at_least(0),
    "model.no_attention_layers": at_least(0),
    "model.max_window_tokens": positive(),
    "model.attn_block_size": positive(),
    "model.bos_id": at_least(0),
    "data.bpe_vocab_size": positive(),
    "data.val_fraction": fraction(open_low=True, open_high=True),
    "data.val_tokens": at_least(0, hint="0 evaluates the whole held-out split"),
    "optim.muon_lr": LEARNING_RATE,
    "optim.muon_momentum": BETA,
    "optim.ns_steps": Limit(1, 100, integer=True, hint="the original uses 5 Newton-Schulz steps"),
    "optim.adam_head_lr": LEARNING_RATE,
    "optim.adam_embed_lr": LEARNING_RATE,
    "optim.adam_scalar_lr": LEARNING_RATE,
    "optim.adam_beta1": BETA,
    "optim.adam_beta2": BETA,
    "optim.adam_eps": positive(integer=False, hint="a small number such as 1e-10"),
    "optim.weight_decay": at_least(0.0, integer=False),
    "train.num_iterations": positive(),
    "train.cooldown_frac": fraction(),
    "train.final_lr_frac": fraction(),
    "train.train_seq_len": positive(),
    "train.batch_size": positive(),
    "train.micro_batch_size": positive(),
    "train.val_seq_len": positive(),
    "train.time_budget_s": at_least(0.0, integer=False, hint="0 means no time limit"),
    "run.seed": SEED,
    "run.log_every": positive(),
    "run.val_every": at_least(0, hint="0 validates only at the end"),
    "run.checkpoint_every": at_least(0, hint="0 saves only at the end (and on stop)"),
    "run.sample_every": at_least(0, hint="0 samples only at the end"),
    "run.sample_tokens": at_least(0),
    "run.stop_timeout_s": positive(integer=False),
    "finetune.epochs": positive(),
    "finetune.lr": positive(integer=False),
    "finetune.weight_decay": at_least(0.0, integer=False),
    "finetune.muon_scale": positive(integer=False),
    "finetune.val_fraction": fraction(open_low=True, open_high=True),
    "finetune.max_file_mb": positive(integer=False),
}

# how tokens are picked (engine.sampling_params.SamplingParams) and the command-line options that set them
SAMPLING_LIMITS: dict[str, Limit] = {
    # beyond these every token is about equally likely (or the scores overflow float32): no meaning left
    "temperature": Limit(0.0, 100.0, hint="0 means greedy; above 2 a reply is mostly noise"),
    "top_k": at_least(0, hint="0 turns top-k filtering off"),
    "top_p": fraction(open_low=True, hint="1 turns nucleus filtering off"),
    "max_new_tokens": at_least(0),
    "seed": SEED,
    "repetition_penalty": Limit(0.01, 100.0, hint="1 = no penalty; > 1 discourages repeats"),
}

# the other numeric options of the command line
OPTION_LIMITS: dict[str, Limit] = {
    "nproc": positive(),
    "nnodes": positive(),
    "node_rank": at_least(0),
    "max_eval_tokens": at_least(0, hint="0 evaluates all the data"),
    "seq_len": at_least(2),
    "batch_size": positive(),
    "samples": at_least(0, hint="0 = no samples"),
    "shards": Limit(1, 103, integer=True),
    "val_every": at_least(0, hint="0 = no validation shard"),
    "shard_tokens": positive(),
    "workers": positive(),
    "port": Limit(0, 65535, integer=True, hint="0 picks a free port"),
    "max_batch": Limit(1, 64, integer=True, hint="1 answers requests one at a time"),
}


def check_number(name: str, value: float, limit: Limit, source: str = "") -> None:
    """Raise ConfigError "SOURCE: NAME: must be ..., got ..." when `value` is outside `limit`."""
    problem = limit.problem(value)
    if problem is not None:
        prefix = f"{source}: " if source else ""
        raise ConfigError(f"{prefix}{name}: {problem}", hint=limit.hint, key=name)
