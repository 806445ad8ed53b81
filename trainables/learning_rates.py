"""Learning rates per (variant, config): a searched table where one exists, else a size rule.

A grid never trains every size and arm at one rate (a rate that suits one tiny model leaves
another on the caption prior, and a verdict drawn through that run measures the recipe). Where
each trial's `lr` / `lr_backbone` come from, first match wins:

1. `--lr` / `--lr-backbone` on the command line (each overrides its own field);
2. `--lr-from FILE`, or the table the LR search wrote for this experiment name on this storage
   (`<storage>/<name>_lr_search/lr_table.json`, sweep/lr_search.py);
3. the grid's committed table (`Grid.lr_table`, a file in trainables/lr_tables/ made by that
   same search on CPU, its evidence - every run's loss and vision gap - kept inside it);
4. the size rule: the grid's base rates scaled by (N / N_anchor)^(-1/3), N the trial's total
   parameters (the scaling OLMo's model ladders use per rung), the anchor `Grid.lr_anchor` (S-S
   for every phase grid, so a config gets the same rate in each). The phase grids use it: their
   anchor rates are conventional fine-tuning values, not searched, as the dry-run
   says.

A table records the settings it was searched with. A trial it does not cover (another batch,
data set, frame count..., or a pair it lacks) gets the size rule instead, and the line that
names the rates' source says so; a table named with --lr-from is strict and refuses such a
trial rather than train it at a rate tuned for something else. Tables hold plain JSON; nothing
here imports torch unless the size rule has to build a tiny model to count its parameters.
"""
from __future__ import annotations

import json
import math
from dataclasses import MISSING, dataclass, fields
from pathlib import Path

from search_spaces.errors import ConfigError
from search_spaces.grids import Grid
from search_spaces.trial import TrialConfig
from trainables.data.tokenizer import planning_vocab_size
from trainables.parameters import param_counts_for

TABLE_DIR = Path(__file__).with_name("lr_tables")
TABLE_FORMAT = 1
RULE_EXPONENT = -1.0 / 3.0
# The trial settings a searched rate depends on: a trial differing in any of them is refused
# (seed, steps and the learning rates themselves are what a table is for; micro-batch and
# offload change memory, not the optimisation).
# The schedule is recorded in the table and shown, not compared: a grid's trials take their WSD
# or cosine form after their rates (and the search must try the schedule the study will run).
SEARCH_SETTINGS = ("global_batch", "frames", "image_size", "text_len", "precision", "init", "dataset",
                   "dataset_seed", "dataset_size", "query_dim", "visual_scale", "warmup_steps", "weight_decay",
                   "grad_clip", "min_lr_ratio", "llm_path", "vit_path", "vit_position_std")
_DEFAULTS = {f.name: f.default for f in fields(TrialConfig) if f.name in SEARCH_SETTINGS and f.default is not MISSING}


@dataclass(frozen=True)
class LrTable:
    """A searched table: (variant, config) -> (lr, lr_backbone), with what it was searched on."""
    path: str
    grid: str
    horizon: int
    schedule: str
    seeds: tuple[int, ...]
    settings: dict
    chosen: dict  # variant -> config -> {"lr", "lr_backbone", ...}

    def rates(self, variant: str, config: str) -> tuple[float, float] | None:
        entry = self.chosen.get(variant, {}).get(config)
        return None if entry is None else (entry["lr"], entry["lr_backbone"])

    def describe(self) -> str:
        return (f"table {self.path} (searched for grid {self.grid}: {self.schedule} runs of {self.horizon} "
                f"steps, {len(self.seeds)} seeds per rate)")


def settings_of(trial: TrialConfig) -> dict:
    """The settings a searched rate is valid for."""
    return {k: getattr(trial, k) for k in SEARCH_SETTINGS}


def table_path(grid: Grid) -> Path | None:
    return TABLE_DIR / grid.lr_table if grid.lr_table else None


def _positive(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def load_table(path) -> LrTable:
    """Read and check an lr_table.json; a ConfigError naming the file for anything malformed."""
    try:
        doc = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"learning-rate table {path}: no such file") from None
    except (OSError, ValueError) as e:
        raise ConfigError(f"learning-rate table {path}: cannot read it as JSON ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != TABLE_FORMAT or not isinstance(doc.get("chosen"), dict):
        raise ConfigError(f"learning-rate table {path}: not an lr_table.json of format {TABLE_FORMAT} "
                          "(make one with --lr-search)")
    for variant, per in doc["chosen"].items():
        for config, e in (per.items() if isinstance(per, dict) else [(None, per)]):
            if not isinstance(e, dict) or not (_positive(e.get("lr")) and _positive(e.get("lr_backbone"))):
                raise ConfigError(f"learning-rate table {path}: bad rates for {variant} {config}: {e}")
    if not isinstance(doc.get("settings"), dict):
        raise ConfigError(f"learning-rate table {path}: no 'settings' (what the rates were searched with)")
    return LrTable(str(path), str(doc.get("grid", "?")), int(doc.get("horizon", 0)), str(doc.get("schedule", "?")),
                   tuple(doc.get("seeds", ())), doc["settings"], doc["chosen"])


def check_settings(table: LrTable, trial: TrialConfig) -> None:
    """Refuse a trial that differs from what the table was searched with."""
    now = settings_of(trial)
    # a table written before a setting existed was searched with that setting's default
    then = {**_DEFAULTS, **table.settings}
    diff = [k for k in SEARCH_SETTINGS if then[k] != now[k]]
    if diff:
        what = ", ".join(f"{k}={then[k]!r} (this trial: {now[k]!r})" for k in diff[:3])
        raise ConfigError(f"learning-rate table {table.path} was searched with {what}: search again for these "
                          f"settings (--lr-search) or give --lr / --lr-backbone")


def rule_rates(grid: Grid, trial: TrialConfig) -> tuple[float, float]:
    """The grid's base rates (those of its anchor config) scaled by (N / N_anchor)^(-1/3)."""
    anchor = trial.replace(config=grid.lr_anchor)
    n, n_anchor = (param_counts_for(t, planning_vocab_size(t)).total for t in (trial, anchor))
    scale = (n / n_anchor) ** RULE_EXPONENT
    return trial.lr * scale, trial.lr_backbone * scale


def rule_description(grid: Grid) -> str:
    return (f"size rule: the grid's rates x (N / N[{grid.lr_anchor}])^(-1/3), not searched "
            "(run --lr-search first for rates earned on your data)")


def assign(grid: Grid, trials: list[TrialConfig], table: LrTable | None = None, lr: float | None = None,
           lr_backbone: float | None = None, searching: bool = False,
           strict: bool = False) -> tuple[list[TrialConfig], str]:
    """(trials with their learning rates, one line saying where the rates came from).

    table: an explicit or searched table (rule 2); else the grid's committed one (rule 3); else
    the size rule (rule 4). lr / lr_backbone override either field last (rule 1). A trial a table
    does not cover (a pair it lacks, or other settings than it was searched with) is refused when
    `strict` (the user named that table: --lr-from), else it falls back to the size rule and the
    line says so. searching: an LR search starts such a pair from the grid's settings instead."""
    if table is None and table_path(grid) is not None and table_path(grid).exists():
        table = load_table(table_path(grid))
    out, uncovered = [], []
    for t in trials:
        rates = _table_rates(table, t, strict) if table is not None else None
        if rates is None:
            if table is not None:
                uncovered.append(t)
            rates = (t.lr, t.lr_backbone) if searching else rule_rates(grid, t)
        out.append(t.replace(lr=lr if lr is not None else rates[0],
                             lr_backbone=lr_backbone if lr_backbone is not None else rates[1]))
    return out, _source(grid, table, trials, uncovered, lr, lr_backbone, searching)


def _table_rates(table: LrTable, t: TrialConfig, strict: bool) -> tuple[float, float] | None:
    """The table's rates for t; None (or, strict, a ConfigError) when the table does not cover t."""
    rates = table.rates(t.variant, t.config)
    if rates is None:
        if strict:
            raise ConfigError(f"learning-rate table {table.path} has no rate for {t.variant} {t.config}: search "
                              f"it (--lr-search --variants {t.variant} --configs {t.config}) or give --lr and "
                              "--lr-backbone")
        return None
    try:
        check_settings(table, t)
    except ConfigError:
        if strict:
            raise
        return None
    return rates


def _source(grid, table, trials, uncovered, lr, lr_backbone, searching) -> str:
    if table is None:
        source = "the grid's settings (no table yet)" if searching else rule_description(grid)
    elif not uncovered:
        source = table.describe()
    else:
        pairs = sorted({f"{t.variant} {t.config}" for t in uncovered})
        other = ("the grid's settings" if searching else
                 f"the size rule ({', '.join(pairs[:4])}{' ...' if len(pairs) > 4 else ''}: a pair the table "
                 "lacks, or settings it was not searched with; run --lr-search for rates earned on them)")
        source = f"{table.describe()}; {len(uncovered)} of {len(trials)} trials from {other}"
    flags = [f"--lr {lr:g}" if lr is not None else "", f"--lr-backbone {lr_backbone:g}" if lr_backbone is not None else ""]
    if any(flags):
        source = f"{' '.join(f for f in flags if f)} (command line), otherwise {source}"
    return source
