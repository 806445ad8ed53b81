"""The names of what a trial reports (trainables/train.py writes them; the fits in
fitting/table.py, the live plot in sweep/callbacks.py, the WSD searcher in sweep/wsd.py and the
driver read them): one spelling,
so a rename on one side cannot silently empty the other.

A leaf module: it imports nothing, so fitting (which stands alone) may import it, the one
edge out of fitting that tests/test_layers.py allows. Plain strings: the callbacks are pickled
by value into tuner.pkl and carry these values with them.
"""
# what the trial is
VARIANT = "variant"
CONFIG_ID = "config_id"  # the trial's config id, e.g. "S-B" (params.json has it as "config")
SCHEDULE = "schedule"
WSD_PHASE = "wsd_phase"
# where it is
STEP = "step"
TRIAL_STEPS = "trial_steps"  # the step count the trial ends at
MILESTONE = "milestone"  # True on reports with an evaluation
RESUMED_FROM_STEP = "resumed_from_step"  # the step this start of the trial trained from (0: its first)
RE_REPORTED = "re_reported"  # True on the history a restored trial re-sends (trainables/train.py)
SAMPLES = "samples"
TOKENS = "tokens"
FLOPS = "flops"  # cumulative training FLOPs (C)
# model size, three ways
N_PARAMS = "n_params"
N_PARAMS_LLM = "n_params_llm"  # LLM without its embedding
N_PARAMS_VISION = "n_params_vision"
# losses
TRAIN_LOSS = "train_loss"
EVAL_LOSS = "eval_loss"
EVAL_LOSS_SE = "eval_loss_se"
EVAL_LOSS_SHUFFLED = "eval_loss_shuffled_frames"  # every caption with another clip's frames
EVAL_LOSS_SHUFFLED_SE = "eval_loss_shuffled_frames_se"
VISION_GAP = "eval_vision_gap"  # shuffled - true
VISION_GAP_SE = "eval_vision_gap_se"
# + a field's name (e.g. "eval_loss_field_colour"): the eval caption loss on the tokens of one
# field, for data sets whose captions have a fixed format (trainables/data/graded.py)
EVAL_FIELD_PREFIX = "eval_loss_field_"
# throughput
SAMPLES_PER_S = "samples_per_s"
