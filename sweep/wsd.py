"""Schedule WSD families (search_spaces/wsd.py) in one Tune experiment with a custom Searcher.

Ray's grid_search cannot express "start this trial from that trial's checkpoint once it
exists", and search algorithms do not combine with grid_search; a Searcher can: it suggests
every stable trial first, and when a stable trial reports a fork milestone (each milestone
report carries its checkpoint), it queues that step count's cooldown trial with `fork_from` =
the stable trial's directory name, relative to the experiment: the cooldown loads the checkpoint
at its fork step from there (trainables/storage.py), so an experiment directory that was moved
or copied resumes where it is. `suggest` returns the queued configs, None while waiting for a
fork, and FINISHED once no more can come.

Checkpoints: a fork checkpoint must outlive the wait for its cooldown to start (which may be
long on a busy cluster). The simple, correct choice made here: WSD experiments keep every
checkpoint (`CheckpointConfig(num_to_keep=None)`, see sweep/launch.py). With checkpoints only at
milestones that is k fork checkpoints per stable trial + one per cooldown: 2k per (variant,
config), the same order as cosine's k trials x up to 2 kept.

The searcher's state (what is queued, which trial is which) is saved with Tune's experiment
checkpoint, so `Tuner.restore` continues it. A restored stable trial re-sends its milestone
reports (trainables/train.py); a fork already queued is not queued twice. Limit: a stable trial
that fails for good (max_failures spent) abandons its not-yet-forked cooldowns, and FINISHED
is final for Tune, so a later `--resume` does not bring them back: rerun under a new --name.
"""
from __future__ import annotations

import logging
import pickle
from types import SimpleNamespace

from ray.tune.search import Searcher

from search_spaces.metric_names import MILESTONE, STEP

logger = logging.getLogger(__name__)

# This module is pickled by value into tuner.pkl (sweep.launch.portable_pickles): it imports
# only Ray, the standard library and two metric names (plain strings), and the searcher keeps
# plain-data state. Ordering the families (which needs the FLOPs model) is sweep/schedule.py's
# wsd_search, which is not pickled.
# The trial directory name of a WSD experiment (a str.format pattern: see sweep/launch.py).
DIRNAME = ("{0.config[trial][variant]}_{0.config[trial][config]}_{0.config[trial][steps]}_"
                   "{0.config[trial][wsd_phase]}_s{0.config[trial][seed]}_{0.trial_id}")


class WsdSearcher(Searcher):
    def __init__(self, families: list, dirname: str = DIRNAME):
        """families: search_spaces.wsd.WsdFamily list."""
        super().__init__()
        self.dirname = dirname
        # plain dicts only: the state pickles without our classes and compares in tests; each
        # cooldown's fork step (search_spaces.trial.wsd_fork_step) is computed here, once
        self.families = [{"stable": f.stable.to_dict(), "cooldowns": [c.to_dict() for c in f.cooldowns],
                          "fork_steps": [c.fork_step for c in f.cooldowns]}
                         for f in families]
        self.stable_queue = list(range(len(self.families)))  # family indices not yet suggested
        self.ready: list[dict] = []  # cooldown configs with fork_from, waiting for suggest()
        self.forked: set[tuple[int, int]] = set()  # (family, step count) queued or suggested
        self.trials: dict[str, tuple[int, str]] = {}  # trial_id -> (family, "stable" | "cooldown")
        self.open: set[int] = set(range(len(self.families)))  # stable trials that may still fork
        self.abandoned: list[str] = []

    @property
    def total_trials(self) -> int:
        return sum(1 + len(f["cooldowns"]) for f in self.families)

    # -- Tune hooks ---------------------------------------------------------------------------
    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # the configs come from the families; Tune's param_space stays empty

    def suggest(self, trial_id: str):
        if self.stable_queue:
            fam = self.stable_queue.pop(0)
            self.trials[trial_id] = (fam, "stable")
            return {"trial": dict(self.families[fam]["stable"])}
        if self.ready:
            cfg = self.ready.pop(0)
            self.trials[trial_id] = (cfg.pop("_family"), "cooldown")
            return {"trial": cfg}
        return None if self.open else Searcher.FINISHED

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        fam, phase = self.trials.get(trial_id, (None, None))
        # every milestone report of a stable trial comes with its checkpoint (trainables/train.py),
        # re-sent ones too: a restored trial re-reports its history, including milestones whose
        # own reports the driver never saw
        if phase != "stable" or not result.get(MILESTONE):
            return
        step = int(result[STEP])
        stable = self.families[fam]["stable"]
        # the stable trial's directory, relative to the experiment: the cooldown picks the
        # checkpoint at its fork step there (trainables/storage.py), wherever the experiment is now
        fork_from = self.dirname.format(SimpleNamespace(config={"trial": stable}, trial_id=trial_id))
        for c, fork_step in zip(self.families[fam]["cooldowns"], self.families[fam]["fork_steps"]):
            key = (fam, c["steps"])
            if key in self.forked or fork_step != step:
                continue
            self.forked.add(key)
            self.ready.append({**c, "fork_from": fork_from, "_family": fam})
            logger.info("WSD: %s forks at step %d -> cooldown to %d", trial_id, step, c["steps"])

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        fam, phase = self.trials.get(trial_id, (None, None))
        if phase != "stable":
            return
        self.open.discard(fam)
        missing = [c["steps"] for c in self.families[fam]["cooldowns"] if (fam, c["steps"]) not in self.forked]
        if missing:
            name = f"{self.families[fam]['stable']['variant']} {self.families[fam]['stable']['config']}"
            msg = (f"WSD: stable trial {trial_id} ({name}) {'failed' if error else 'ended'} before forking the "
                   f"cooldown(s) to {missing} steps; they will not run")
            self.abandoned.append(msg)
            logger.warning(msg)
            print(msg, flush=True)

    # -- Tune's experiment checkpoint -----------------------------------------------------------
    def get_state(self) -> dict:
        return {k: getattr(self, k) for k in
                ("dirname", "families", "stable_queue", "ready", "forked", "trials", "open", "abandoned")}

    def set_state(self, state: dict) -> None:
        self.__dict__.update(state)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.get_state(), f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.set_state(pickle.load(f))

