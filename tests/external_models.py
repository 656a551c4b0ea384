"""Tiny, randomly initialised external encoders for the tests: Hugging Face folders built
from configs and saved with ``save_pretrained``, a HEAR module written as a file, and
released weights of a harness encoder in AudenAI/Auden's layouts. Nothing is downloaded."""

from __future__ import annotations

import textwrap
from pathlib import Path

SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
CNN = dict(conv_dim=(16, 16, 16), conv_stride=(10, 8, 4), conv_kernel=(10, 8, 4), num_feat_extract_layers=3,
           num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)


def save_wav2vec2(folder: Path, seed: int = 0, kind: str = "wav2vec2", **config) -> Path:
    """A 2-block, width-32 wav2vec 2.0 (or ``hubert`` / ``wavlm``) with its feature extractor;
    ``config``: more settings (``feat_extract_norm="layer"``: the large models' front end)."""
    import torch
    import transformers as T

    config_cls, model_cls = {"wav2vec2": (T.Wav2Vec2Config, T.Wav2Vec2Model), "hubert": (T.HubertConfig, T.HubertModel),
                             "wavlm": (T.WavLMConfig, T.WavLMModel)}[kind]
    torch.manual_seed(seed)
    model = model_cls(config_cls(**{**SMALL, **CNN, **config}))
    model.save_pretrained(folder)
    T.Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, do_normalize=True,
                               return_attention_mask=True).save_pretrained(folder)
    return folder


def save_whisper(folder: Path, seed: int = 0) -> Path:
    """A 2-block, width-32 Whisper with a 2-second window (100 encoder positions)."""
    import torch
    import transformers as T

    torch.manual_seed(seed)
    config = T.WhisperConfig(d_model=32, encoder_layers=2, decoder_layers=1, encoder_attention_heads=2,
                             decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=80,
                             max_source_positions=100, max_target_positions=32, vocab_size=100, pad_token_id=0,
                             bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)
    T.WhisperModel(config).save_pretrained(folder)
    T.WhisperFeatureExtractor(feature_size=80, chunk_length=2).save_pretrained(folder)
    return folder


def save_ast(folder: Path, seed: int = 0) -> Path:
    import torch
    import transformers as T

    torch.manual_seed(seed)
    config = T.ASTConfig(**SMALL, max_length=100, num_mel_bins=64, patch_size=16, frequency_stride=10, time_stride=10)
    T.ASTModel(config).save_pretrained(folder)
    T.ASTFeatureExtractor(num_mel_bins=64, max_length=100).save_pretrained(folder)
    return folder


def save_clap(folder: Path, seed: int = 0) -> Path:
    import torch
    import transformers as T

    torch.manual_seed(seed)
    audio = T.ClapAudioConfig(spec_size=128, window_size=4, num_mel_bins=64, patch_size=4, patch_stride=(4, 4),
                              hidden_size=32, depths=[1, 1], num_attention_heads=[2, 2], patch_embeds_hidden_size=16,
                              enable_fusion=False, projection_dim=16)
    text = T.ClapTextConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                            intermediate_size=64, max_position_embeddings=64, projection_dim=16)
    config = T.ClapConfig(text_config=text.to_dict(), audio_config=audio.to_dict(), projection_dim=16)
    T.ClapModel(config).save_pretrained(folder)
    T.ClapFeatureExtractor(feature_size=64, sampling_rate=16000, max_length_s=2, hop_length=160, fft_window_size=400,
                           truncation="rand_trunc", padding="repeatpad").save_pretrained(folder)
    return folder


HEAR_MODULE = '''
"""A tiny module with the HEAR 2021 API: log spectra of 25 ms frames, projected to 16 dims."""
import torch

HOP, WINDOW = 160, 400


class Model(torch.nn.Module):
    sample_rate = 16000
    scene_embedding_size = 16
    timestamp_embedding_size = 16

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(WINDOW // 2 + 1, 16)


def load_model(model_file_path=""):
    torch.manual_seed(0)
    model = Model()
    if model_file_path:
        model.load_state_dict(torch.load(model_file_path, weights_only=True))
    return model


def get_timestamp_embeddings(audio, model):
    if audio.shape[1] < WINDOW:
        audio = torch.nn.functional.pad(audio, (0, WINDOW - audio.shape[1]))
    frames = audio.unfold(1, WINDOW, HOP)  # [n_sounds, n_frames, WINDOW]
    spectra = torch.log(torch.fft.rfft(frames).abs() + 1e-3)
    emb = torch.tanh(model.proj(spectra))
    timestamps = (torch.arange(frames.shape[1], device=audio.device) * HOP + WINDOW / 2) / model.sample_rate * 1000
    return emb, timestamps.expand(audio.shape[0], -1)


def get_scene_embeddings(audio, model):
    return get_timestamp_embeddings(audio, model)[0].mean(1)
'''


def write_hear_module(folder: Path, name: str = "hear_api", api: bool = True) -> Path:
    """``folder/<name>.py``: the tiny HEAR module (``api=False``: without get_timestamp_embeddings)."""
    folder.mkdir(parents=True, exist_ok=True)
    text = HEAR_MODULE if api else HEAR_MODULE.replace("def get_timestamp_embeddings", "def timestamps")
    (folder / f"{name}.py").write_text(textwrap.dedent(text))
    return folder


def save_hear_weights(path: Path, seed: int = 1) -> Path:
    import torch

    torch.manual_seed(seed)
    torch.save({"proj.weight": torch.randn(16, 201) * 0.1, "proj.bias": torch.zeros(16)}, path)
    return path
