"""WSD (warmup-stable-decay) families: one run per (variant, config) gives every step count.

For a (variant, config) with step counts S_1 < ... < S_k and cooldown fraction f, a family is

  * one **stable** trial: warmup + constant LR up to the last fork point F_k, evaluating and
    checkpointing at every fork point F_i = round(S_i (1 - f));
  * one **cooldown** trial per S_i: starts from the stable trial's checkpoint at F_i and decays
    the LR to min_lr_ratio by S_i. Its end evaluation is the (config, S_i) point of the fits.

Training compute per family: S_k (1 - f) + f sum(S_i) steps, against sum(S_i) for cosine (one
trial per S_i from scratch). Pure data + arithmetic here; sweep/wsd.py schedules the trials.
"""
from __future__ import annotations

from dataclasses import dataclass

from search_spaces.errors import ConfigError
from search_spaces.trial import TrialConfig

# The fields a cooldown may differ in from its stable trial (the rest must match exactly, or
# the LR curve, data order or model before the fork would not be the one it continues).
FORK_FREE_FIELDS = ("steps", "milestones", "wsd_phase", "fork_from", "tag", "fault")


@dataclass(frozen=True)
class WsdFamily:
    stable: TrialConfig
    cooldowns: tuple[TrialConfig, ...]  # ascending steps; fork_from still empty

    @property
    def key(self) -> str:
        return f"{self.stable.variant}_{self.stable.config}_s{self.stable.seed}"

    @property
    def fork_steps(self) -> tuple[int, ...]:
        return tuple(c.fork_step for c in self.cooldowns)

    def trials(self) -> list[TrialConfig]:
        return [self.stable, *self.cooldowns]


def shared_warmup(trials: list[TrialConfig]) -> int:
    """One warmup for the family: the grid's explicit value, else the cosine default (5%) of the
    shortest step count - it must end before the first fork point, which the longer counts'
    5% would not (e.g. 150 warmup steps > the fork at 80 of a 100-step run)."""
    explicit = {t.warmup_steps for t in trials if t.warmup_steps >= 0}
    if len(explicit) > 1:
        raise ConfigError(f"WSD: the trials of one family have different warmup_steps {sorted(explicit)}")
    return explicit.pop() if explicit else min(t.warmup for t in trials)


def wsd_families(trials: list[TrialConfig], cooldown_frac: float = 0.2,
                 cooldown_shape: str = "linear") -> list[WsdFamily]:
    """Group cosine-style grid trials by (variant, config, seed) into WSD families (order kept):
    each seed replicate is its own stable run with its own cooldowns."""
    groups: dict[tuple[str, str, int], list[TrialConfig]] = {}
    for t in trials:
        groups.setdefault((t.variant, t.config, t.seed), []).append(t)
    families = []
    for (variant, config, _), members in groups.items():
        members = sorted(members, key=lambda t: t.steps)
        if len({t.steps for t in members}) != len(members):
            raise ConfigError(f"WSD: {variant} {config} lists a step count twice")
        warmup = shared_warmup(members)
        common = {"schedule": "wsd", "cooldown_frac": cooldown_frac, "cooldown_shape": cooldown_shape,
                  "warmup_steps": warmup}
        cooldowns = tuple(t.replace(wsd_phase="cooldown", **common) for t in members)
        forks = sorted({c.fork_step for c in cooldowns})
        if len(forks) != len(cooldowns):
            raise ConfigError(f"WSD: step counts {[t.steps for t in members]} of {variant} {config} share a fork "
                              f"point at cooldown fraction {cooldown_frac}")
        # The stable trial evaluates only at the fork points (its own grid milestones would be
        # points of a run that never decays); the cooldowns keep any grid milestones after their fork.
        stable = members[-1].replace(steps=forks[-1], milestones=tuple(forks), wsd_phase="stable", **common)
        cooldowns = tuple(c.replace(milestones=tuple(m for m in c.milestones if m > c.fork_step))
                          for c in cooldowns)
        families.append(WsdFamily(stable, cooldowns))
    return families


def trained_steps(cfg: TrialConfig) -> int:
    """Optimizer steps a trial itself runs (a cooldown starts at its fork, not at 0)."""
    return cfg.steps - cfg.fork_step if cfg.wsd_phase == "cooldown" else cfg.steps


def schedule_comparison(cosine_rows: list[dict], wsd_rows: list[dict], cooldown_frac: float) -> dict:
    """Total training FLOPs of the grid run cosine (one trial per step count from scratch) vs as
    WSD families, from the planner's dry-run rows of each (planner.dry_run_rows)."""
    cosine = sum(r["total_flops"] for r in cosine_rows)
    wsd = sum(r["total_flops"] for r in wsd_rows)
    return {"cosine_flops": cosine, "wsd_flops": wsd, "cooldown_frac": cooldown_frac,
            "wsd_over_cosine": wsd / cosine if cosine else float("nan")}


def comparison_line(comp: dict) -> str:
    return (f"cosine: {comp['cosine_flops']:.3g} FLOPs, wsd (cooldown {comp['cooldown_frac']:.0%}): "
            f"{comp['wsd_flops']:.3g} FLOPs = {comp['wsd_over_cosine']:.1%}")
