"""The study's named grids, as data: which configs, variants and step counts, and the shared
training settings. `expand` turns a grid (optionally narrowed) into validated TrialConfigs
(pure data: the memory planner, trainables/planner.py `plan_grid`, is applied by the CLI
afterwards); sweep/launch.py `param_space` turns those into the Ray Tune search space.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from search_spaces.errors import ConfigError
from search_spaces.sizes import GRID_VARIANTS, REAL_CONFIGS, VARIANTS, parse_config_id
from search_spaces.trial import TrialConfig

# the step counts of the original experiment plan's phases
PLAN_STEPS = (100, 300, 1000, 3000)

# Shared by every phase trial, both variants (the fairness rules): same data, batch,
# optimizer, schedule, seeds, visual scale. 8 frames x 224 px, 64 caption tokens as in the plan.
PHASE_SETTINGS = dict(
    frames=8, image_size=224, text_len=64, global_batch=32, lr=1e-4, lr_backbone=2e-5,
    precision="bf16", init="pretrained", dataset="synthetic", dataset_size=20000, eval_size=512,
)

# Tiny models on 2 CPU cores: 4 frames x 56 px (4x4 patches), one global batch of 16.
# Random-init backbones train at the connector's learning rate; the rates per (variant,
# config) come from the grid's searched table (Grid.lr_table); these (the searched foveated
# T1-T1 rate) anchor the size rule for a trial the table does not cover. 8 text tokens: a synthetic caption is at most 4 words + BOS + EOS.
SMOKE_SETTINGS = dict(
    frames=4, image_size=56, text_len=8, global_batch=16, micro_batch=16, lr=5e-4, lr_backbone=5e-4,
    precision="fp32", init="random", dataset="synthetic", dataset_size=2048, eval_size=256,
    query_dim=32, warmup_steps=10,
)


# The offline model ladder: the graded synthetic task (graded sub-tasks and difficulty, a known
# floor; docs/ladder.md shows what each arm learns when), 4 sizes from 95K to 1.3M parameters, step counts over 8x, every arm, 3 seeds.
# Step counts per size put the sizes on shared compute budgets (IsoFLOP needs >= 3 sizes per
# budget): budget k is T0-T0 at 100 x 2^k steps, and a size runs ~100 x 2^k x r steps (rounded,
# keeping an 8x span), r its training FLOPs per step relative to T0-T0's (trainables/flops.py;
# geometric mean over the three arms, which differ by <= 14%). T0 runs budgets 0-3, T1 1-4,
# T2 2-5, T3 4-7: budgets 2, 3 and 4 hold three sizes each (tests/test_sweep.py checks it with
# the FLOPs function and the fits' own buckets).
LADDER_STEPS = {
    "T0-T0": (100, 200, 400, 800),
    "T1-T1": (107, 214, 428, 857),
    "T2-T2": (75, 150, 300, 600),
    "T3-T3": (111, 223, 445, 891),
}
# Fresh clips for every sample (20,000 > 891 steps x 16), so the eval loss measures learning,
# not memorisation; 384 eval clips put an evaluation's standard error near 1% of the loss.
LADDER_SETTINGS = {**SMOKE_SETTINGS, "dataset": "synthetic-graded", "dataset_size": 20000, "eval_size": 384}


@dataclass(frozen=True)
class Grid:
    name: str
    description: str
    configs: tuple[str, ...]
    steps: tuple[int, ...]
    settings: dict = field(default_factory=dict)
    variants: tuple[str, ...] = GRID_VARIANTS
    plan_batches: bool = True  # micro-batch / offload / checkpointing from the GPU planner (plan_grid)
    # replicates per (variant, config, steps) cell the CLI runs by default (--seeds overrides):
    # seeds seed .. seed+K-1 drive model init and data order; the data set (dataset_seed) is shared
    seeds: int = 1
    # the CLI's default --schedule for this grid. The smoke grid uses WSD: one stable run per
    # (variant, config, seed) serves all three step counts (66% of cosine's compute), which
    # keeps the offline study inside its 10-minute budget on 2 CPU cores.
    schedule: str = "cosine"
    # Learning rates per (variant, config), trainables/learning_rates.py: a table searched for
    # this grid (a file in trainables/lr_tables/), else the size rule anchored at `lr_anchor`,
    # whose rates are the settings' lr / lr_backbone. lr_search_steps: the horizon of this
    # grid's --lr-search runs (None: its largest step count).
    lr_table: str | None = None
    lr_anchor: str = "S-S"
    lr_search_steps: int | None = None
    # per-config step counts where a config's differ from `steps` (the ladder: sizes meet on
    # shared compute budgets, so IsoFLOP finds >= 3 sizes per budget)
    steps_by_config: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        stray = set(self.steps_by_config) - set(self.configs)
        if stray:  # a typo would silently fall back to `steps`
            raise ValueError(f"grid {self.name}: steps_by_config names configs it does not run: {sorted(stray)}")

    def steps_for(self, config: str) -> tuple[int, ...]:
        return self.steps_by_config.get(config, self.steps)


GRIDS: dict[str, Grid] = {
    # smoke steps 120/240/480: at 150/300/600 the study took 7.5-9.3 min on one 2-core box
    # (its speed varies), too close to its 10-minute budget; both arms still see at 480 steps
    "smoke": Grid("smoke", "offline CPU check: 3 tiny sizes x 2 variants x 3 step counts x 2 seeds",
                  ("T1-T1", "T1-T2", "T2-T2"), (120, 240, 480), SMOKE_SETTINGS, plan_batches=False, seeds=2,
                  schedule="wsd", lr_table="smoke.json", lr_anchor="T1-T1"),
    "ladder": Grid("ladder", "offline model ladder: 4 tiny sizes x 3 arms x 4 step counts (per size) x 3 seeds, "
                   "graded task", tuple(LADDER_STEPS), LADDER_STEPS["T0-T0"], LADDER_SETTINGS, plan_batches=False,
                   variants=VARIANTS, seeds=3, schedule="wsd", lr_table="ladder.json", lr_anchor="T1-T1",
                   lr_search_steps=400, steps_by_config=LADDER_STEPS),
    # phase grids: a short search (300 steps) per (variant, config) before a study's 100-3K steps
    "phase1": Grid("phase1", "core comparison at S-S (135M + dinov2-small)", ("S-S",), PLAN_STEPS, PHASE_SETTINGS,
                   lr_search_steps=300),
    "phase2": Grid("phase2", "LLM size scaling: M-S (360M + dinov2-small)", ("M-S",), PLAN_STEPS, PHASE_SETTINGS,
                   lr_search_steps=300),
    "phase3": Grid("phase3", "vision encoder scaling: S-B (135M + dinov2-base)", ("S-B",), PLAN_STEPS, PHASE_SETTINGS,
                   lr_search_steps=300),
    "phase4": Grid("phase4", "full matrix: 9 configs x 2 variants x 4 step counts", REAL_CONFIGS, PLAN_STEPS,
                   PHASE_SETTINGS, lr_search_steps=300),
}


def unknown_grid_message(name: str) -> str:
    return f"unknown grid {name!r}; valid grids: {', '.join(GRIDS)}"


def get_grid(name: str) -> Grid:
    if name not in GRIDS:
        raise ConfigError(unknown_grid_message(name))
    return GRIDS[name]


def expand(
    grid: Grid | str,
    configs: list[str] | None = None,
    variants: list[str] | None = None,
    steps: list[int] | None = None,
    overrides: dict | None = None,
    seeds: int = 1,
) -> list[TrialConfig]:
    """The grid's trials (variant-major, then config, then steps, then seed), narrowed and
    overridden. seeds: replicates per cell, seeds `seed` .. `seed + seeds - 1` (the same for
    both variants); the CLI passes the grid's default (Grid.seeds) unless --seeds is given.
    grid: the Grid the CLI resolved once (SweepOptions.spec), or a grid's name."""
    if seeds < 1:
        raise ConfigError(f"seeds must be >= 1, got {seeds}")
    if not isinstance(grid, Grid):
        grid = get_grid(grid)
    for c in configs or ():
        parse_config_id(c)
    for v in variants or ():
        if v not in VARIANTS:
            raise ConfigError(f"unknown variant {v!r}: choose from {', '.join(VARIANTS)}")
    for s in steps or ():
        if s <= 0:
            raise ConfigError(f"steps must be positive, got {s}")
    settings = {**grid.settings, **(overrides or {})}
    trials = []
    for variant in variants or grid.variants:
        for config in configs or grid.configs:
            for n_steps in steps or grid.steps_for(config):
                trial = TrialConfig.from_dict({"variant": variant, "config": config, "steps": n_steps, **settings})
                trials += [trial.replace(seed=trial.seed + i) for i in range(seeds)]
    return trials
