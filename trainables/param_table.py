"""Parameter counts of every arm's 9 real (variant, config) models, so planning (--dry-run,
the planner's micro-batches) needs neither torch nor a model build.

Written from the meta-device builds (trainables.parameters.build_param_counts) at the phase grids'
query_dim 384 and SmolLM2's vocabulary 49152; tests/test_memory.py rebuilds every entry and
compares, so a model change that moves a count fails there. Other (variant, config, query_dim,
vocab) keys (tiny test sizes, the smoke grid) are built on the meta device as before.
"""
from __future__ import annotations

QUERY_DIM = 384
VOCAB_SIZE = 49152

# (variant, config): (total, llm, llm_non_embedding, vision, connector, largest_tensor)
COUNTS: dict[tuple[str, str], tuple[int, int, int, int, int, int]] = {
    ("foveated", "S-S"): (157495488, 134515008, 106203456, 22056192, 924288, 28311552),
    ("baseline", "S-S"): (157125312, 134515008, 106203456, 22056192, 554112, 28311552),
    ("foveated", "S-B"): (222388032, 134515008, 106203456, 86579712, 1293312, 28311552),
    ("baseline", "S-B"): (221870016, 134515008, 106203456, 86579712, 775296, 28311552),
    ("foveated", "S-L"): (440421952, 134515008, 106203456, 304367616, 1539328, 28311552),
    ("baseline", "S-L"): (439805376, 134515008, 106203456, 304367616, 922752, 28311552),
    ("foveated", "M-S"): (385687104, 361821120, 314635200, 22056192, 1809792, 47185920),
    ("baseline", "M-S"): (385169472, 361821120, 314635200, 22056192, 1292160, 47185920),
    ("foveated", "M-B"): (450727104, 361821120, 314635200, 86579712, 2326272, 47185920),
    ("baseline", "M-B"): (450061632, 361821120, 314635200, 86579712, 1660800, 47185920),
    ("foveated", "M-L"): (668859328, 361821120, 314635200, 304367616, 2670592, 47185920),
    ("baseline", "M-L"): (668095296, 361821120, 314635200, 304367616, 1906560, 47185920),
    ("foveated", "L-S"): (1739352832, 1711376384, 1610713088, 22056192, 5920256, 100663296),
    ("baseline", "L-S"): (1738417408, 1711376384, 1610713088, 22056192, 4984832, 100663296),
    ("foveated", "L-B"): (1804810624, 1711376384, 1610713088, 86579712, 6854528, 100663296),
    ("baseline", "L-B"): (1803727360, 1711376384, 1610713088, 86579712, 5771264, 100663296),
    ("foveated", "L-L"): (2023221376, 1711376384, 1610713088, 304367616, 7477376, 100663296),
    ("baseline", "L-L"): (2022039552, 1711376384, 1610713088, 304367616, 6295552, 100663296),
    # the pooled1 control: the baseline's modules (pooling has no parameters), hence its counts
    ("pooled1", "S-S"): (157125312, 134515008, 106203456, 22056192, 554112, 28311552),
    ("pooled1", "S-B"): (221870016, 134515008, 106203456, 86579712, 775296, 28311552),
    ("pooled1", "S-L"): (439805376, 134515008, 106203456, 304367616, 922752, 28311552),
    ("pooled1", "M-S"): (385169472, 361821120, 314635200, 22056192, 1292160, 47185920),
    ("pooled1", "M-B"): (450061632, 361821120, 314635200, 86579712, 1660800, 47185920),
    ("pooled1", "M-L"): (668095296, 361821120, 314635200, 304367616, 1906560, 47185920),
    ("pooled1", "L-S"): (1738417408, 1711376384, 1610713088, 22056192, 4984832, 100663296),
    ("pooled1", "L-B"): (1803727360, 1711376384, 1610713088, 86579712, 5771264, 100663296),
    ("pooled1", "L-L"): (2022039552, 1711376384, 1610713088, 304367616, 6295552, 100663296),
}
