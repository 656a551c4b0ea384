"""audio-harness: run a whole audio pre-training study from one declarative file.

study.yaml -> Study -> job graph -> (local | debug | slurm) dispatch -> store -> results -> report.

This package (the study, graph, store, dispatch and CLI layer) imports no torch at
module level, so that ``harness plan`` and ``harness status`` answer in about a second.
"""

__version__ = "0.1.0"
