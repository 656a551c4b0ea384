"""A Hugging Face audio model from a local folder, as an arm: ``{name: hf, path: /models/whisper-base}``.

The folder is what ``save_pretrained`` writes (``config.json``, the weights) plus the
feature extractor's ``preprocessor_config.json``; nothing is downloaded
(``local_files_only``). The model reads the clip's waveform at the feature extractor's
sample rate, through the folder's own feature extractor, and its frames go to the probes:

- wav2vec 2.0, HuBERT, WavLM, data2vec-audio, UniSpeech(-SAT), SEW(-D): the transformer's
  frames (50 per second), each clip's valid frames only;
- Whisper: the encoder's frames (50 per second) over 30 s windows (the model's fixed input;
  longer clips are cut into windows, shorter ones padded, and only the frames of the
  clip's own samples kept);
- AST: the patch tokens (with the CLS and distillation tokens) of each 10.24 s window;
- CLAP: the audio tower's (HTSAT) patch tokens of each 10 s window (mean pooling gives the
  tower's pooled embedding, before the projection).

``layer`` picks the hidden state as ``output_hidden_states`` numbers them: 0 is the
embedding (the input to the first block), i the output of block i, -1 the model's last
hidden state (after the final norm, where the model has one). Without ``layer`` the arm
reads the study's ``probes.layer``.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import Any

from harness.registry import Component
from harness.schema import Num, PathArg, Str

COMPONENT = Component(
    kind="external",
    target="load",
    version="1",
    doc="a transformers audio model from a local folder (Whisper encoder, wav2vec 2.0, HuBERT, WavLM, AST, CLAP)",
    meta={"input": "waveform", "layers": True},
    options={
        "path": PathArg(must="dir", doc="the model folder (config.json, weights, preprocessor_config.json)"),
        "layer": Num(None, integer=True, min=-1, doc="hidden state: 0 the embedding, i after block i, -1 the last "
                                                     "(default: the study's probes.layer)"),
        "label": Str(None, pattern=r"[A-Za-z0-9][A-Za-z0-9_.+-]*", doc="the arm's name (default: the folder's name)"),
    },
)

CTC_FAMILY = ("wav2vec2", "wav2vec2-conformer", "hubert", "wavlm", "data2vec-audio", "unispeech", "unispeech-sat",
              "sew", "sew-d")
"""Models that take the raw waveform (``input_values``) and have a convolutional front end."""
SUPPORTED = (*CTC_FAMILY, "whisper", "audio-spectrogram-transformer", "clap", "clap_audio_model")
WEIGHTS = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.ckpt", "*.h5", "*.msgpack")


# ------------------------------------------------------------------ plan time (no torch)

def _config(folder: str) -> dict[str, Any]:
    return json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))


def num_layers(config: dict[str, Any]) -> int:
    """Blocks of the audio model, read from its ``config.json`` (transformers' defaults where absent)."""
    kind = config.get("model_type")
    if kind == "whisper":
        return int(config.get("encoder_layers", 4))
    if kind == "clap":
        return len((config.get("audio_config") or {}).get("depths", (2, 2, 6, 2)))
    if kind == "clap_audio_model":
        return len(config.get("depths", (2, 2, 6, 2)))
    return int(config.get("num_hidden_layers", 12))


def check(options: dict[str, Any]) -> list[tuple[str, str]]:
    folder = Path(options["path"])
    if not (folder / "config.json").is_file():
        return [("path", f"{folder} has no config.json: expected a folder written by save_pretrained "
                         "(nothing is downloaded; docs/encoders.md)")]
    try:
        config = _config(str(folder))
    except (OSError, ValueError) as exc:
        return [("path", f"{folder / 'config.json'} cannot be read: {exc}")]
    kind = config.get("model_type")
    problems = []
    if kind not in SUPPORTED:
        problems.append(("path", f"{folder}: model_type {kind!r} is not an audio model this adapter reads; "
                                 f"supported: {', '.join(SUPPORTED)}"))
    if not (folder / "preprocessor_config.json").is_file():
        problems.append(("path", f"{folder} has no preprocessor_config.json: save the model's feature extractor "
                                 "into the folder too (feature_extractor.save_pretrained(folder))"))
    if not any(next(folder.glob(pattern), None) for pattern in WEIGHTS):
        problems.append(("path", f"{folder} holds no weights ({', '.join(WEIGHTS)})"))
    layer = options.get("layer")
    if kind in SUPPORTED and layer is not None:
        n = num_layers(config)
        if not -1 <= int(layer) <= n:
            problems.append(("layer", f"layer {layer} is out of range for {folder.name} ({kind}, {n} blocks): "
                                      f"expected -1 (the last hidden state) or 0..{n} (0: the embedding, i: after "
                                      "block i)"))
    return problems


def describe(options: dict[str, Any]) -> dict[str, str]:
    folder = Path(options["path"])
    try:
        kind = _config(str(folder)).get("model_type") or "hf"
    except (OSError, ValueError):
        kind = "hf"
    return {"label": folder.name, "encoder": str(kind)}


def content(options: dict[str, Any]) -> list[str]:
    return [options["path"]]


# ------------------------------------------------------------------ in the job


def load(options: dict[str, Any]):
    """The model of ``options["path"]`` behind the Encoder contract (waveform input)."""
    return _encoder_class()(options["path"])


@functools.cache
def _encoder_class():
    """The Encoder class, defined on first use so that planning imports no torch."""
    import torch
    from torch import Tensor

    from encoders.base import Encoder
    from encoders.external._wave import clips, pad_frames, windows

    class HFAudioEncoder(Encoder):
        """A transformers audio model: ``forward(waves [B, samples], lengths, layer)``."""

        def __init__(self, folder: str):
            super().__init__()
            from transformers import AutoConfig, AutoFeatureExtractor, AutoModel

            self.folder = folder
            config = AutoConfig.from_pretrained(folder, local_files_only=True)
            self.kind = config.model_type
            if self.kind not in SUPPORTED:
                raise ValueError(f"{folder}: model_type {self.kind!r} is not supported; "
                                 f"supported: {', '.join(SUPPORTED)}")
            self.extractor = AutoFeatureExtractor.from_pretrained(folder, local_files_only=True)
            model = AutoModel.from_pretrained(folder, local_files_only=True)
            if self.kind == "whisper":
                model = model.get_encoder()  # the decoder is not needed
            elif self.kind == "clap":
                model = model.audio_model
            self.model = model.eval()
            self.sample_rate = int(self.extractor.sampling_rate)
            self.num_layers = num_layers(config.to_dict())
            self.window = None
            if self.kind == "whisper":
                self.window = int(self.extractor.n_samples)
                self.hop = int(self.extractor.hop_length) * 2  # the encoder's stride-2 conv
            elif self.kind == "audio-spectrogram-transformer":
                self.window = (int(self.extractor.max_length) - 1) * 160 + 400  # 25 ms / 10 ms fbank frames
            elif self.kind.startswith("clap"):
                self.window = int(self.extractor.nb_max_samples)
            # wav2vec 2.0 base and its kin (group-normalised front end, no attention mask) see
            # the padding of a batch: they get clips of one length at a time instead.
            self.masked = (getattr(config, "feat_extract_norm", "layer") == "layer"
                           and bool(getattr(self.extractor, "return_attention_mask", False)))
            if self.kind in CTC_FAMILY:
                strides = list(config.conv_stride)
                kernels = list(config.conv_kernel)
                self.min_samples = 1 + sum((k - 1) * math.prod(strides[:i]) for i, k in enumerate(kernels))
                self.frame_rate = self.sample_rate / math.prod(strides)
            else:
                self.min_samples = 1
                self.frame_rate = self.sample_rate / self.hop if self.kind == "whisper" else float("nan")
            hidden = getattr(config, "hidden_size", None) or getattr(config, "d_model", None)
            if self.kind == "clap":
                hidden = config.audio_config.hidden_size
            self.dim = int(hidden)

        def _features(self, audio: list[Tensor], **kw) -> dict[str, Tensor]:
            device = next(self.model.parameters()).device
            batch = self.extractor([a.cpu().numpy() for a in audio], sampling_rate=self.sample_rate,
                                   return_tensors="pt", **kw)
            return {k: v.to(device) for k, v in batch.items() if hasattr(v, "to")}

        def _pick(self, out, layer: int) -> Tensor:
            if layer == -1:
                return out.last_hidden_state
            if not 0 <= layer < len(out.hidden_states):
                raise ValueError(f"layer must be -1 or in [0, {len(out.hidden_states) - 1}] for {self.folder}, "
                                 f"got {layer}")
            return out.hidden_states[layer]

        def forward(self, waves: Tensor, lengths: Tensor, layer: int = -1) -> tuple[Tensor, Tensor]:
            audio = clips(waves, lengths)
            if self.kind in CTC_FAMILY:
                return self._ctc(audio, layer)
            frames = []
            for clip in audio:  # a window of the model's fixed input at a time
                parts = windows(clip, self.window)
                tokens = self._windows(parts, layer)
                frames.append(torch.cat(tokens, 0))
            return pad_frames(frames)

        def _ctc(self, audio: list[Tensor], layer: int) -> tuple[Tensor, Tensor]:
            short = self.min_samples  # the front end's receptive field: shorter clips are zero-padded to it
            audio = [a if a.shape[0] >= short else torch.nn.functional.pad(a, (0, short - a.shape[0])) for a in audio]
            if not self.masked:  # no attention mask: clips of one length together, so no padding reaches the model
                groups: dict[int, list[int]] = {}
                for i, a in enumerate(audio):
                    groups.setdefault(a.shape[0], []).append(i)
                frames: list[Tensor | None] = [None] * len(audio)
                for rows in groups.values():
                    x, n = self._ctc_batch([audio[i] for i in rows], layer)
                    for j, i in enumerate(rows):
                        frames[i] = x[j, : n[j]]
                return pad_frames(frames)  # type: ignore[arg-type]
            return self._ctc_batch(audio, layer)

        def _ctc_batch(self, audio: list[Tensor], layer: int) -> tuple[Tensor, Tensor]:
            batch = self._features(audio, padding=True)
            out = self.model(**batch, output_hidden_states=True)
            x = self._pick(out, layer)
            n = self.model._get_feat_extract_output_lengths(torch.tensor([a.shape[0] for a in audio]))
            return x, n.to(x.device).clamp(max=x.shape[1])

        def _windows(self, parts: list[Tensor], layer: int) -> list[Tensor]:
            if self.kind == "whisper":
                batch = self._features(parts)
                out = self.model(batch["input_features"], output_hidden_states=True)
                x = self._pick(out, layer)
                return [x[i, : max(1, math.ceil(p.shape[0] / self.hop))] for i, p in enumerate(parts)]
            if self.kind == "audio-spectrogram-transformer":
                out = self.model(**self._features(parts), output_hidden_states=True)
                x = self._pick(out, layer)
                return [x[i] for i in range(len(parts))]
            # CLAP's HTSAT: [N, C, F', T'] maps, as time-major token sequences [N, T' * F', C]
            batch = self._features(parts)
            out = self.model(input_features=batch["input_features"], is_longer=batch.get("is_longer"),
                             output_hidden_states=True)
            x = self._pick(out, layer)
            x = x.permute(0, 3, 2, 1).flatten(1, 2)
            return [x[i] for i in range(len(parts))]

    return HFAudioEncoder
