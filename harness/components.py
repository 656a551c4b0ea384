"""What the planner knows about components: versions, needs and stages, read from their
declarations (:mod:`harness.registry`) without importing torch.

A component's version goes into the key of every node the component runs, so bumping it
re-runs exactly those nodes.
"""

from __future__ import annotations

from encoders import encoder_version  # noqa: F401  (torch-free: read from the declarations)
from encoders.objectives import objective_needs, objective_version  # noqa: F401
from harness.registry import module_version, registry

# Feature extraction shared by pre-training and embedding (the paper's input).
FEATURES = {"kind": "kaldi-fbank", "num_mel_bins": 80, "sample_rate": 16000, "version": "2"}

# Other front ends an encoder may declare (``meta={"features": <name>}`` in its declaration):
# PANNs' 64-bin log-mel at 32 kHz for CNN14 (BLAT's audio encoder; encoders/features.py).
FRONT_ENDS = {
    "kaldi-fbank": FEATURES,
    "panns-logmel": {"kind": "panns-logmel", "num_mel_bins": 64, "sample_rate": 32000, "n_fft": 1024,
                     "hop_length": 320, "f_min": 50, "f_max": 14000, "version": "1"},
}


def features_for(encoder: str) -> dict:
    """The feature settings encoder ``encoder`` reads: its declared front end, else FEATURES
    (so the keys of every encoder that declares none stay what they were)."""
    return FRONT_ENDS[registry("encoder").get(encoder).meta.get("features", "kaldi-fbank")]


def stages() -> list[str]:
    """Every stage, in the order the graph runs them (their declared ``meta.order``)."""
    entries = registry("stage").entries.values()
    return [e.name for e in sorted(entries, key=lambda e: (e.meta.get("order", 0), e.name))]


def shared_stages() -> set[str]:
    """Stages whose outputs live in the shared cache ($HARNESS_HOME), not in the study folder."""
    return {e.name for e in registry("stage").entries.values() if e.meta.get("shared")}


def stage_version(stage: str) -> str:
    """The declared version of a stage's own code (``harness/stages/<stage>.py``)."""
    return registry("stage").get(stage).version


def parser_version(backend: str) -> str:
    return registry("parser").get(backend).version


def captioner_version(backend: str) -> str:
    return registry("captioner").get(backend).version


def backend_keys(role: str) -> dict[str, set[str]]:
    """For the ``captioner`` or ``parser`` role: backend -> the block keys it reads."""
    return {name: set(e.meta.get("reads", ())) for name, e in registry(role).entries.items()}


def tagsystem_version(merge_synonyms: bool = False) -> str:
    version = module_version("harness.tagging.tagsystem")
    return version + "+" + module_version("harness.tagging.synonyms") if merge_synonyms else version


def minisuite_version() -> str:
    return module_version("harness.minisuite.spec")
