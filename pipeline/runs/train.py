"""One training run, start to finish: data, training, evaluation artifacts, model — all in MLflow."""
from __future__ import annotations

import time

import matplotlib.pyplot as plt
import numpy as np
from mlflow import MlflowClient

from pipeline import names, settings
from pipeline.config import RunConfig
from pipeline.runs import checkpoints, inputs, kept_predictions, lifecycle, tracking, trials
from pipeline.training import data as datasets
from pipeline.training import distributed, engine, evaluation, figures


def preprocessing(data: datasets.ImageData, config: RunConfig) -> dict:
    """What a consumer needs to turn a raw image into this model's input, without our code."""
    return {
        "classes": data.classes, "channels": data.channels, "image_size": list(data.image_size),
        "mean": data.mean, "std": data.std, "layout": "NCHW float32",
        "resize": names.RESIZE_CENTER_CROP if data.crop else names.RESIZE_STRETCH,
        "recipe": "convert to L (1 channel) or RGB (3), resize to image_size (height, width) averaging "
                  "areas when shrinking (PIL BOX) and bilinearly when enlarging"
                  + (" after scaling, aspect kept, until image_size is 0.875 of it and cutting out the centre "
                     "(ImageNet's Resize 256 + CenterCrop 224)" if data.crop else "")
                  + ", divide by 255, subtract mean and divide by std per channel",
        "normalization": "imagenet" if data.normalization else "dataset",
        "output": "logits; softmax gives class probabilities in the order of classes",
        "dataset": config.dataset, "model": config.model,
    }


def run(config: RunConfig, progress: bool = True) -> str:
    """Train `config` into a new MLflow run and return its id.

    Bad input (config, dataset) raises before the run is created, so nothing half-written is left.
    Under torchrun every process trains its shard; only rank 0 talks to MLflow, so one run results.
    """
    return _train(config, None, progress)


def run_queued(run_id: str, progress: bool = True) -> str:
    """Train the queued run `run_id` with the config it was queued with: the run id is all it needs.

    A resumed run (a later attempt) continues from its checkpoint, in the same MLflow run.
    """
    client = tracking.connect()
    run = client.get_run(run_id)
    pruning = trials.TrialPruning(client, run) if names.TAG_STUDY_ID in run.data.tags else None
    return _train(lifecycle.config_of(client, run), run_id, progress, pruning)


def queued_process(run_id: str, progress: bool = True) -> int:
    """The body of a training process the queue started (`train --run-id ID`, or a pre-warmed spare)."""
    import logging

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # after mlflow's import configured it
    client = tracking.connect()
    if client.get_run(run_id).data.tags.get(names.TAG_KIND) == names.KIND_AUDIT:  # the queue's other job kind
        from pipeline.runs import audit

        audit.run_queued(client, run_id, progress)
    else:
        run_queued(run_id, progress)
    print(f"run {run_id} finished")
    return 0


def _train(config: RunConfig, run_id: str | None, progress: bool, pruning: trials.TrialPruning | None = None) -> str:
    device = engine.pick_device(config.device)
    queued = run_id is not None
    every = settings.checkpoint_seconds()  # a bad value stops here, before a run exists
    with distributed.process_group(device):
        if not distributed.is_main():
            return _follow(config, queued)
        client = tracking.connect()
        data = _load(config) if run_id is None else None  # a new run: fail before it exists
        experiment = tracking.experiment_id(client, config.experiment) if run_id is None else ""
        with lifecycle.tracked(client, run_id, experiment, config.run_name, config.to_params()) as run_id:
            data = data or _load(config)  # a queued run: a failure here ends it FAILED
            distributed.share(run_id)
            log_data(client, run_id, data)
            lifecycle.set_tags(client, run_id, {
                **tracking.environment_tags(engine.device_name(device)),
                names.TAG_CLASSES: len(data.classes), names.TAG_TRAIN_IMAGES: len(data.train),
                names.TAG_VAL_IMAGES: len(data.val), names.TAG_TEST_IMAGES: len(data.test),
                names.TAG_PROCESSES: distributed.world_size(),
                names.TAG_STEPS_PER_EPOCH: engine.steps_per_epoch(len(data.train), config.batch_size,
                                                                  distributed.world_size()),
            })
            tracker, resume = tracking.MlflowTracker(client, run_id), None
            if queued:  # maybe a later attempt: continue where the last checkpoint left off, logging no step twice
                resume = checkpoints.load(client, run_id)
                tracker = checkpoints.ContinuingTracker(tracker, checkpoints.logged_steps(client, run_id))
            lifecycle.training_started(client, run_id)  # queueing and data loading are not training
            writer = checkpoints.CheckpointWriter(client, run_id)
            try:
                result = engine.fit(config, data, tracker, progress=progress, resume=resume, checkpoint=writer,
                                    checkpoint_every=every, should_stop=pruning)
            finally:
                writer.close()
            prepared = preprocessing(data, config)  # the train split's mean/std: computed once
            log_evaluation(client, run_id, result, data, tracker)
            prepared[names.TEMPERATURE_KEY] = kept_predictions.log(client, run_id, result, data, tracker)
            pruned = names.TAG_PRUNED in client.get_run(run_id).data.tags  # also when an earlier attempt was
            if not pruned:  # a pruned trial's model is not worth the upload: its curves and test scores say enough
                log_explanations(client, run_id, result, data, prepared)
            lifecycle.set_tags(client, run_id, {names.TAG_EPOCHS_RUN: result.epochs_run,
                                                names.TAG_BEST_EPOCH: result.best_epoch,
                                                names.TAG_TRAIN_ENDED: f"{time.time():.3f}"})
            if not pruned:
                tracking.log_model(result.model, prepared, config.register)
    return run_id


def _load(config: RunConfig) -> datasets.ImageData:
    with distributed.main_first():  # rank 0 downloads, the others then read its copy
        return datasets.load(config)


def _follow(config: RunConfig, queued: bool) -> str:
    """A rank other than 0: the same data and training steps, reporting nowhere; rank 0's run id."""
    data = _load(config)
    run_id = distributed.share(None)
    resume = checkpoints.load(tracking.connect(), run_id) if queued else None  # read-only, like rank 0's
    engine.fit(config, data, engine.NullTracker(), progress=False, resume=resume)
    return run_id


def log_data(client: MlflowClient, run_id: str, data: datasets.ImageData) -> None:
    """The size the run trained at (a clone with image_size 0 gets the same), and any files left out."""
    height, width = data.image_size
    client.log_param(run_id, names.PARAM_IMAGE_SIZE_RESOLVED, f"{height}x{width}")
    if data.skipped:
        client.log_text(run_id, "\n".join(data.skipped) + "\n", names.SKIPPED_FILES_TXT)
    if data.lineage:
        inputs.log_dataset(client, run_id, data.lineage)


def log_evaluation(client: MlflowClient, run_id: str, result: engine.TrainResult, data: datasets.ImageData,
                   tracker: engine.Tracker | None = None) -> None:
    """Final test metrics (at the last epoch's step) and the evaluation/ artifacts."""
    values, matrix, per_class = evaluation.test_metrics(result.test, data.classes)
    tracker = tracker or tracking.MlflowTracker(client, run_id)
    tracker.log_metrics(values, step=result.epochs_run)
    tracker.flush()
    tracking.log_json(client, run_id, {"labels": data.classes, "matrix": matrix.tolist()}, names.CONFUSION_MATRIX_JSON)
    tracking.log_json(client, run_id, per_class, names.PER_CLASS_JSON)
    test = result.test
    confidence = test.probabilities.max(axis=1)
    for figure, path in ((figures.confusion_matrix_figure(matrix, data.classes), names.CONFUSION_MATRIX_PNG),
                         (figures.misclassified_figure(_pixels(data.test), test.labels, test.predictions,
                                                       confidence, data.classes), names.MISCLASSIFIED_PNG)):
        tracking.log_figure(client, run_id, figure, path)
        plt.close(figure)


def _pixels(split: datasets.Split):
    """What the misclassified grid indexes: the uint8 array, or the files, decoded only for the shown ones."""
    return split.images.numpy() if split.in_memory else split.images


def log_explanations(client: MlflowClient, run_id: str, result: engine.TrainResult, data: datasets.ImageData,
                     preprocessing: dict) -> None:
    """The most confident mistakes with the maps for their predicted and their true class: why the
    model said what it said, and what it saw of the right answer (figure and arrays)."""
    from pipeline.serving import explain, predict

    test = result.test
    confidence = test.probabilities.max(axis=1)
    wrong = np.flatnonzero(test.labels != test.predictions)
    wrong = wrong[np.argsort(-confidence[wrong], kind="stable")][:figures.EXPLAINED_SHOWN]
    pixels = _pixels(data.test)
    images = np.stack([np.asarray(pixels[i]) for i in wrong]) if len(wrong) else \
        np.zeros((0, data.channels, *data.image_size), dtype=np.uint8)
    explainer = explain.Explainer(result.model, predict.Preprocessing.from_metadata(
        {names.PREPROCESSING_KEY: preprocessing}))
    x = explainer.inputs(images)
    for_predicted = explainer.attribute(x, test.predictions[wrong].tolist())
    for_true = explainer.attribute(x, test.labels[wrong].tolist())
    top = np.maximum(np.abs(for_predicted).max(axis=(1, 2)), np.abs(for_true).max(axis=(1, 2)))[:, None, None]
    scale = np.where(top > 0, top, 1.0)  # one scale per image: the two maps' strengths compare
    figure = figures.explanations_figure(images, for_predicted / scale, for_true / scale, test.labels[wrong],
                                         test.predictions[wrong], confidence[wrong], data.classes, explainer.method,
                                         explain.signed(explainer.method))
    tracking.log_figure(client, run_id, figure, names.EXPLANATIONS_PNG)
    plt.close(figure)
    tracking.log_arrays(client, run_id, {
        "test_index": wrong, "images": images, "labels": test.labels[wrong], "predictions": test.predictions[wrong],
        "confidence": confidence[wrong], "for_predicted": for_predicted, "for_true": for_true,
        "classes": np.array(data.classes, dtype=str), "method": np.array(explainer.method)}, names.EXPLANATIONS_NPZ)
