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

from search_spaces.errors import ConfigError
from search_spaces.sizes import VARIANTS, LLMSize, ViTSize, parse_config_id


FAULT_KINDS = ("raise", "kill", "nan", "oom")


def wsd_fork_step(steps: int, cooldown_frac: float) -> int:
    """Where a WSD run of `steps` steps starts its decay; the one rounding rule every part uses."""
    return round(steps * (1.0 - cooldown_frac))


@dataclass(frozen=True)
class TrialConfig:
    variant: str  # one of sizes.VARIANTS, e.g. "foveated" | "baseline"
    config: str  # "<LLM>-<ViT>", e.g. "S-B"
    steps: int  # optimizer steps of this trial
    milestones: tuple[int, ...] = ()  # steps at which to evaluate + checkpoint (always incl. `steps`)
    global_batch: int = 16
    micro_batch: int = 16  # per forward/backward; global_batch / micro_batch = accumulation
    # optimisation (identical for both variants: the fairness rules)
    lr: float = 1e-3  # connector / new parameters
    lr_backbone: float = 1e-4  # LLM and ViT
    warmup_steps: int = -1  # -1: 5% of steps (at least 1)
    schedule: str = "cosine"  # "cosine" | "constant" | "wsd" (warmup-stable-decay)
    min_lr_ratio: float = 0.1
    # WSD: one "stable" trial per (variant, config) runs warmup + constant LR to the
    # last fork point; one "cooldown" trial per step count forks from its checkpoint at
    # fork_step = round(steps * (1 - cooldown_frac)) and decays to min_lr_ratio by `steps`.
    # wsd_phase "" with schedule "wsd" is a standalone run with its decay at the end.
    wsd_phase: str = ""  # "" | "stable" | "cooldown"
    cooldown_frac: float = 0.2
    cooldown_shape: str = "linear"  # "linear" | "1-sqrt"
    fork_from: str = ""  # cooldown: the stable trial's checkpoint directory at fork_step
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    seed: int = 0  # model init + data order (a replicate); the data set itself is dataset_seed
    # model
    init: str = "random"  # "random" | "pretrained"
    llm_path: str | None = None  # local directory or hub id overriding the registry's hub id
    vit_path: str | None = None
    query_dim: int = 384
    visual_scale: float = 0.14
    # random init only: draw the ViT's learned position embeddings with this std instead of
    # DINOv2's 0.02, at which a fresh ViT's patch features barely say where they are
    # (docs/ladder.md: what this does to a one-token view). None: DINOv2's own init.
    vit_position_std: float | None = None
    # a control run that cannot see: every visual token is zeroed before the LLM, so its
    # shuffled-frames loss equals its loss exactly (a blind run on purpose, for the vision check)
    zero_visual_tokens: bool = False
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
    # torch.compile each ViT / LLM block (trainables/models/base.py compile_blocks); a speed
    # setting with the same numerics (tests/test_models.py), off by default until a GPU run
    # shows it pays for its compile time
    compile: bool = False
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
        if self.schedule not in ("cosine", "constant", "wsd"):
            raise ConfigError(f"schedule must be 'cosine', 'constant' or 'wsd', got {self.schedule!r}")
        self._check_wsd()
        _, vit = parse_config_id(self.config)
        if self.image_size % vit.patch:
            raise ConfigError(f"image_size {self.image_size} is not a multiple of the patch size {vit.patch}")
        if (self.image_size // vit.patch) % 4:
            raise ConfigError(
                f"image_size {self.image_size} gives a {self.image_size // vit.patch}-patch grid; "
                "the baseline pools it to 4x4, so it must be a multiple of 4 patches"
            )
        if not (0 <= self.seed < 2**32 and 0 <= self.dataset_seed < 2**32):  # numpy's seed range
            raise ConfigError(f"seeds must lie in [0, 2^32), got seed {self.seed}, dataset_seed {self.dataset_seed}")
        if self.vit_position_std is not None:
            if not 0 < self.vit_position_std < float("inf"):
                raise ConfigError(f"vit_position_std must be a positive number, got {self.vit_position_std}")
            if self.init != "random":
                raise ConfigError("vit_position_std re-draws a random-init ViT's position embeddings; "
                                  "init=pretrained keeps the checkpoint's")
        if self.lr <= 0 or self.lr_backbone < 0:
            raise ConfigError("learning rates must be positive")
        if self.fault and not re.fullmatch(rf"({'|'.join(FAULT_KINDS)})@\d+", self.fault):
            raise ConfigError(f"fault must look like 'nan@12' with kind in {FAULT_KINDS}, got {self.fault!r}")

    def _check_wsd(self) -> None:
        if self.wsd_phase not in ("", "stable", "cooldown"):
            raise ConfigError(f"wsd_phase must be '', 'stable' or 'cooldown', got {self.wsd_phase!r}")
        if self.wsd_phase and self.schedule != "wsd":
            raise ConfigError(f"wsd_phase {self.wsd_phase!r} needs schedule 'wsd', got {self.schedule!r}")
        if self.fork_from and self.wsd_phase != "cooldown":
            raise ConfigError("fork_from is only for a WSD cooldown trial (wsd_phase 'cooldown')")
        if not 0 < self.cooldown_frac < 1:
            raise ConfigError(f"cooldown_frac must lie in (0, 1), got {self.cooldown_frac}")
        if self.cooldown_shape not in ("linear", "1-sqrt"):
            raise ConfigError(f"cooldown_shape must be 'linear' or '1-sqrt', got {self.cooldown_shape!r}")
        if self.schedule != "wsd":
            return
        # the stable trial and its cooldowns must share one LR curve up to each fork, so the
        # warmup cannot default to a fraction of each trial's own step count
        if self.wsd_phase and self.warmup_steps < 0:
            raise ConfigError("WSD stable/cooldown trials need an explicit warmup_steps (shared by the family)")
        if self.wsd_phase == "stable":
            if self.warmup > self.milestones[0]:
                raise ConfigError(f"warmup {self.warmup} ends after the first fork point {self.milestones[0]}")
            return
        f = self.fork_step
        if not 1 <= f < self.steps or self.warmup > f:
            raise ConfigError(f"{self.trial_name}: cooldown_frac {self.cooldown_frac} puts the fork at step {f}; "
                              f"it must lie in [warmup {self.warmup}, steps {self.steps})")

    # -- derived -----------------------------------------------------------------------
    @property
    def fork_step(self) -> int:
        """WSD: the step at which this trial's decay starts (a cooldown trial's first step is fork_step + 1)."""
        return wsd_fork_step(self.steps, self.cooldown_frac)

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
        phase = f"_{self.wsd_phase}" if self.wsd_phase else ""
        return f"{self.variant}_{self.config}_{self.steps}{phase}_s{self.seed}{tag}"

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
