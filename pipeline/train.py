"""One training run, start to finish: data, training, evaluation artifacts, model — all in MLflow."""
from __future__ import annotations

import matplotlib.pyplot as plt

from pipeline import data as datasets
from pipeline import distributed, engine, report, tracking
from pipeline.config import RunConfig


def preprocessing(data: datasets.ImageData, config: RunConfig) -> dict:
    """What a consumer needs to turn a raw image into this model's input, without our code."""
    return {
        "classes": data.classes, "channels": data.channels, "image_size": list(data.image_size),
        "mean": data.mean, "std": data.std, "layout": "NCHW float32",
        "recipe": "convert to L (1 channel) or RGB (3), resize to image_size (height, width), "
                  "divide by 255, subtract mean and divide by std per channel",
        "output": "logits; softmax gives class probabilities in the order of classes",
        "dataset": config.dataset, "model": config.model,
    }


def run(config: RunConfig, run_id: str | None = None, progress: bool = True) -> str:
    """Train `config` into MLflow (a new run, or the queued `run_id`) and return the run id.

    Bad input (config, dataset) raises before a new run is created, so nothing half-written is left.
    Under torchrun every process trains its shard; only rank 0 talks to MLflow, so one run results.
    """
    device = engine.pick_device(config.device)
    with distributed.process_group(device):
        if not distributed.is_main():
            return _follow(config)
        client = tracking.connect()
        data = _load(config) if run_id is None else None  # a new run: fail before it exists
        with tracking.tracked_run(client, config, run_id) as run_id:
            data = data or _load(config)  # a queued run: a failure here ends it FAILED
            distributed.share(run_id)
            tracking.log_tags(client, run_id, {
                **tracking.environment_tags(engine.device_name(device)),
                "runboard.classes": len(data.classes), "runboard.train_images": len(data.train),
                "runboard.val_images": len(data.val), "runboard.test_images": len(data.test),
                "runboard.processes": distributed.world_size(),
            })
            tracker = tracking.MlflowTracker(client, run_id)
            result = engine.fit(config, data, tracker, progress=progress)
            log_evaluation(client, run_id, result, data)
            tracking.log_tags(client, run_id, {tracking.TAG_EPOCHS_RUN: result.epochs_run,
                                               tracking.TAG_BEST_EPOCH: result.best_epoch})
            tracking.log_model(result.model, preprocessing(data, config), config.register)
    return run_id


def _load(config: RunConfig) -> datasets.ImageData:
    with distributed.main_first():  # rank 0 downloads, the others then read its copy
        return datasets.load(config)


def _follow(config: RunConfig) -> str:
    """A rank other than 0: the same data and training steps, reporting nowhere; rank 0's run id."""
    data = _load(config)
    run_id = distributed.share(None)
    engine.fit(config, data, engine.NullTracker(), progress=False)
    return run_id


def log_evaluation(client, run_id: str, result: engine.TrainResult, data: datasets.ImageData) -> None:
    """Final test metrics (at the last epoch's step) and the evaluation/ artifacts."""
    values, matrix, per_class = engine.test_metrics(result.test, data.classes)
    tracker = tracking.MlflowTracker(client, run_id)
    tracker.log_metrics(values, step=result.epochs_run)
    tracker.flush()
    tracking.log_json(client, run_id, {"labels": data.classes, "matrix": matrix.tolist()},
                      "evaluation/confusion_matrix.json")
    tracking.log_json(client, run_id, per_class, "evaluation/per_class.json")
    test = result.test
    confidence = test.probabilities.max(axis=1)
    for figure, path in ((report.confusion_matrix_figure(matrix, data.classes), "evaluation/confusion_matrix.png"),
                         (report.misclassified_figure(_pixels(data.test), test.labels, test.predictions,
                                                      confidence, data.classes), "evaluation/misclassified.png")):
        tracking.log_figure(client, run_id, figure, path)
        plt.close(figure)


def _pixels(split: datasets.Split):
    """What the misclassified grid indexes: the uint8 array, or the files, decoded only for the shown ones."""
    return split.images.numpy() if split.in_memory else split.images
