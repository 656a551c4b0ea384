"""The built-in mini suite as a task adapter (built by :mod:`harness.minisuite`, not read from a root)."""

from __future__ import annotations

from harness.registry import Component
from harness.sources._adapter import Adapter
from harness.schema import Num, Str

# A task file names it in `adapter: minisuite`.
COMPONENT = Component(kind="adapter", name="minisuite", target="MiniSuite", version="2")


class MiniSuite(Adapter):
    """The mini suite's tasks (``args.task``): multiclass clips carry ``label``, ``env_mixture``
    clips ``labels``, ``scene_captions`` clips ``captions`` (and their events as ``labels``)."""

    name = "minisuite"
    title = "mini suite"
    layout = "generated into the shared cache"
    root_required = False
    kinds = ("multiclass", "multilabel", "retrieval")

    @property
    def args(self):  # noqa: D102 - the task names are the suite's
        from harness.minisuite.spec import TASKS

        return {"task": Str(choices=sorted(TASKS)), "seed": Num(0, integer=True, min=0),
                "scale": Num(1.0, min=0.0)}

    def schema(self):
        from harness.schema import Obj

        return Obj(dict(self.args), default={})

    def check(self, args, ctx, path="args"):
        out = self.schema().validate(args, path, ctx)
        return out if isinstance(out, dict) else {}
