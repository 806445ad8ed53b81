"""In which order an experiment's trials start: the most expensive first, for cosine grids
(launch.param_space) and for WSD families (the WsdSearcher of sweep/wsd.py)."""
from __future__ import annotations

from sweep.wsd import DIRNAME, WsdSearcher
from trainables.flops import trial_flops_per_sample


def longest_first(trials):
    """Start the most expensive trials first: with few slots the sweep ends sooner."""
    return sorted(trials, key=lambda t: -t.steps * t.global_batch * trial_flops_per_sample(t, t.sizes[0].vocab_size))


def wsd_search(families, dirname: str = DIRNAME) -> dict:
    """TuneConfig keyword arguments for a WSD experiment: the searcher, and num_samples = every
    trial it will suggest (stable + cooldowns). Most expensive stable trials first.
    dirname: the experiment's trial_dirname_creator format (DIRNAME)."""
    order = {id(t): i for i, t in enumerate(longest_first([f.stable for f in families]))}
    searcher = WsdSearcher(sorted(families, key=lambda f: order[id(f.stable)]), dirname)
    return {"search_alg": searcher, "num_samples": searcher.total_trials}
