"""A learning-rate range test as its own small MLflow run (tag runboard.kind=lr_find).

The run holds the config's params, the suggestion as metric `suggested_lr`, the curve as
lr_find/lr_find.json and a picture as lr_find/lr_find.png, so it can be looked at later. It has no
epochs and no model: the Runs page lists it (without scores); Register and Compare leave it out.
"""
from __future__ import annotations

import matplotlib.pyplot as plt

from pipeline import names
from pipeline.config import RunConfig
from pipeline.runs import lifecycle, tracking
from pipeline.training import data as datasets
from pipeline.training import engine, figures, lr_find


def run(config: RunConfig, steps: int = lr_find.STEPS) -> tuple[str, lr_find.RangeTest]:
    """Run the range test on the config's data and model; log it; (run id, result)."""
    data = datasets.load(config)  # bad input fails before a run exists
    client = tracking.connect()
    experiment = tracking.experiment_id(client, config.experiment)
    name = config.run_name or f"lr-find {config.model} on {config.dataset}"
    with lifecycle.tracked(client, None, experiment, name, config.to_params()) as run_id:
        lifecycle.set_tags(client, run_id, {names.TAG_KIND: names.KIND_LR_FIND,
                                            **tracking.environment_tags(engine.device_name(
                                                engine.pick_device(config.device)))})
        result = lr_find.range_test(config, data, steps)
        client.log_metric(run_id, names.SUGGESTED_LR, result.suggestion, step=0)
        tracking.log_json(client, run_id, result.to_json(), names.LR_FIND_JSON)
        figure = figures.lr_find_figure(result.lrs, result.losses, result.smoothed, result.suggestion)
        tracking.log_figure(client, run_id, figure, names.LR_FIND_PNG)
        plt.close(figure)
    return run_id, result
