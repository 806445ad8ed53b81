"""The study's two VLMs. Public API: build_vlm, param_counts, FoveatedVLM, BaselineVLM."""
from trainables.models.base import IGNORE_INDEX, VLMBase, param_counts, text_loss
from trainables.models.baseline import BaselineVLM
from trainables.models.build import build_vlm
from trainables.models.foveated import FoveatedVLM

__all__ = ["IGNORE_INDEX", "BaselineVLM", "FoveatedVLM", "VLMBase", "build_vlm", "param_counts", "text_loss"]
