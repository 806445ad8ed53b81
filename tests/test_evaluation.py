"""trainables/evaluation.py with the blind control (TrialConfig.zero_visual_tokens): a model whose
visual tokens are zeroed scores the shuffled frames exactly as the true ones (gap 0, SE 0)."""
import pytest
import torch

from search_spaces import metric_names as M
from search_spaces import vision_rule
from search_spaces.trial import TrialConfig
from trainables.data.bundle import load_data
from trainables.data.pipeline import eval_batches, normalise_frames
from trainables.evaluation import EVAL_BATCH, evaluate
from trainables.models import build_vlm


class Engine:
    """What evaluate() asks of a DeepSpeed engine: call it on a batch, a device, eval/train modes."""

    def __init__(self, model):
        self.model, self.device = model, torch.device("cpu")

    def __call__(self, **batch):
        return self.model(**batch)

    def eval(self):
        self.model.eval()

    def train(self):
        self.model.train()


def tiny(variant: str, **kw) -> TrialConfig:
    return TrialConfig(variant=variant, config="T1-T1", steps=1, frames=3, image_size=56, text_len=16,
                       global_batch=4, micro_batch=4, dataset_size=8, eval_size=2 * EVAL_BATCH + 6, **kw)


@pytest.mark.parametrize("variant", ["foveated", pytest.param("baseline", marks=pytest.mark.slow)])
def test_zeroed_visual_tokens_give_a_shuffled_loss_equal_to_the_true_loss(variant):
    cfg = tiny(variant)
    data = load_data(cfg)
    out = {}
    for blind in (False, True):
        torch.manual_seed(0)
        model = build_vlm(cfg.replace(zero_visual_tokens=blind), data.vocab_size)
        out[blind] = evaluate(Engine(model), data.eval, torch.float32)
    assert out[False][M.VISION_GAP] != 0.0  # the same model, not zeroed: its frames reach the loss
    blind = out[True]
    assert blind[M.EVAL_LOSS_SHUFFLED] == blind[M.EVAL_LOSS]  # exactly, not approximately
    assert blind[M.VISION_GAP] == 0.0 and blind[M.VISION_GAP_SE] == 0.0
    assert not vision_rule.sees(blind[M.VISION_GAP], blind[M.VISION_GAP_SE], blind[M.EVAL_LOSS_SHUFFLED])


def _grads(cfg: TrialConfig) -> dict:
    data = load_data(cfg)
    torch.manual_seed(0)
    model = build_vlm(cfg, data.vocab_size)
    batch = {k: v for k, v in next(eval_batches(data.eval, 4)).items() if k != "n_bad_rows"}
    batch["frames"] = normalise_frames(batch["frames"], torch.float32)
    model(**batch)["loss"].backward()
    return {n: p.grad for n, p in model.named_parameters()}


def test_a_blind_model_still_trains_its_language_model():
    """Zeroing keeps the graph: every parameter that gets a gradient in the seeing model gets one
    (as ZeRO expects), zero on the visual path, and the LLM still learns the caption prior."""
    seeing, blind = _grads(tiny("foveated")), _grads(tiny("foveated", zero_visual_tokens=True))
    assert {n for n, g in blind.items() if g is None} == {n for n, g in seeing.items() if g is None}
    assert seeing["query_in.weight"].abs().max() > 0 and seeing["projector.fc1.weight"].abs().max() > 0
    assert blind["query_in.weight"].abs().max() == 0 and blind["projector.fc1.weight"].abs().max() == 0
    assert any(g.abs().max() > 0 for n, g in blind.items() if n.startswith("llm.") and g is not None)
