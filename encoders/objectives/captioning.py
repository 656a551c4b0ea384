"""AR captioning: the PAR decoder, always causal (teacher forcing from BOS, target ends with
EOS), over the clip's caption instead of its tag sequence."""

from __future__ import annotations

from typing import Any

from encoders.objectives.par import PAR

VERSION = "1"


class Captioning(PAR):
    needs = "captions"
    VERSION = VERSION
    text_field = "captions"
    default_max_tokens = 128

    def __init__(self, encoder_dim: int, num_embeddings: int, bos_id: int, eos_id: int, mask_id: int,
                 **options: Any):
        if options.get("parallel_fraction", 0.0) != 0.0:
            raise ValueError("captioning is autoregressive: parallel_fraction must be 0 (use par for parallel)")
        options["parallel_fraction"] = 0.0
        super().__init__(encoder_dim, num_embeddings, bos_id, eos_id, mask_id, **options)
