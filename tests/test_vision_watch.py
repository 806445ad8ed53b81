"""sweep/vision_watch.py: the live monitor names a run still blind at half its steps, once."""
import os
import pickle
import subprocess
import sys
from types import SimpleNamespace

import pandas as pd

from sweep.vision_watch import BlindRunWatch, blind_at_half, run_of, steps_per_run, summary


def trial(variant="foveated", config="T2-T2", steps=480, seed=0, **kw):
    return {"variant": variant, "config": config, "steps": steps, "seed": seed, "schedule": "cosine", **kw}


def report(step, gap, se=1e-3, shuffled=1.0, milestone=True):
    return {"step": step, "milestone": milestone, "eval_loss": shuffled - gap, "eval_loss_shuffled_frames": shuffled,
            "eval_vision_gap": gap, "eval_vision_gap_se": se}


def fake(t):
    return SimpleNamespace(trial_id="x", config={"trial": t})


def test_a_run_blind_at_half_its_steps_is_named_once(capsys):
    blind, seeing = trial(), trial(config="T1-T1")
    cb = BlindRunWatch(steps_per_run([blind, seeing]))
    cb.on_trial_result(1, [], fake(blind), report(120, 5e-5))  # before half: not judged yet
    cb.on_trial_result(1, [], fake(blind), report(200, 0.5, milestone=False))  # no evaluation
    assert capsys.readouterr().err == "" and cb.judged == {}
    cb.on_trial_result(2, [], fake(seeing), report(240, 0.6))
    cb.on_trial_result(2, [], fake(blind), report(240, 9e-5, se=9e-5 / 8))  # the 9e-5 at z = 8 case
    err = capsys.readouterr().err
    assert "foveated T2-T2 seed 0 (480 steps) is blind at step 240 of 480" in err and "below the floor" in err
    assert "T1-T1" not in err
    cb.on_trial_result(3, [], fake(blind), report(480, 1e-5))  # named once per run
    assert capsys.readouterr().err == "" and len(cb.blind()) == 1
    clone = pickle.loads(pickle.dumps(cb))  # tuner.pkl holds the callback
    fresh = BlindRunWatch(clone.run_steps)
    fresh.set_state(clone.get_state())  # Tune's experiment checkpoint on restore
    assert fresh.judge(blind, report(480, 1e-5)) == "" and fresh.blind() == cb.blind()


def test_a_wsd_family_is_one_run_judged_against_its_largest_step_count():
    common = {"schedule": "wsd", "variant": "foveated", "config": "T1-T1", "seed": 1}
    stable = {**common, "steps": 384, "wsd_phase": "stable"}
    cooldowns = [{**common, "steps": s, "wsd_phase": "cooldown"} for s in (120, 240, 480)]
    steps = steps_per_run([stable, *cooldowns])
    assert steps == {"foveated T1-T1 seed 1": 480} and run_of(stable) == run_of(cooldowns[0])
    cb = BlindRunWatch(steps)
    assert cb.judge(stable, report(192, 0.0, se=0.0)) == ""  # half of the stable trial, not of the run
    assert cb.judge(cooldowns[0], report(120, 0.0, se=0.0)) == ""
    line = cb.judge(cooldowns[1], report(240, 0.0, se=0.0))
    assert line.startswith("vision check: foveated T1-T1 seed 1 is blind at step 240 of 480")
    assert cb.judge(stable, report(384, 0.0, se=0.0)) == ""


def test_the_zeroed_tokens_control_is_named_as_such():
    control = trial(zero_visual_tokens=True)
    line = BlindRunWatch(steps_per_run([control])).judge(control, report(240, 0.0, se=0.0))
    assert "a control: its visual tokens are zeroed" in line


def test_the_end_of_sweep_summary_judges_each_run_at_its_earliest_half_way_milestone():
    def result(t, rows):
        return SimpleNamespace(config={"trial": t}, metrics_dataframe=pd.DataFrame(rows))

    late_learner = trial(seed=1)
    results = [
        result(trial(), [report(120, 0.0, se=0.0), report(240, 0.0, se=0.0), report(480, 0.0, se=0.0)]),
        # blind at 240 even though it sees by 480: at half its steps it was blind
        result(late_learner, [report(480, 0.8), report(240, 1e-4, se=1e-5)]),
        result(trial(config="T1-T1"), [report(240, 0.7), {"step": 250, "milestone": float("nan")}]),
    ]
    watch = blind_at_half(results)
    assert len(watch.judged) == 3 and len(watch.blind()) == 2
    lines = summary(results)
    assert lines[0] == "vision check: 2 of 3 runs judged at half their steps were blind:"
    assert any("seed 1 (480 steps) is blind at step 240" in x for x in lines)
    assert summary(results[2:]) == ["vision check: 1 of 1 runs judged at half their steps; none was blind"]


def test_the_watch_unpickles_without_the_project():
    """It lives in tuner.pkl: pickled by value with the rule's module, plain Ray can load it."""
    import ray.cloudpickle

    from sweep.launch import portable_pickles

    portable_pickles()
    blob = ray.cloudpickle.dumps(BlindRunWatch(steps_per_run([trial()])))
    code = f"""
import pickle, sys
w = pickle.loads({blob!r})
line = w.judge({trial()!r}, {report(240, 0.0, se=0.0)!r})
assert "is blind at step 240 of 480" in line, line
assert not [m for m in sys.modules if m.split(".")[0] in ("sweep", "search_spaces")]
print("ok")
"""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-I", "-c", code], cwd="/tmp", env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-3000:]
