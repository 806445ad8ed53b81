"""The study CLI's options as one frozen, validated dataclass (built from argparse).

Every check here runs before anything is planned, started or written: a bad value is one
ConfigError line (exit 2). Lists (`--configs S-S,M-S`) become tuples; an empty entry or a
duplicate is an error, not silently dropped or doubled. No heavy imports: `--dry-run` and
every error path stay fast.
"""
from __future__ import annotations

import argparse
import math
import re
from dataclasses import MISSING, dataclass, field, fields

from search_spaces.errors import ConfigError
from search_spaces.grids import Grid, get_grid

# a directory name inside --storage-path: no separators, no "." / "..", nothing hidden
PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=-]*")
MAX_NAME = 100  # Ray nests trial and checkpoint names below it; file names stop at 255 bytes
MAX_SEED = 2**32 - 1  # numpy's seed range: a larger seed fails every trial at its first line
MAX_TRIALS = 5_000  # a grid larger than this is a typo (--seeds 100000), not a study
ABSURD_GPU_HOURS = 10_000.0  # a planned request above this needs --yes


@dataclass(frozen=True)
class SweepOptions:
    grid: str = "smoke"
    list_grids: bool = False
    name: str | None = None
    storage_path: str = "ray_results"
    resume: bool = False
    yes: bool = False
    trust_storage: bool = False
    # narrow or change the grid
    configs: tuple[str, ...] | None = None
    variants: tuple[str, ...] | None = None
    steps: tuple[int, ...] | None = None
    seeds: int | None = None  # replicates per cell; None: the grid's (Grid.seeds)
    init: str | None = None
    vit_position_std: float | None = None  # None: DINOv2's own init (TrialConfig.vit_position_std)
    dataset: str | None = None
    image_column: str | None = None
    frames_column: str | None = None
    text_column: str | None = None
    seed: int | None = None
    schedule: str | None = None  # None: the grid's (Grid.schedule)
    cooldown_frac: float = 0.2
    cooldown_shape: str = "linear"
    milestones: tuple[int, ...] | None = None
    deterministic: bool = False
    # planning
    dry_run: bool = False
    check_data: bool = False
    gpu_mem: float = 24.0
    gpu_name: str = "RTX 4090"
    mfu: float | None = None  # None: the measured MFU per size class (trainables/measured_mfu.py)
    format: str = "table"
    # ray
    address: str | None = None
    gpus_per_trial: float | None = None
    cpus_per_trial: float = 1.0
    max_concurrent: int = 0
    max_failures: int = 2
    keep_checkpoints: int = 2
    reuse_actors: str = "auto"
    no_fit: bool = False
    bootstrap: int = 1000
    # monitoring
    dashboard: bool = False
    dashboard_host: str = "127.0.0.1"
    plot_interval: float = 15.0
    # learning rates (trainables/learning_rates.py) and their search (sweep/lr_search.py)
    lr: float | None = None  # overrides every trial's connector rate
    lr_backbone: float | None = None
    lr_from: str | None = None
    lr_search: bool = False
    lr_grid: tuple[float, ...] | None = None  # None: each pair's current rate x 1/4, 1/2, 1, 2
    lr_seeds: int = 3
    lr_steps: int | None = None
    argv: tuple[str, ...] = ()  # the command line as given, for the "resume with:" hint
    # the grid named by `grid`, resolved once here; with it `schedule` and `seeds` are never None
    spec: Grid = field(init=False, repr=False, compare=False)

    @property
    def experiment_name(self) -> str:
        return self.name or self.grid

    @classmethod
    def from_dict(cls, values: dict) -> "SweepOptions":
        """Like TrialConfig.from_dict: an unknown key is an error, not silently dropped."""
        unknown = sorted(set(values) - {f.name for f in fields(cls) if f.init})
        if unknown:
            raise ConfigError(f"unknown sweep option(s): {', '.join(unknown)}")
        return cls(**values)

    @classmethod
    def from_namespace(cls, ns: argparse.Namespace, argv: list[str]) -> "SweepOptions":
        """Every argparse destination becomes a field (a flag without one fails here)."""
        raw = vars(ns)
        values = dict(raw)
        values["configs"] = parse_list("--configs", raw.get("configs"))
        values["variants"] = parse_list("--variants", raw.get("variants"))
        values["steps"] = parse_list("--steps", raw.get("steps"), int)
        values["milestones"] = parse_list("--milestones", raw.get("milestones"), int)
        values["lr_grid"] = parse_list("--lr-grid", raw.get("lr_grid"), float)
        return cls.from_dict({**values, "argv": tuple(argv)})

    def __post_init__(self) -> None:
        grid = get_grid(self.grid)  # an unknown grid: one line naming the valid ones
        object.__setattr__(self, "spec", grid)
        if self.schedule is None:
            object.__setattr__(self, "schedule", grid.schedule)
        if self.name is not None and (not PLAIN_NAME.fullmatch(self.name) or self.name in (".", "..")):
            raise ConfigError(f"--name {self.name!r} must be a plain name (letters, digits, . _ - + =; "
                              f"no '/', not '..'): it is a directory inside --storage-path")
        if self.name is not None and len(self.name) > MAX_NAME:
            raise ConfigError(f"--name is {len(self.name)} characters long; at most {MAX_NAME}")
        for flag, value in (("--address", self.address), ("--dashboard-host", self.dashboard_host),
                            ("--storage-path", self.storage_path), ("--name", self.name)):
            if value is not None and not value.strip():
                raise ConfigError(f"{flag} is empty")
        _at_least("--seeds", self.seeds, 1)
        _at_least("--seed", self.seed, 0)
        _at_least("--max-concurrent", self.max_concurrent, 0)
        _at_least("--max-failures", self.max_failures, 0)
        _at_least("--keep-checkpoints", self.keep_checkpoints, 1)
        _at_least("--bootstrap", self.bootstrap, 0)
        _at_least("--lr-seeds", self.lr_seeds, 1)
        _at_least("--lr-steps", self.lr_steps, 1)
        _finite("--gpu-mem", self.gpu_mem, positive=True)
        _finite("--cpus-per-trial", self.cpus_per_trial, positive=True)
        _finite("--gpus-per-trial", self.gpus_per_trial)
        _finite("--plot-interval", self.plot_interval)
        _finite("--lr", self.lr, positive=True)
        _finite("--lr-backbone", self.lr_backbone, positive=True)
        for rate in self.lr_grid or ():
            _finite("--lr-grid", rate, positive=True)
        _finite("--mfu", self.mfu, positive=True)
        _finite("--cooldown-frac", self.cooldown_frac, positive=True)
        _finite("--vit-position-std", self.vit_position_std, positive=True)
        if self.mfu is not None and self.mfu > 1:
            raise ConfigError(f"--mfu must lie in (0, 1], got {self.mfu:g}")
        if self.cooldown_frac >= 1:
            raise ConfigError(f"--cooldown-frac must lie in (0, 1), got {self.cooldown_frac:g}")
        if self.lr_from and (self.lr is not None and self.lr_backbone is not None):
            raise ConfigError("--lr-from has no effect with both --lr and --lr-backbone given: drop one")
        bad = [v for v in self.steps or () if v <= 0]
        if bad:
            raise ConfigError(f"steps must be positive, got {bad[0]}")
        if self.seeds is None:
            object.__setattr__(self, "seeds", grid.seeds)
        self._check_counts(grid, self.seeds)

    def _check_counts(self, grid: Grid, seeds: int) -> None:
        """Seeds a trial can use, and a grid of a size someone meant."""
        if self.seed is not None and self.seed + seeds - 1 > MAX_SEED:
            raise ConfigError(f"--seed {self.seed}: seeds run from --seed to --seed + --seeds - 1 and must stay "
                              f"<= {MAX_SEED} (2^32 - 1)")
        n = seeds * len(self.variants or grid.variants) * sum(
            len(self.steps or grid.steps_for(c)) for c in self.configs or grid.configs)
        if n > MAX_TRIALS:
            raise ConfigError(f"this grid has {n:,} trials ({seeds:,} seeds); more than {MAX_TRIALS:,} is refused "
                              f"(a typo in --seeds or --steps?)")


def defaults() -> dict:
    """Each option's default, as the CLI's parser uses it (set_defaults): written once, above."""
    return {f.name: f.default for f in fields(SweepOptions) if f.init and f.default is not MISSING}


def parse_list(flag: str, value: str | None, cast=str) -> tuple | None:
    """'a,b' -> ('a', 'b'); None when the flag is absent. Empty entries and duplicates are errors."""
    if value is None:
        return None
    items = [v.strip() for v in value.split(",")]
    if not all(items):
        raise ConfigError(f"{flag} {value!r} has an empty entry (give comma-separated values, e.g. a,b)")
    try:
        out = tuple(cast(v) for v in items)
    except ValueError:
        raise ConfigError(f"{flag}: cannot parse {value!r} as a comma-separated list") from None
    dupes = sorted({str(v) for v in out if out.count(v) > 1})
    if dupes:
        raise ConfigError(f"{flag} lists {', '.join(dupes)} more than once")
    return out


def _at_least(flag: str, value: int | None, low: int) -> None:
    if value is not None and value < low:
        raise ConfigError(f"{flag} must be >= {low}, got {value}")


def _finite(flag: str, value: float | None, positive: bool = False) -> None:
    if value is None:
        return
    if not math.isfinite(value):
        raise ConfigError(f"{flag} must be a finite number, got {value}")
    if positive and value <= 0:
        raise ConfigError(f"{flag} must be positive, got {value:g}")
    if not positive and value < 0:
        raise ConfigError(f"{flag} must be >= 0, got {value:g}")
