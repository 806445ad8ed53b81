"""One trial of the study as a validated, frozen dataclass.

Ray Tune passes each trial a plain dict (the grid's param_space); `TrialConfig.from_dict` turns
it back into this class, refusing unknown keys and impossible values, so a typo in a grid
fails at construction instead of silently training the wrong thing. The same dict is saved
with every checkpoint, and a resume compares it against the checkpoint's copy.
"""
from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, fields

from search_spaces.sizes import VARIANTS, ConfigError, LLMSize, ViTSize, parse_config_id


FAULT_KINDS = ("raise", "kill", "nan", "oom")


@dataclass(frozen=True)
class TrialConfig:
    variant: str  # "foveated" | "baseline"
    config: str  # "<LLM>-<ViT>", e.g. "S-B"
    steps: int  # optimizer steps of this trial
    milestones: tuple[int, ...] = ()  # steps at which to evaluate + checkpoint (always incl. `steps`)
    global_batch: int = 16
    micro_batch: int = 16  # per forward/backward; global_batch / micro_batch = accumulation
    # optimisation (identical for both variants: the fairness rules)
    lr: float = 1e-3  # connector / new parameters
    lr_backbone: float = 1e-4  # LLM and ViT
    warmup_steps: int = -1  # -1: 5% of steps (at least 1)
    schedule: str = "cosine"
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    seed: int = 0
    # model
    init: str = "random"  # "random" | "pretrained"
    llm_path: str | None = None  # local directory or hub id overriding the registry's hub id
    vit_path: str | None = None
    query_dim: int = 384
    visual_scale: float = 0.14
    # data
    dataset: str = "synthetic"  # "synthetic", a hub id, a save_to_disk directory or parquet glob
    dataset_seed: int = 0
    dataset_size: int = 2048  # synthetic only: number of training clips
    eval_size: int = 256
    frames: int = 8
    image_size: int = 224
    text_len: int = 32  # caption tokens (incl. BOS/EOS), padded/truncated to this
    image_column: str | None = None
    frames_column: str | None = None
    text_column: str = "caption"
    # engine
    precision: str = "bf16"  # "bf16" | "fp32"
    offload: bool = False  # ZeRO-2 optimizer state on the CPU
    grad_checkpointing: bool = False
    checkpoint_every: int = 0  # 0: only at milestones
    deterministic: bool = False
    # bookkeeping
    tag: str = ""
    # fault injection for the reliability suite: "" or "<kind>@<step>" with kind in FAULT_KINDS
    fault: str = ""

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ConfigError(f"unknown variant {self.variant!r}: choose from {', '.join(VARIANTS)}")
        parse_config_id(self.config)
        if self.steps <= 0:
            raise ConfigError(f"steps must be positive, got {self.steps}")
        ms = tuple(sorted(set(int(m) for m in self.milestones) | {self.steps}))
        if ms[0] <= 0 or ms[-1] > self.steps:
            raise ConfigError(f"milestones must lie in 1..{self.steps}, got {list(self.milestones)}")
        object.__setattr__(self, "milestones", ms)
        for name in ("global_batch", "micro_batch", "frames", "image_size", "text_len", "eval_size"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.global_batch % self.micro_batch:
            raise ConfigError(
                f"global_batch {self.global_batch} is not divisible by micro_batch {self.micro_batch}"
            )
        if self.init not in ("random", "pretrained"):
            raise ConfigError(f"init must be 'random' or 'pretrained', got {self.init!r}")
        if self.precision not in ("bf16", "fp32"):
            raise ConfigError(f"precision must be 'bf16' or 'fp32', got {self.precision!r}")
        if self.schedule not in ("cosine", "constant"):
            raise ConfigError(f"schedule must be 'cosine' or 'constant', got {self.schedule!r}")
        _, vit = parse_config_id(self.config)
        if self.image_size % vit.patch:
            raise ConfigError(f"image_size {self.image_size} is not a multiple of the patch size {vit.patch}")
        if (self.image_size // vit.patch) % 4:
            raise ConfigError(
                f"image_size {self.image_size} gives a {self.image_size // vit.patch}-patch grid; "
                "the baseline pools it to 4x4, so it must be a multiple of 4 patches"
            )
        if self.lr <= 0 or self.lr_backbone < 0:
            raise ConfigError("learning rates must be positive")
        if self.fault and not re.fullmatch(rf"({'|'.join(FAULT_KINDS)})@\d+", self.fault):
            raise ConfigError(f"fault must look like 'nan@12' with kind in {FAULT_KINDS}, got {self.fault!r}")

    # -- derived -----------------------------------------------------------------------
    @property
    def grad_accum(self) -> int:
        return self.global_batch // self.micro_batch

    @property
    def sizes(self) -> tuple[LLMSize, ViTSize]:
        return parse_config_id(self.config)

    @property
    def warmup(self) -> int:
        return self.warmup_steps if self.warmup_steps >= 0 else max(1, self.steps // 20)

    @property
    def fault_at(self) -> tuple[str, int] | None:
        if not self.fault:
            return None
        kind, step = self.fault.split("@")
        return kind, int(step)

    @property
    def trial_name(self) -> str:
        tag = f"_{self.tag}" if self.tag else ""
        return f"{self.variant}_{self.config}_{self.steps}{tag}"

    # -- (de)serialisation -------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: dict) -> "TrialConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown trial config key(s): {', '.join(unknown)}")
        missing = [n for n in ("variant", "config", "steps") if n not in d]
        if missing:
            raise ConfigError(f"trial config lacks required key(s): {', '.join(missing)}")
        d = dict(d)
        if "milestones" in d:
            d["milestones"] = tuple(d["milestones"])
        return cls(**d)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["milestones"] = list(self.milestones)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def replace(self, **changes) -> "TrialConfig":
        return dataclasses.replace(self, **changes)
