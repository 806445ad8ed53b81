"""Live monitoring for a running study: a Tune callback that keeps a scaling plot up to date.

`LiveScalingPlot` redraws `<storage>/<name>/live_scaling.png` (eval loss vs cumulative training
FLOPs, log-log, one line per trial, colour = variant, line style + marker = config) whenever a
trial reports a milestone row, at most once per `min_interval_s` so a 72-trial sweep does not
spend its driver loop drawing, and always when a trial completes or the experiment ends.

Why a callback rather than reading result.json files: it runs in the driver, sees every report
the moment Tune processes it, and works whatever the storage (a s3:// experiment has no local
result files on the driver). Its points are part of Tune's experiment checkpoint
(`get_state`/`set_state`), and the instance itself is pickled with the RunConfig in tuner.pkl,
so `Tuner.restore` brings the callback back with the points of the interrupted run. Drawing
happens in a background thread: Tune's driver loop, which also starts the next trial, never
waits for matplotlib (a draw takes 0.2-0.7 s on a busy 2-core box).
"""
from __future__ import annotations

import copy
import logging
import math
import os
import tempfile
import threading
import time
import zlib

from ray.tune import Callback

# plain strings, pickled by value with this module's functions (no project import at run time)
from search_spaces.metric_names import CONFIG_ID, EVAL_LOSS, FLOPS, MILESTONE, STEP, VARIANT

logger = logging.getLogger(__name__)

PLOT_NAME = "live_scaling.png"
# fixed colours for the study's arms; any other arm name gets one from OTHER_COLOURS (never a KeyError)
VARIANT_COLOURS = {"foveated": "tab:blue", "baseline": "tab:orange", "pooled1": "tab:green"}
OTHER_COLOURS = ("tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan")
# (linestyle, marker) per config in first-seen order: 4 dash styles x 3 markers covers phase4's 9
STYLES = [(ls, m) for m in ("o", "s", "^") for ls in ("-", "--", ":", "-.")]


def variant_colour(variant: str) -> str:
    """The arm's colour: fixed for the known arms, else picked by a stable hash of the name (the
    same in every redraw and every run)."""
    if variant in VARIANT_COLOURS:
        return VARIANT_COLOURS[variant]
    return OTHER_COLOURS[zlib.crc32(str(variant).encode()) % len(OTHER_COLOURS)]


class LiveScalingPlot(Callback):
    def __init__(self, target: str, min_interval_s: float = 15.0, title: str = "", configs=(),
                 background: bool = True):
        """target: the PNG's final place, a local path or a URI (s3://, gs://, file://).
        configs: the grid's config ids in order, so each keeps one style from the first draw.
        background: draw in a thread, so Tune's driver loop (which starts the next trial) never
        waits for matplotlib; requests made while it draws collapse into one."""
        self.target = target
        self.min_interval_s = min_interval_s
        self.title = title or os.path.basename(os.path.dirname(target.rstrip("/"))) or "study"
        # trial_id -> {"variant", "config", "steps", "points": {step: (flops, eval_loss)}}
        self.trials: dict[str, dict] = {}
        self.configs: list[str] = list(configs)  # then first-seen order: a config's style never changes
        self.last_draw = float("-inf")
        self.draws = 0
        self.background = background
        self._warned = False
        self.__setstate__({})  # the drawing thread's fields: none until the first draw

    # the thread, its condition and pending job are not picklable (tuner.pkl holds this object)
    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k not in ("_thread", "_cond", "_job", "_busy")}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._thread, self._cond, self._job, self._busy = None, None, None, False

    # -- Tune hooks --------------------------------------------------------------------
    def setup(self, **info):
        import matplotlib.backends.backend_agg  # noqa: F401 - its import (~0.5 s) before, not in, the first result

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.follow(trial)
        if self.record(trial.trial_id, trial.config, result):
            self.maybe_draw()

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.follow(trial)
        if trial.last_result:
            self.record(trial.trial_id, trial.config, trial.last_result)
        self.maybe_draw(force=True)

    def on_experiment_end(self, trials, **info):
        self.maybe_draw(force=True)
        self.flush()  # the final plot is on disk when Tuner.fit() returns
        self._stop_worker()

    # state saved in Tune's experiment checkpoint, so a restored run keeps the earlier points
    def get_state(self) -> dict | None:
        return {"trials": self.trials, "configs": self.configs} if self.trials else None

    def set_state(self, state: dict) -> None:
        self.trials = state.get("trials", {})
        self.configs = state.get("configs", [])

    # -- bookkeeping -------------------------------------------------------------------
    def follow(self, trial) -> None:
        """Draw into the experiment's directory where it is now: the target pickled in tuner.pkl
        names the directory the experiment was launched in, not a moved or copied one."""
        where = getattr(getattr(trial, "storage", None), "experiment_fs_path", None)
        if where and "://" not in self.target and os.path.isabs(where):
            self.target = os.path.join(where, PLOT_NAME)

    def record(self, trial_id: str, config: dict, result: dict) -> bool:
        """Keep a milestone row's (FLOPs, eval loss); True when it is one."""
        if EVAL_LOSS not in result or FLOPS not in result or not result.get(MILESTONE, True):
            return False
        loss, flops = result[EVAL_LOSS], result[FLOPS]
        if not (math.isfinite(loss) and loss > 0 and flops > 0):  # no place on a log axis
            return False
        t = (config or {}).get("trial", config or {})
        variant = result.get(VARIANT) or t.get("variant", "?")
        cfg_id = result.get(CONFIG_ID) or t.get("config", "?")
        entry = self.trials.setdefault(trial_id, {"variant": variant, "config": cfg_id,
                                                  "steps": t.get("steps"), "points": {}})
        entry["points"][int(result.get(STEP, len(entry["points"])))] = (float(flops), float(loss))
        if cfg_id not in self.configs:
            self.configs.append(cfg_id)
        return True

    def maybe_draw(self, force: bool = False) -> bool:
        """Ask for a redraw (throttled unless forced); True when one was asked for."""
        now = time.monotonic()
        if not self.trials or (not force and now - self.last_draw < self.min_interval_s):
            return False
        self.last_draw = now
        snapshot = (copy.deepcopy(self.trials), list(self.configs))  # Tune keeps adding points meanwhile
        if not self.background:
            self._draw_safely(snapshot)
            return True
        if self._thread is None:
            self._cond = threading.Condition()
            self._thread = threading.Thread(target=self._worker, name="live-scaling-plot", daemon=True)
            self._thread.start()
        with self._cond:
            self._job = snapshot  # replaces a request still waiting: only the newest data matters
            self._cond.notify_all()
        return True

    def flush(self, timeout: float = 60.0) -> None:
        """Wait until every requested drawing is written."""
        if self._cond is not None:
            with self._cond:
                self._cond.wait_for(lambda: self._job is None and not self._busy, timeout)

    def _stop_worker(self) -> None:
        if self._thread is not None:
            with self._cond:
                self._job = "stop"
                self._cond.notify_all()
            self._thread.join(timeout=10)
            self.__setstate__({})

    def _worker(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._job is not None)
                job = self._job
                self._job, self._busy = None, job != "stop"
                self._cond.notify_all()
            if job == "stop":
                return
            try:
                self._draw_safely(job)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _draw_safely(self, snapshot) -> None:
        try:
            self.draw(*snapshot)
        except Exception as e:  # noqa: BLE001 - a broken plot must never stop the experiment
            if not self._warned:
                logger.warning("live scaling plot not written to %s: %s", self.target, e)
                self._warned = True
            return
        self.draws += 1

    # -- drawing -----------------------------------------------------------------------
    def figure(self, trials: dict | None = None, configs: list | None = None):
        # the object API with an Agg canvas: no pyplot global state, no display needed
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.lines import Line2D

        trials = self.trials if trials is None else trials
        configs = self.configs if configs is None else configs
        fig = Figure(figsize=(8, 5.5), dpi=110)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        n_points = 0
        for tid in sorted(trials, key=lambda k: (trials[k]["variant"], trials[k]["config"],
                                                 trials[k]["steps"] or 0, k)):
            e = trials[tid]
            pts = [e["points"][s] for s in sorted(e["points"])]
            n_points += len(pts)
            ls, marker = self.style(e["config"], configs)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], linestyle=ls, marker=marker, markersize=4,
                    color=variant_colour(e["variant"]), alpha=0.85, linewidth=1.3)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("cumulative training FLOPs")
        ax.set_ylabel("eval loss")
        ax.grid(True, which="both", alpha=0.3)
        ax.set_title(f"{self.title}: {len(trials)} trials, {n_points} milestones "
                     f"(updated {time.strftime('%H:%M:%S')})", fontsize=10)
        # two legends: colour = variant, style = config (one entry per trial would not fit phase4)
        variants = sorted({e["variant"] for e in trials.values()})
        seen = {e["config"] for e in trials.values()}
        h1 = [Line2D([], [], color=variant_colour(v), label=v) for v in variants]
        h2 = [Line2D([], [], color="black", linestyle=self.style(c, configs)[0], marker=self.style(c, configs)[1],
                     markersize=4, label=c) for c in configs if c in seen]
        first = ax.legend(handles=h1, loc="upper right", fontsize=8, title="variant")
        ax.add_artist(first)
        ax.legend(handles=h2, loc="lower left", fontsize=8, title="config", ncol=3 if len(h2) > 4 else 1)
        fig.tight_layout()
        return fig

    def style(self, config: str, configs: list) -> tuple[str, str]:
        i = configs.index(config) if config in configs else 0
        return STYLES[i % len(STYLES)]

    def draw(self, trials: dict | None = None, configs: list | None = None) -> None:
        fig = self.figure(trials, configs)
        if "://" in self.target:
            self._draw_remote(fig)
            return
        folder = os.path.dirname(os.path.abspath(self.target))
        os.makedirs(folder, exist_ok=True)
        # write beside the target, then rename: a viewer never sees a half-written PNG
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".live_scaling-", suffix=".png")
        try:
            with os.fdopen(fd, "wb") as f:
                fig.savefig(f, format="png")
            os.chmod(tmp, 0o644)  # mkstemp makes it owner-only; the plot is for anyone watching
            os.replace(tmp, self.target)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def _draw_remote(self, fig) -> None:
        # object stores replace an object in one PUT, so writing the bytes directly is atomic there
        import io

        import pyarrow.fs

        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        fs, path = pyarrow.fs.FileSystem.from_uri(self.target)
        parent = path.rsplit("/", 1)[0]
        if parent:
            fs.create_dir(parent, recursive=True)
        with fs.open_output_stream(path) as out:
            out.write(buf.getvalue())


def live_plot_target(storage: str, name: str) -> str:
    """Where the live plot of experiment `name` goes: inside the experiment directory."""
    if "://" in storage:
        return f"{storage.rstrip('/')}/{name}/{PLOT_NAME}"
    return os.path.join(storage, name, PLOT_NAME)
