"""Stage functions: ``run(ctx: StageContext) -> dict`` for each node type of the graph.

They run inside jobs (never in the CLI process), so they may import torch and lhotse.
Each writes only into ``ctx.workdir`` (published atomically by the job) or into a
content-addressed folder of the shared cache.
"""
