"""The command line: `python -m pipeline COMMAND ...`, COMMAND one of train, lr-find, init, predict, export,
compare, submit, audit, study, continue, cancel, resume, queue, worker.

Thin callers of the library. Each command returns its exit code; errors end it through
errors.run_command, the one table of exit codes: 0 success; 2 a bad value, dataset, run or model
(one line naming it, nothing written); 1 the tracking store cannot be used or training failed (the
run ends FAILED); 130 interrupted or cancelled (the run ends KILLED).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

from pipeline import config as cfg
from pipeline import errors, settings


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not usage + line
        self.exit(errors.USAGE, f"error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m pipeline", description="Train and track image classifiers in MLflow.")
    commands = parser.add_subparsers(dest="command", required=True)

    # --- training ---
    train = commands.add_parser("train", help="train one run and log it to MLflow",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    cfg.add_arguments(train)
    train.add_argument("--run-id", default=None, help=argparse.SUPPRESS)  # a queued run: its config is in MLflow
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    find = commands.add_parser("lr-find", help="a learning-rate range test: loss against an exponentially "
                               "growing lr; prints the suggested lr and logs the test as its own run",
                               formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    cfg.add_arguments(find)
    find.add_argument("--steps", type=int, default=100, help="optimizer steps at most (the test stops early "
                      "once the loss diverges)")
    find.add_argument("--json", action="store_true", help="print one JSON object: run_id, suggestion, steepest, "
                      "min_lr, lrs, losses, smoothed")
    commands.add_parser("init", help="create a new tracking store's tables (before several processes open it)")

    # --- models in use ---
    predict = commands.add_parser("predict", help="print the top classes of images under a logged model")
    predict.add_argument("model_uri", metavar="MODEL_URI",
                         help="models:/NAME@ALIAS, models:/NAME/VERSION or runs:/RUN_ID/model")
    predict.add_argument("images", metavar="IMAGE", nargs="+", help="image files (png, jpg, webp, bmp, gif, ...)")
    predict.add_argument("--json", action="store_true", help="one JSON object per image and line")
    predict.add_argument("--calibrated", action="store_true",
                         help="show calibrated probabilities: the logits divided by the temperature the model "
                              "carries (fitted on its validation split); the output says which it shows")
    predict.add_argument("--top", type=int, default=3, metavar="K", help="classes to show per image (default: 3)")
    predict.add_argument("--explain", metavar="OUT_DIR", default=None,
                         help="also write one PNG per image to OUT_DIR: what drove the prediction, over the image "
                              "(Grad-CAM for conv nets, integrated gradients for the mlp)")
    predict.add_argument("--explain-class", metavar="CLASS", default=None,
                         help="with --explain: explain this class instead of each image's predicted one")

    export = commands.add_parser("export", help="export a registered version to ONNX and int8, evaluate and log "
                                 "each variant beside the original")
    export.add_argument("model_uri", metavar="MODEL_URI", help="models:/NAME/VERSION or models:/NAME@ALIAS")
    export.add_argument("--register", default="", metavar="NAME",
                        help="also register each variant as a new version of NAME")
    export.add_argument("--no-int8", dest="int8", action="store_false", help="ONNX only, no int8 quantization")
    export.add_argument("--quiet", action="store_true", help="no progress bar")
    # pruning (pipeline/serving/prune.py): each --prune is one variant, fine-tuned, exported, with its int8
    export.add_argument("--prune", action="append", default=[], metavar="KIND:R",
                        help="instead of plain ONNX/int8: channels:R removes the share R of prunable channels "
                             "(Torch-Pruning, L1, classifier kept), weights:R zeroes the share R of weights by global "
                             "magnitude; R in (0, 0.95]; repeat for more variants")
    export.add_argument("--finetune-epochs", type=int, default=2, metavar="N",
                        help="with --prune: epochs of fine-tuning on the source run's training split (default: 2)")
    export.add_argument("--max-accuracy-drop", type=float, default=0.01, metavar="D",
                        help="with --prune: test accuracy a variant may lose (0.01 = one point) before it is "
                             "flagged and not registered (default: 0.01)")

    compare = commands.add_parser("compare", help="is B really better than A? a paired test on the same test images "
                                  "(2x2 table, bootstrap interval, exact McNemar)")
    compare.add_argument("a", metavar="A", help="run id or model URI (the baseline)")
    compare.add_argument("b", metavar="B", help="run id or model URI (the challenger)")
    compare.add_argument("--resamples", type=int, default=10_000, metavar="N",
                         help="paired bootstrap resamples (default: 10000)")
    compare.add_argument("--seed", type=int, default=0, help="the bootstrap's random seed (default: 0)")

    # --- the queue ---
    submit = commands.add_parser("submit", help="queue a training run for the worker; prints its run id",
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    cfg.add_arguments(submit)
    study = commands.add_parser("study", help="queue an Optuna study: trials sampled (TPE or random) over --search "
                                "ranges, bad ones pruned early; prints the study's run id last",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    cfg.add_arguments(study)
    study.add_argument("--trials", type=int, required=True, metavar="N", help="trials in all")
    study.add_argument("--parallel", type=int, default=1, metavar="K", help="trials queued or running at once")
    study.add_argument("--search", action="append", default=[], metavar="NAME=SPEC", required=True,
                       help="a field to search: LOW:HIGH (uniform), LOW:HIGH:log, or A,B,C (a choice); repeat "
                            "for more fields")
    study.add_argument("--objective", default="val_accuracy", choices=("val_accuracy", "val_loss"),
                       help="the last epoch's value is the trial's score; val_accuracy is maximized, val_loss "
                            "minimized; each epoch's value feeds the pruner")
    study.add_argument("--pruner", default="median", choices=("median", "hyperband", "none"),
                       help="stops a trial at the end of an epoch where it trails the others")
    study.add_argument("--sampler", default="tpe", choices=("tpe", "random"), help="how trials pick their values")
    more = commands.add_parser("continue", help="give a study more trials; its sampler learns from all earlier ones")
    more.add_argument("run_id", metavar="STUDY_RUN_ID", help="the study's run id, as `study` printed it")
    more.add_argument("--trials", type=int, required=True, metavar="N", help="trials to add")
    cancel = commands.add_parser("cancel", help="cancel queued or running runs or studies (they end KILLED)")
    cancel.add_argument("run_ids", metavar="RUN_ID", nargs="+", help="run ids, as `submit` printed them")
    resume = commands.add_parser("resume", help="queue FAILED or KILLED runs again: a worker continues each "
                                                "from its last checkpoint, in the same MLflow run")
    resume.add_argument("run_ids", metavar="RUN_ID", nargs="+", help="run ids")
    audit = commands.add_parser("audit", help="queue a data audit of an image folder (label errors, duplicates, "
                                "leaks across the test split); prints its run id last")
    audit.add_argument("dataset", metavar="imagefolder:PATH", help="the class-per-folder images, under the data root")
    audit.add_argument("--folds", type=int, default=4, help="K of the K-fold cross-validation that scores every image "
                       "with a model that never trained on it (default: 4)")
    audit.add_argument("--model", default="cnn", choices=cfg.MODELS, help="the fold models' architecture (default: cnn)")
    audit.add_argument("--epochs", type=int, default=5, help="epochs per fold model (default: 5)")
    audit.add_argument("--image-size", type=int, default=0, help="as for train: 0 lets the folder choose (default: 0)")
    audit.add_argument("--exclude", default="", help="as for train: a list of files to leave out")
    audit.add_argument("--experiment", default="runboard", help="MLflow experiment (default: runboard)")
    audit.add_argument("--here", action="store_true", help="run it in this process now, with a progress bar, "
                       "instead of queueing it for the worker")
    audit.add_argument("--quiet", action="store_true", help="no progress bar (with --here)")
    commands.add_parser("queue", help="list queued and running runs, oldest first")
    worker = commands.add_parser("worker", help="train queued runs, each in its own process, until stopped")
    worker.add_argument("--concurrency", type=int, default=None, metavar="N",
                        help="runs trained at once (default: RUNBOARD_WORKER_CONCURRENCY, else one per GPU, "
                             "one on a CPU-only machine)")
    worker.add_argument("--burst", action="store_true", help="exit once the queue is empty and every run ended")
    worker.add_argument("--max-jobs", type=int, default=None, metavar="N", help="exit after starting N runs")
    worker.add_argument("--experiment", default=None, metavar="NAME",
                        help="train (and reap) only the runs of this experiment (default: every experiment's)")
    worker.add_argument("--cold-stop", action="store_true",
                        help="the first SIGINT/SIGTERM also stops the running runs (they end KILLED, resumable), "
                             "as `make run`'s Ctrl-C stops everything; without it the first waits for them")
    return parser


def _quiet_mlflow() -> None:
    logging.getLogger("mlflow").setLevel(logging.WARNING)  # after mlflow's import configured it


# --- training ------------------------------------------------------------------------------------
def train(args) -> int:
    if args.run_id:  # started by the queue: the run holds its config (and its kind: training or pruning)
        from pipeline.queue import jobs

        return jobs.queued_process(args.run_id, progress=not args.quiet)
    config = cfg.from_args(args)  # before the heavy imports: a typo answers at once
    from pipeline.runs import train as training

    _quiet_mlflow()
    run_id = training.run(config, progress=not args.quiet)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one line from rank 0, not one per process
        print(f"run {run_id} finished; browse it with: mlflow ui --backend-store-uri {settings.tracking_uri()}")
    return errors.OK


def lr_find(args) -> int:
    """0 with the suggestion printed; 2 for a bad option or dataset; 1 when the test itself fails."""
    if not 10 <= args.steps <= 10_000:
        raise errors.UserError(f"--steps must be from 10 to 10000, got {args.steps}")
    config = cfg.from_args(args)
    from pipeline.runs import lr_find as range_test

    _quiet_mlflow()
    run_id, result = range_test.run(config, steps=args.steps)
    if args.json:
        print(json.dumps({"run_id": run_id, **result.to_json()}))
    else:
        print(f"suggested lr {result.suggestion:.3g} (smoothed loss lowest at {result.min_lr:.3g}, "
              f"falls fastest at {result.steepest:.3g}); logged as run {run_id}")
    return errors.OK


def init(args) -> int:
    from pipeline.runs import tracking

    tracking.connect()
    print(f"tracking store ready: {settings.tracking_uri()}")
    return errors.OK


# --- models in use -------------------------------------------------------------------------------
def predict(args) -> int:
    """0; 2 for a bad --top or model URI (nothing predicted); 1 when some image could not be read."""
    if args.top < 1:
        raise errors.UserError(f"--top must be at least 1, got {args.top}")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from pipeline.serving import predict as predictions

    _quiet_mlflow()
    model = predictions.load(args.model_uri)
    if args.calibrated and not model.preprocessing.temperature:
        raise errors.UserError(f"{model.ref.label} carries no temperature (trained before runs were calibrated): "
                               "drop --calibrated, or train it again")
    results = predictions.predict_many(model, [(path, path) for path in args.images], top=args.top,
                                       calibrated=args.calibrated)
    if not args.json:
        print(f"probabilities: {predictions.probability_kind(model.preprocessing, args.calibrated)}", file=sys.stderr)
    written = _explanations(model, results, args.explain, args.explain_class) if args.explain else {}
    for r in results:
        if args.json:
            print(json.dumps({"image": r.name, "error": r.error.removeprefix(f"{r.name}: ")} if r.error
                             else {**r.prediction.to_json(r.name), **({"explanation": written[r.name]}
                                                                      if r.name in written else {})}))
        elif r.error:
            print(f"error: {r.error}", file=sys.stderr)
        else:
            top = ", ".join(f"{label} {p:.1%}" for label, p in r.prediction.top)
            print(f"{r.name}: {r.prediction.label} ({r.prediction.probability:.1%})  top: {top}")
    return errors.FAILED if any(r.error for r in results) else errors.OK


def _explanations(model, results, out_dir: str, target: str | None) -> dict[str, str]:
    """Write `<image stem>.png` overlays for the usable images to out_dir: {image: PNG path}."""
    from pathlib import Path

    import matplotlib.pyplot as plt
    import numpy as np

    from pipeline.serving import explain
    from pipeline.training import figures

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise errors.UserError(f"--explain {out_dir}: exists and is not a folder")
    usable = [r for r in results if r.prediction]
    explainer = explain.for_predictor(model)
    maps = explainer.explain(np.stack([r.prepared for r in usable]), target) if usable else []
    out.mkdir(parents=True, exist_ok=True)
    written, taken = {}, set()
    for r, e in zip(usable, maps):
        stem = Path(r.name).stem or "image"
        name, i = f"{stem}.png", 1
        while name in taken:  # a.png from two folders: a.png, a-2.png
            i += 1
            name = f"{stem}-{i}.png"
        taken.add(name)
        original = r.image.copy()
        original.thumbnail((256, 256))  # a big photo needs no more pixels to show where the map falls
        title = (f"{Path(r.name).name}: predicted {r.prediction.label} ({r.prediction.probability:.0%}); "
                 f"{e.method} for {e.label}" + (" (no evidence)" if e.empty else ""))
        figure = figures.explanation_figure(np.asarray(original), r.prepared, e.heat, title)
        figure.savefig(out / name)
        plt.close(figure)
        written[r.name] = str(out / name)
    if written:
        print(f"wrote {len(written)} explanation(s) to {out}", file=sys.stderr)
    return written


def export(args) -> int:
    """0 with a table of the variants; 2 when the model cannot be exported or quantized (nothing logged)."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from tqdm.auto import tqdm

    from pipeline.serving import export as exporting

    if args.prune:
        return _prune(args)
    _quiet_mlflow()
    stages = 5 + 3 * args.int8  # load, export, evaluate original and ONNX, log; int8: quantize, evaluate, log
    with tqdm(total=stages, unit="stage", disable=args.quiet, file=sys.stderr) as bar:
        started = []

        def step(what: str) -> None:  # called as each stage starts: the previous one is done
            bar.update(1 if started else 0)
            started.append(what)
            bar.set_description(what)

        report = exporting.export(args.model_uri, args.register, args.int8, step)
        bar.update(bar.total - bar.n)
    print(exporting.summary(report))
    for v in report.variants:
        registered = f", registered as {v.registered}" if v.registered else ""
        print(f"{v.variant}: {v.model_uri} (run {v.run_id}){registered}")
    return errors.OK


def compare(args) -> int:
    """0 with the comparison printed; 2 when the two cannot be compared pair by pair (saying why)."""
    if not 100 <= args.resamples <= 1_000_000:
        raise errors.UserError(f"--resamples must be from 100 to 1000000, got {args.resamples}")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from pipeline.runs import tracking
    from pipeline.serving import paired

    _quiet_mlflow()
    client = tracking.connect()
    a, b = paired.load(client, args.a), paired.load(client, args.b)
    print(paired.report(paired.compare(a, b, args.resamples, args.seed)))
    return errors.OK


def _prune(args) -> int:
    """One pruned variant (and its int8) per --prune, each fine-tuned in its own tracked run."""
    from tqdm.auto import tqdm

    from pipeline.serving import prune as pruning

    plans = [pruning.plan(args.model_uri, spec, args.finetune_epochs, args.int8, args.register,
                          args.max_accuracy_drop) for spec in args.prune]  # every refusal before any work
    _quiet_mlflow()
    for plan in plans:
        with tqdm(total=6, unit="stage", disable=args.quiet, file=sys.stderr, desc=plan.variant) as bar:
            report = pruning.run(plan, step=lambda what: (bar.update(1), bar.set_description(f"{plan.variant}: {what}")),
                                 progress=not args.quiet)
            bar.update(bar.total - bar.n)
        print(pruning.summary(report))
        for v in report.variants:
            registered = f", registered as {v.registered}" if v.registered else ""
            print(f"{v.variant}: {v.model_uri} (run {v.run_id}){registered}")
        if report.flag and plan.register:
            print(f"warning: not registered as {plan.register}: {report.flag}", file=sys.stderr)
    return errors.OK


# --- the queue -----------------------------------------------------------------------------------
def submit(args) -> int:
    config = cfg.from_args(args)  # before the heavy imports: a typo answers at once
    from pipeline.queue import jobs

    print(jobs.submit(config))
    return errors.OK


def audit(args) -> int:
    """Queue (or with --here, run) an audit; its run id is the last line. 2 when the folder is refused."""
    config = cfg.RunConfig(dataset=args.dataset, model=args.model, epochs=args.epochs, image_size=args.image_size,
                           exclude=args.exclude, experiment=args.experiment)
    from pipeline.runs import audit_request

    audit_request.check(config, args.folds)  # before the heavy imports: a refusal answers at once
    if args.here:
        from pipeline.runs import audit as audits

        _quiet_mlflow()
        run_id = audits.run(config, args.folds, progress=not args.quiet)
        print(f"audit finished: {settings.tracking_uri()}", file=sys.stderr)
        print(run_id)
        return errors.OK
    from pipeline.queue import jobs

    print(jobs.submit_audit(config, args.folds))
    return errors.OK


def study(args) -> int:
    """Queue a study; 2 with one line naming the field when a --search spec or option is refused."""
    config = cfg.from_args(args)
    from pipeline.queue import study as studies

    space = studies.parse_search(args.search)  # refused before anything is queued
    _quiet_mlflow()
    run_id = studies.submit(config, space, args.trials, args.parallel, args.objective, args.pruner, args.sampler)
    print(f"study of {args.trials} trials ({args.sampler}, {args.pruner} pruner, {args.parallel} at once) over "
          f"{studies.describe(space)}; a worker runs its trials", file=sys.stderr)
    print(run_id)
    return errors.OK


def continue_study(args) -> int:
    from pipeline.queue import study as studies

    print(studies.extend(args.run_id, args.trials))
    return errors.OK


def cancel(args) -> int:
    from pipeline.queue import study as studies
    from pipeline.runs import tracking

    client = tracking.connect()
    for run_id in args.run_ids:
        print(studies.cancel(run_id, client))  # a study's trials too; any other run as jobs.cancel does
    return errors.OK


def resume(args) -> int:
    from pipeline.queue import jobs
    from pipeline.runs import tracking

    client = tracking.connect()
    for run_id in args.run_ids:
        print(jobs.resume(run_id, client))
    return errors.OK


def queue(args) -> int:
    from pipeline import names
    from pipeline.queue import jobs
    from pipeline.runs import tracking

    runs = jobs.unfinished(tracking.connect())
    runs.sort(key=lambda r: (r.info.status != names.RUNNING, float(r.data.tags.get(names.TAG_QUEUED) or 0)))
    for r in runs:
        tags, waited = r.data.tags, time.time() - float(r.data.tags.get(names.TAG_QUEUED) or 0)
        where = f"on {tags[names.TAG_WORKER]}" if names.TAG_WORKER in tags else f"queued {waited:.0f} s ago"
        attempt = f"  (attempt {tags[names.TAG_ATTEMPT]})" if names.TAG_ATTEMPT in tags else ""
        print(f"{r.info.run_id}  {r.info.status:<9}  {r.info.run_name}  {where}{attempt}")
    if not runs:
        print("the queue is empty")
    return errors.OK


def worker(args) -> int:
    from pipeline.queue import worker as workers

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    _quiet_mlflow()
    if args.concurrency is not None and args.concurrency < 1:
        raise errors.UserError(f"--concurrency must be at least 1, got {args.concurrency}")
    workers.Worker(concurrency=args.concurrency, experiment=args.experiment,
                   cold_stop=args.cold_stop).work(burst=args.burst, max_jobs=args.max_jobs)
    return errors.OK


COMMANDS = {"train": train, "lr-find": lr_find, "init": init, "predict": predict, "export": export,
            "compare": compare, "submit": submit, "audit": audit, "study": study, "continue": continue_study,
            "cancel": cancel, "resume": resume, "queue": queue, "worker": worker}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    errors.interrupt_on_stop_signals()  # a cancel from the worker ends the run KILLED
    return errors.run_command(COMMANDS[args.command], args)
