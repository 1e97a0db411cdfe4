"""The embedded tokenizer: character level over printable ASCII, plus ``\\boxed{`` as one symbol.

Built locally with the ``tokenizers`` library and wrapped as a ``transformers.PreTrainedTokenizerFast``, so the
trainer uses it exactly like a downloaded tokenizer (``tokenizer(text)``, ``decode``, ``pad_token_id``,
``eos_token_id``, ``save_pretrained``). Unknown characters map to ``<unk>``.
"""

from __future__ import annotations

import string
from collections.abc import Sequence

import numpy as np
import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

PAD, EOS, UNK = "<pad>", "<eos>", "<unk>"
SYMBOLS = ("\\boxed{",)
# Bump when the vocabulary changes: it is part of the warm-start cache key.
TOKENIZER_VERSION = "char-ascii-v1"


def vocabulary() -> dict[str, int]:
    """Token -> id: the three special tokens, the multi-character symbols, then every printable character."""
    chars = [c for c in string.printable if c not in "\t\r\x0b\x0c"]
    return {tok: i for i, tok in enumerate([PAD, EOS, UNK, *SYMBOLS, *chars])}


def build_tokenizer() -> PreTrainedTokenizerFast:
    """The embedded tokenizer (no download): every symbol or character is one token; decoding concatenates."""
    tok = Tokenizer(models.WordLevel(vocabulary(), unk_token=UNK))
    pattern = "|".join([*(s.replace("\\", "\\\\").replace("{", "\\{") for s in SYMBOLS), r"[\s\S]"])
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(pattern), behavior="isolated")
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, eos_token=EOS, unk_token=UNK)


def response_texts(tokenizer: PreTrainedTokenizerBase, responses: Sequence[Sequence[int]]) -> list[str]:
    """The texts of sampled responses as the grader sees them (special tokens such as EOS left out). Tensors
    become lists in one ``tolist`` each (3x faster than an ``int`` per token for a step's 128 responses)."""
    ids = [r.tolist() if isinstance(r, torch.Tensor) else [int(t) for t in r] for r in responses]
    return tokenizer.batch_decode(ids, skip_special_tokens=True)


def token_texts(tokenizer: PreTrainedTokenizerBase, ids: Sequence[int] | None = None) -> np.ndarray:
    """Decoded text of each token id in ``ids`` (each distinct id decoded once), or of every id of the vocabulary
    (object array indexed by id, for the trainer's lookup without a Python loop per token). Special tokens keep
    their name (``<eos>``)."""
    if ids is None:
        texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))], skip_special_tokens=False)
        return np.asarray(texts, dtype=object)
    distinct, inverse = np.unique(np.asarray(ids, dtype=np.int64), return_inverse=True)
    texts = tokenizer.batch_decode([[int(i)] for i in distinct], skip_special_tokens=False)
    return np.asarray(texts, dtype=object)[inverse] if len(distinct) else np.zeros(0, dtype=object)


# A chat template in the style of instruction-tuned models: role markers are special tokens (one id each), the
# generation prompt opens the assistant's turn. Used for locally built test and check models (nothing downloaded).
CHAT_TOKENS = ("<|user|>", "<|assistant|>", "<|end|>")
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}<|user|>{{ message['content'] }}<|end|>"
    "{% else %}<|assistant|>{{ message['content'] }}<|end|>{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def build_chat_tokenizer() -> PreTrainedTokenizerFast:
    """The embedded tokenizer plus role tokens and ``CHAT_TEMPLATE``: a stand-in, built locally, for the
    tokenizer of a chat model such as DeepSeek-R1-Distill-Qwen (``apply_chat_template`` works on it)."""
    tok = build_tokenizer()
    tok.add_special_tokens({"additional_special_tokens": list(CHAT_TOKENS)})
    tok.chat_template = CHAT_TEMPLATE
    return tok
