"""The model a merge folds: the base with the adapters loaded, several combined into one adapter."""

from __future__ import annotations

from harness.errors import HarnessError, first_line
from harness.merge.options import DENSITY_METHODS
from harness.model.adapters import AdapterInfo, load_adapters
from harness.model.loading import LoadedBase


def combined(base: LoadedBase, infos: list[AdapterInfo], req):
    """`base` with the adapters of `req` (a MergeRequest) attached, in eval mode; several are combined
    into one adapter, "merged", by `req.method` and `req.weights`."""
    model = load_adapters(base.model, infos, req.base)
    if len(infos) > 1:
        weights = req.weights or [1.0 / len(infos)] * len(infos)
        density = req.density if req.method in DENSITY_METHODS else None
        try:
            model.add_weighted_adapter(
                [i.name for i in infos], weights, "merged", combination_type=req.method, density=density
            )
        except ValueError as exc:
            raise HarnessError(f"--method {req.method}: {first_line(exc)}") from None
        model.set_adapter("merged")
    return model.eval()
