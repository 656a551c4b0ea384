"""Captions -> tags -> tag systems.

- :mod:`harness.tagging.rules`: the offline rule-based caption parser (the default).
- :mod:`harness.tagging.lexicon`: its stopwords and synonym tables.
- :mod:`harness.tagging.tagsystem`: df·idf ranking, top-K tag systems, label files and
  training targets.

Importing this package is cheap: the lemmatiser is loaded on the first parse.
"""

from harness.tagging.rules import PARSER_VERSION, parse_caption, parse_many
from harness.tagging.tagsystem import (
    TAGSYSTEM_VERSION,
    TagStats,
    build_tag_system,
    filter_clips,
    multi_hot,
    parse_size_name,
    read_label_file,
    score,
    size_name,
    tag_index,
    tag_sequence,
    write_label_file,
)

__all__ = [
    "PARSER_VERSION",
    "TAGSYSTEM_VERSION",
    "TagStats",
    "build_tag_system",
    "filter_clips",
    "multi_hot",
    "parse_caption",
    "parse_many",
    "parse_size_name",
    "read_label_file",
    "score",
    "size_name",
    "tag_index",
    "tag_sequence",
    "write_label_file",
]
