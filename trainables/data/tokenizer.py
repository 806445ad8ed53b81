"""Tokenizers: the LLM's own when pretrained, an offline word-level one otherwise.

Both come out as a `transformers.PreTrainedTokenizerFast`, so the pipeline that turns
captions into ids and the caption-only loss mask is the same code either way.
"""
from __future__ import annotations

from collections import Counter
from typing import Iterable

from search_spaces.errors import ConfigError

SPECIALS = ("<pad>", "<unk>", "<bos>", "<eos>")


def planning_vocab_size(cfg) -> int:
    """The vocabulary a trial will train with, known before any data is read (for the dry-run's
    N, FLOPs and memory): the LLM's own when pretrained, an embedded synthetic task's words +
    specials, else the size registry's (a real data set's word list is only known once read)."""
    from trainables.data import synthetic

    llm, _ = cfg.sizes
    if cfg.init == "random" and cfg.dataset in synthetic.TASKS:
        return len(SPECIALS) + len(synthetic.task(cfg.dataset)[1]())
    return llm.vocab_size


def word_level_tokenizer(words: Iterable[str]):
    """A word-level tokenizer over `words` (order kept) plus pad/unk/bos/eos."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIALS)}
    for w in words:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", bos_token="<bos>", eos_token="<eos>"
    )


def vocabulary_from_texts(texts: Iterable[str], max_words: int = 8000) -> list[str]:
    """The most frequent lower-cased words of a caption corpus (ties broken alphabetically)."""
    counts = Counter(w for t in texts for w in t.lower().split())
    return [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:max_words]]


def pretrained_tokenizer(name_or_path: str):
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(name_or_path)
    except OSError as e:
        raise ConfigError(
            f"cannot load the tokenizer of {name_or_path!r} ({type(e).__name__}): download it "
            "(huggingface-cli download) or pass a local directory, or train with init=random"
        ) from None
    if tok.pad_token is None:  # SmolLM2 has no pad token; padding is masked out anyway
        tok.pad_token = tok.eos_token
    if tok.bos_token is None:
        tok.bos_token = tok.eos_token
    return tok
