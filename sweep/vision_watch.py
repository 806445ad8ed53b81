"""The live vision check: name each run still blind at its first milestone at or after half its steps.

A run that has not learned to look at its frames ends as a point the fits must withhold (every
comparison resting on its arm is withheld: fitting/vision.py); saying so at half its steps lets
the user stop the sweep and fix the recipe (learning rate per size and arm) instead of spending
the other half of its GPU-hours. The judgement is search_spaces/vision_rule.py's, the same one
the fits apply at the run's end, on the trainer's eval_vision_gap and its SE at that milestone.

A run is what the fits count as one (their bootstrap unit): a WSD family (the stable trial and
its cooldowns share one seed's trajectory) or one cosine trial; "its steps" are the family's
largest step count. Each run is judged once, at the first of its milestones (in the order Tune
delivers them) at or after half its steps; `blind_at_half` gives the same verdicts for a
finished sweep from every trial's reports in step order, for the driver's summary.

This module is pickled by value into tuner.pkl with the callbacks (sweep.launch.portable_pickles),
as is the rule's module: it imports only Ray, the standard library and those two leaf modules.
"""
from __future__ import annotations

import sys

from ray.tune import Callback

from search_spaces.metric_names import EVAL_LOSS_SHUFFLED, MILESTONE, STEP, VISION_GAP, VISION_GAP_SE
from search_spaces.vision_rule import blind_reason


def run_of(trial: dict) -> str:
    """The run a trial config (a TrialConfig dict) belongs to, named for people."""
    name = f"{trial.get('variant')} {trial.get('config')} seed {trial.get('seed')}"
    if trial.get("schedule") != "wsd":
        name += f" ({trial.get('steps')} steps)"
    return name + (f" [{trial['tag']}]" if trial.get("tag") else "")


def steps_per_run(trials) -> dict[str, int]:
    """run -> its largest step count (a WSD stable trial stops at the last fork, short of it)."""
    out: dict[str, int] = {}
    for t in trials:
        out[run_of(t)] = max(out.get(run_of(t), 0), int(t["steps"]))
    return out


def _is_milestone(result: dict) -> bool:
    v = result.get(MILESTONE)
    return v is True or (isinstance(v, (int, float)) and v == 1)  # a NaN of a results table is not


def half_way_reason(result: dict, steps: int) -> str | None:
    """None: not the report to judge (no milestone, or before half of `steps`); "": the run sees;
    else why it is blind."""
    step = result.get(STEP)
    if not _is_milestone(result) or step is None or not step == step or 2 * step < steps:
        return None
    return blind_reason(result.get(VISION_GAP), result.get(VISION_GAP_SE), result.get(EVAL_LOSS_SHUFFLED))


class BlindRunWatch(Callback):
    def __init__(self, run_steps: dict[str, int]):
        """run_steps: steps_per_run of the sweep's trials."""
        self.run_steps = dict(run_steps)
        self.judged: dict[str, str] = {}  # run -> "" (sees) or the line naming it blind

    def on_trial_result(self, iteration, trials, trial, result, **info):
        line = self.judge((trial.config or {}).get("trial", trial.config or {}), result)
        if line:
            print(line, file=sys.stderr, flush=True)

    def judge(self, trial: dict, result: dict) -> str:
        """The line naming the trial's run blind, once, at its half-way milestone; else ""."""
        run = run_of(trial)
        if run in self.judged:
            return ""
        steps = self.run_steps.get(run) or int(trial.get("steps", 0))
        reason = half_way_reason(result, steps)
        if reason is None:
            return ""
        control = " (a control: its visual tokens are zeroed)" if trial.get("zero_visual_tokens") else ""
        self.judged[run] = (f"vision check: {run} is blind at step {result[STEP]} of {steps}{control}: {reason}. "
                            "If it stays blind, every comparison resting on its arm is withheld: consider "
                            "stopping and fixing its learning rate." if reason else "")
        return self.judged[run]

    def blind(self) -> list[str]:
        return [line for line in self.judged.values() if line]

    # state saved in Tune's experiment checkpoint: a restored sweep does not name a run twice
    def get_state(self) -> dict | None:
        return {"judged": self.judged} if self.judged else None

    def set_state(self, state: dict) -> None:
        self.judged = state.get("judged", {})


def _step(row: dict) -> float:
    v = row.get(STEP)
    return float(v) if isinstance(v, (int, float)) and v == v else 0.0


def blind_at_half(results) -> BlindRunWatch:
    """The watch's verdicts for a finished sweep (Tune Results), each run judged at its earliest
    milestone at or after half its steps."""
    reports = []
    for r in results:
        trial = (r.config or {}).get("trial", r.config or {})
        df = r.metrics_dataframe
        if df is not None and len(df):
            reports += [(trial, row) for row in df.to_dict("records")]
    watch = BlindRunWatch(steps_per_run(t for t, _ in reports))
    for trial, row in sorted(reports, key=lambda tr: _step(tr[1])):
        watch.judge(trial, row)
    return watch


def summary(results) -> list[str]:
    """The driver's end-of-sweep lines about vision."""
    watch = blind_at_half(results)
    blind = watch.blind()
    if not blind:
        return [f"vision check: {len(watch.judged)} of {len(watch.run_steps)} runs judged at half their steps; "
                "none was blind"]
    return [f"vision check: {len(blind)} of {len(watch.judged)} runs judged at half their steps were blind:",
            *(f"  {line}" for line in blind)]
