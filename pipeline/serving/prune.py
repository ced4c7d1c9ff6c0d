"""Pruned variants of a registered version: prune, fine-tune as a tracked run, export to ONNX (and int8).

    from pipeline.serving import prune
    report = prune.prune("models:/digits-cnn/1", "channels:0.5", epochs=2)   # logged under experiment `exports`

The job, in order: refuse what cannot work before anything is logged (the spec, the source, a network
with nothing to prune, a pruned network the ONNX exporter rejects); then one run in `exports`, tagged
like export's variants, that fine-tunes the pruned network through the training engine on the source
run's own data and config (checkpointed, resumable, live like any run), logs its test evaluation, and
holds the pruned network as ONNX with the same figures as the other variants. Its int8 twin gets a run
of its own, as export's int8 does. A variant that loses more than `max_drop` of test accuracy is logged
and flagged, never registered. Queued from the dashboard, the same run is SCHEDULED first (queue/jobs.py)
and a worker runs `queued_process`.
"""
from __future__ import annotations

import copy
import dataclasses
import zlib
from typing import Callable

import numpy as np
from mlflow import MlflowClient

from pipeline import names, settings
from pipeline.config import RunConfig
from pipeline.runs import checkpoints, lifecycle, tracking
from pipeline.serving import export, onnx_runtime
from pipeline.training.pruning import PruneError, Spec, parse

__all__ = ["PruneError", "Spec", "parse", "prune", "queued_process", "plan_params", "Plan"]

EPOCHS = 2             # fine-tuning epochs unless asked otherwise
MAX_DROP = 0.01        # test accuracy a variant may lose (one point) before it is flagged and not registered
SAME_LOGITS = 1e-4     # the ONNX export of the pruned net against its PyTorch logits
DROPPED_CONFIG = ("weights", "freeze_epochs", "patience", "compile")  # the source's start, not the fine-tune's


@dataclasses.dataclass(frozen=True)
class Plan:
    """What a prune job does; all of it travels as the run's params, so a queued run needs only its id."""
    source: str
    spec: Spec
    epochs: int = EPOCHS
    int8: bool = True
    register: str = ""
    max_drop: float = MAX_DROP

    @property
    def variant(self) -> str:
        return str(self.spec)


def plan(source: str, spec: str, epochs: int = EPOCHS, int8: bool = True, register: str = "",
         max_drop: float = MAX_DROP) -> Plan:
    """A checked Plan: PruneError (exit 2) for a bad spec, epoch count or limit."""
    if not 1 <= int(epochs) <= 100:
        raise PruneError(f"--finetune-epochs must be from 1 to 100, got {epochs}")
    if not 0 <= float(max_drop) < 1:
        raise PruneError(f"--max-accuracy-drop must be in [0, 1), got {max_drop}")
    return Plan(source.strip(), parse(spec), int(epochs), bool(int8), register.strip(), float(max_drop))


def plan_params(p: Plan) -> dict[str, str]:
    return dict(zip(names.PRUNE_PARAMS, (p.source, str(p.spec), str(p.int8), p.register, str(p.max_drop))))


def plan_of(params: dict[str, str]) -> Plan:
    source, spec, int8, register, drop = (params.get(k, "") for k in names.PRUNE_PARAMS)
    return plan(source, spec, int(params.get("epochs", EPOCHS)), int8 == "True", register, float(drop or MAX_DROP))


@dataclasses.dataclass
class Prepared:
    """Everything measured and built before a run exists."""
    original: object          # the loaded Predictor
    metadata: dict            # its logged metadata (preprocessing)
    config: RunConfig         # the fine-tuning config: the source's, with plan.epochs
    data: object              # training.data.ImageData
    net: object               # the pruned nn.Module, not yet fine-tuned
    x: np.ndarray             # the normalized test split
    labels: np.ndarray
    calibration: np.ndarray   # normalized training images for int8 ranges
    parameters: int           # the original's


def fine_tune_config(params: dict[str, str], p: Plan, label: str) -> RunConfig:
    kept = {k: v for k, v in params.items() if k not in DROPPED_CONFIG}
    return dataclasses.replace(RunConfig.from_params(kept), epochs=p.epochs, experiment=names.EXPORT_EXPERIMENT,
                               run_name=f"{label} · {p.variant}")


def prepare(client: MlflowClient, p: Plan) -> Prepared:
    """Load the source and its data, prune, and check the pruned net exports: every refusal happens here."""
    import torch

    from pipeline.serving import explain
    from pipeline.training import data as datasets
    from pipeline.training import pruning

    original, metadata = export._check_source(client, p.source)
    ref, pre = original.ref, original.preprocessing
    params = client.get_run(ref.run_id).data.params if ref.run_id else {}
    if "dataset" not in params:
        raise PruneError(f"{ref.label}: its source run has no dataset param, so there is no training split to "
                         "fine-tune on")
    config = fine_tune_config(params, p, ref.label)
    data = datasets.load(config)
    if tuple(data.image_size) != pre.image_size or len(data.classes) != len(original.classes):
        raise PruneError(f"{ref.label}: its source run's data ({params['dataset']}) no longer matches the "
                         "model's input or classes")
    test, labels = export._split_arrays(data.test)
    x = pre.normalize_array(test)
    calibration = pre.normalize_array(export._split_arrays(data.train, export.CALIBRATION_IMAGES)[0])
    net = explain.rebuild(original)
    before, trial = pruning.parameters(net), copy.deepcopy(net)  # a masked net cannot be deep-copied
    pruning.apply(net, p.spec, torch.from_numpy(x[:2]))
    if p.spec.kind == "channels":  # new shapes; weights pruning keeps them, so the copy exports the same graph
        trial = copy.deepcopy(net)
    export._refusing(f"{ref.label}: the network pruned by {p.variant} cannot be exported to ONNX",
                     export.to_onnx, trial, torch.from_numpy(x[:2]))
    return Prepared(original, metadata, config, data, net, x, labels, calibration, before)


def _logits(net, x: np.ndarray) -> np.ndarray:
    """float32 logits of a module in eval mode (the caller sets it: MLflow's pt2 graph refuses eval())."""
    import torch

    with torch.no_grad():
        return np.concatenate([net(torch.from_numpy(x[i:i + onnx_runtime.BATCH])).float().numpy()
                               for i in range(0, len(x), onnx_runtime.BATCH)])


# ---------------------------------------------------------------------------------------------
# the job

def prune(source: str, spec: str, epochs: int = EPOCHS, int8: bool = True, register: str = "",
          max_drop: float = MAX_DROP, step: Callable[[str], None] | None = None, client: MlflowClient | None = None,
          runs: int = export.LATENCY_RUNS, progress: bool = True) -> "PruneReport":
    """Prune `source` as `spec` says, fine-tune, export, evaluate and log; the Report lists the pruned
    variant (and its int8). Refusals (PruneError, ExportError, ModelError) leave the store as it was."""
    p = plan(source, spec, epochs, int8, register, max_drop)
    return run(p, None, step, client, runs, progress)


def queued_process(run_id: str, progress: bool = True) -> int:
    """A worker's child for a queued prune run (`train --run-id ID` dispatches here, see queue/jobs.py)."""
    client = tracking.connect()
    run(plan_of(client.get_run(run_id).data.params), run_id, None, client, progress=progress)
    print(f"prune run {run_id} finished")
    return 0


def run(p: Plan, run_id: str | None = None, step: Callable[[str], None] | None = None,
        client: MlflowClient | None = None, runs: int = export.LATENCY_RUNS, progress: bool = True) -> PruneReport:
    """The whole job for a checked Plan: into a new run, or into the queued `run_id` (resumed from its checkpoint)."""
    from pipeline.runs import train as training
    from pipeline.training import engine

    step = step or (lambda what: None)
    client = client or tracking.connect()
    every = settings.checkpoint_seconds()
    step("pruning")
    ready = prepare(client, p) if run_id is None else None  # a new run: refused before it exists
    name, params = (ready.config.run_name, {**ready.config.to_params(), **plan_params(p), "variant": p.variant}) \
        if ready else ("", {})
    experiment = tracking.experiment_id(client, names.EXPORT_EXPERIMENT)
    with lifecycle.tracked(client, run_id, experiment, name, params) as run_id:
        ready = ready or prepare(client, p)  # a queued run: a refusal now ends it FAILED, with the reason
        ref = ready.original.ref
        report = PruneReport(ref.load_uri, ref.label, export.Variant(names.ORIGINAL, {}))
        lifecycle.set_tags(client, run_id, {names.TAG_KIND: names.KIND_PRUNE, names.TAG_EXPORT_SOURCE: ref.load_uri,
                                            names.TAG_VARIANT: p.variant, names.TAG_PRUNE: p.variant})
        tracker, resume = tracking.MlflowTracker(client, run_id), checkpoints.load(client, run_id)
        if resume is not None:  # a later attempt: no step logged twice
            tracker = checkpoints.ContinuingTracker(tracker, checkpoints.logged_steps(client, run_id))
        reference = _logits(ready.original.module, ready.x)
        before = export.compare(reference, _logits(ready.net, ready.x), ready.labels)[names.TEST_ACCURACY]
        tracker.log_metrics({names.PRUNED_TEST_ACCURACY: before}, step=0)
        step("fine-tuning")
        lifecycle.training_started(client, run_id)
        writer = checkpoints.CheckpointWriter(client, run_id)
        try:
            result = engine.fit(ready.config, ready.data, tracker, progress=progress, resume=resume,
                                checkpoint=writer, checkpoint_every=every, model=ready.net)
        finally:
            writer.close()
        training.log_evaluation(client, run_id, result, ready.data, tracker)
        step("exporting the pruned network")
        made, figures = _export(ready, p, result.model)
        step("evaluating")
        _evaluate(report, ready, reference, made, figures, runs)
        report.flag = _flag(report, p)
        register = "" if report.flag else p.register  # a flagged variant is logged, never registered
        if report.flag:
            lifecycle.set_tags(client, run_id, {names.TAG_ACCURACY_FLAG: report.flag})
        step(f"logging {p.variant}")
        _log_pruned(client, report, report.variants[0], ready.metadata, register, run_id, result.epochs_run)
    for v in report.variants[1:]:  # the int8 twin: its own run, as export's int8
        step(f"logging {v.variant}")
        export._log(client, report, v, ready.metadata, {k: ready.config.to_params()[k] for k in ("dataset", "model")},
                    register, {names.TAG_PRUNE: p.variant, names.TAG_KIND: names.KIND_PRUNE,
                               **({names.TAG_ACCURACY_FLAG: report.flag} if report.flag else {})})
    return report


@dataclasses.dataclass
class PruneReport(export.Report):
    flag: str = ""  # why the variants were not registered: accuracy dropped past the limit


def _export(ready: Prepared, p: Plan, model) -> tuple[dict[str, bytes], dict[str, float]]:
    """The fine-tuned pruned net as ONNX (checked against its PyTorch logits) and int8; its size figures."""
    import torch

    from pipeline.training import pruning

    net = pruning.finalize(model).cpu().eval()
    label = ready.original.ref.label
    proto = export._refusing(f"{label}: {p.variant} cannot be exported to ONNX", export.to_onnx, net,
                             torch.from_numpy(ready.x[:2]))
    diff = float(np.abs(onnx_runtime.logits(onnx_runtime.session(proto), ready.x) - _logits(net, ready.x)).max())
    if not diff <= SAME_LOGITS:
        raise export.ExportError(f"{label}: the ONNX export of {p.variant} differs from its PyTorch logits by "
                                 f"{diff:.1e} (more than {SAME_LOGITS:.0e})")
    made = {p.variant: proto}
    if p.int8:
        made[p.variant + names.INT8_SUFFIX] = export._refusing(
            f"{label}: {p.variant} cannot be quantized to int8 (prune with --no-int8)", export.to_int8, proto,
            ready.calibration)
    figures = {names.SPARSITY: 1 - pruning.nonzero(net) / ready.parameters, names.PARAMETERS: pruning.parameters(net),
               names.ONNX_MAX_LOGIT_DIFF: diff}
    return made, figures


def _evaluate(report: PruneReport, ready: Prepared, reference: np.ndarray, made: dict[str, bytes],
              figures: dict[str, float], runs: int) -> None:
    """Each variant (and the original) on the test split, one thread each, as export measures them."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(export.THREADS)
    try:
        original = ready.original
        report.original.metrics.update({
            **export.compare(reference, reference, ready.labels), names.MODEL_SIZE: export._size(report.source),
            names.PARAMETERS: ready.parameters, names.SPARSITY: 0.0,
            **export._latencies(export._torch_run(original.module), ready.x, runs)})
        for variant, model in made.items():
            session = onnx_runtime.session(model, export.THREADS)
            input_name = session.get_inputs()[0].name
            report.variants.append(export.Variant(variant, {
                **export.compare(reference, onnx_runtime.logits(session, ready.x), ready.labels), **figures,
                names.COMPRESSED_SIZE: len(zlib.compress(model, 6)),
                **export._latencies(lambda b, s=session: s.run(None, {input_name: b}), ready.x, runs)}, model))
    finally:
        torch.set_num_threads(threads)


def _flag(report: PruneReport, p: Plan) -> str:
    """Why the variants may not be registered ('' when they may): test accuracy fell past the limit."""
    base = report.original.metrics[names.TEST_ACCURACY]
    for v in report.variants:
        v.metrics[names.ACCURACY_DROP] = base - v.metrics[names.TEST_ACCURACY]
    worst = max(report.variants, key=lambda v: v.metrics[names.ACCURACY_DROP])
    drop = worst.metrics[names.ACCURACY_DROP]
    if drop <= p.max_drop:
        return ""
    return (f"{worst.variant} lost {drop:.1%} of test accuracy after fine-tuning (limit {p.max_drop:.1%}): "
            "logged, not registered")


def _log_pruned(client: MlflowClient, report: PruneReport, v: export.Variant, metadata: dict, register: str,
                run_id: str, epochs: int) -> None:
    """The pruned ONNX model into the fine-tuning run (active), with its figures and the original's."""
    info = tracking.log_onnx_model(v.model, {**metadata, names.VARIANT_KEY: v.variant,
                                             names.SOURCE_KEY: report.source}, register)
    v.run_id, v.model_uri = run_id, f"runs:/{run_id}/{names.MODEL_NAME}"
    v.metrics[names.MODEL_SIZE] = export._size(info.model_uri)
    original = {names.ORIGINAL_PREFIX + k: value for k, value in report.original.metrics.items()}
    tracker = tracking.MlflowTracker(client, run_id)
    tracker.log_metrics({**v.metrics, **original}, step=epochs)  # after the engine's test metrics: these win
    tracker.flush()
    if register and info.registered_model_version is not None:
        version = str(info.registered_model_version)
        client.update_model_version(register, version, f"{v.variant} of {report.label} ({report.source})")
        v.registered = f"models:/{register}/{version}"


def summary(report: PruneReport) -> str:
    """export.summary's table, then each pruned variant's sparsity, parameters and compressed size."""
    lines = [export.summary(report)]
    for v in report.variants:
        m = v.metrics
        lines.append(f"{v.variant}: sparsity {m[names.SPARSITY]:.1%}, {m[names.PARAMETERS]:,.0f} parameters "
                     f"(original {report.original.metrics[names.PARAMETERS]:,.0f}), compressed "
                     f"{m[names.COMPRESSED_SIZE] / 1e6:.2f} MB, accuracy drop {m[names.ACCURACY_DROP]:+.1%}")
    if report.flag:
        lines.append(f"flagged: {report.flag}")
    return "\n".join(lines)
