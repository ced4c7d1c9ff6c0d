"""Smaller, faster variants of a registered version: ONNX export and int8 quantization, each evaluated
against the original on the source run's test split and logged in its own run.

    from pipeline.serving import export
    report = export.export("models:/digits-cnn/1")        # ONNX + int8, logged under experiment `exports`
    [(v.variant, v.metrics[names.TEST_ACCURACY]) for v in report.variants]

ONNX comes from PyTorch's dynamo exporter run on the loaded pt2 graph (no training code needed); int8 from
onnxruntime's static quantization (QDQ, per-channel int8 weights, uint8 activations: the fast pair on x86;
the last layer kept fp32 so logits are not clipped to the calibrated range), calibrated on a sample of
the source run's training split. Each variant is logged with MLflow's ONNX flavor (protobuf, no pickle)
carrying the source's preprocessing metadata, tagged with the source model URI, optionally registered.
"""
from __future__ import annotations

import tempfile
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from mlflow import MlflowClient

from pipeline import names
from pipeline.errors import UserError
from pipeline.runs import lifecycle, tracking
from pipeline.serving import onnx_runtime
from pipeline.serving import predict as predictions

CALIBRATION_IMAGES = 200  # training images that set int8 ranges (MinMax): enough for digits to cifar
CALIBRATION_BATCH = 50
LATENCY_RUNS = 40         # timed calls of one image; a batch of 64 gets a quarter (at least 5)
THREADS = 1               # every variant, and the original in PyTorch, timed on one thread: comparable
SEED = 0


class ExportError(UserError):
    """A version that cannot be exported or quantized; the one line says why."""


@dataclass
class Variant:
    variant: str                   # names.ORIGINAL, ONNX or INT8
    metrics: dict[str, float]      # names.TEST_ACCURACY, AGREEMENT, ..., LATENCY_*
    model: bytes = b""             # the ONNX file (empty for the original)
    run_id: str = ""               # where it was logged
    model_uri: str = ""            # runs:/RUN_ID/model
    registered: str = ""           # models:/NAME/VERSION when registered


@dataclass
class Report:
    source: str                    # the pinned source URI, models:/NAME/VERSION
    label: str
    original: Variant
    variants: list[Variant] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# export and quantization

def to_onnx(module, example) -> bytes:
    """fp32 ONNX of a torch module (the pt2 graph MLflow loads works) with a dynamic batch named `batch`."""
    import torch

    batch = torch.export.Dim("batch", min=1, max=65536)
    with warnings.catch_warnings():  # the pt2 graph reports training mode but runs in eval semantics
        warnings.filterwarnings("ignore", message="Exporting a model while it is in training mode")
        program = torch.onnx.export(module, (example,), None, dynamo=True, verbose=False, input_names=["input"],
                                    output_names=["logits"], dynamic_shapes=({0: batch},), optimize=True)
    return program.model_proto.SerializeToString()  # one protobuf with the weights inside (< 2 GiB)


def to_int8(model: bytes, calibration: np.ndarray) -> bytes:
    """Static int8 (QDQ, per-channel weights, uint8 activations) calibrated on normalized float32 images."""
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quant_pre_process, quantize_static)

    class Batches(CalibrationDataReader):
        def __init__(self, name: str):
            self.name, self.i = name, 0

        def get_next(self):
            if self.i >= len(calibration):
                return None
            self.i += CALIBRATION_BATCH
            return {self.name: calibration[self.i - CALIBRATION_BATCH:self.i]}

        def rewind(self):
            self.i = 0

    with tempfile.TemporaryDirectory(prefix="runboard-int8-") as tmp:  # both steps want file paths
        src, pre, dst = f"{tmp}/fp32.onnx", f"{tmp}/pre.onnx", f"{tmp}/int8.onnx"
        with open(src, "wb") as f:
            f.write(model)
        quant_pre_process(src, pre)  # shape inference and fusions (Conv+Relu): a smaller int8 file
        graph = onnx.load(pre).graph
        quantize_static(pre, dst, Batches(graph.input[0].name), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax,
                        nodes_to_exclude=[graph.node[-1].name])  # the classifier: logits not clipped
        with open(dst, "rb") as f:
            return f.read()


# ---------------------------------------------------------------------------------------------
# evaluation

def latency_ms(call: Callable[[], object], runs: int) -> tuple[float, float]:
    """p50 and p95 of `runs` timed calls, after two untimed warm-up calls."""
    call(), call()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1e3)
    return float(np.percentile(times, 50)), float(np.percentile(times, 95))


def _latencies(run: Callable[[np.ndarray], object], x: np.ndarray, runs: int) -> dict[str, float]:
    one = latency_ms(lambda: run(x[:1]), runs)
    batch = np.resize(x, (64, *x.shape[1:])) if len(x) < 64 else x[:64]
    many = latency_ms(lambda: run(batch), max(5, runs // 4))
    return dict(zip(names.LATENCY_METRICS, (*one, *many)))


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def compare(original: np.ndarray, logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Accuracy of `logits`, and how far they are from the original's: agreement, largest differences."""
    return {names.TEST_ACCURACY: float((logits.argmax(1) == labels).mean()),
            names.AGREEMENT: float((logits.argmax(1) == original.argmax(1)).mean()),
            names.MAX_PROBABILITY_DIFF: float(np.abs(_softmax(logits) - _softmax(original)).max()),
            names.MAX_LOGIT_DIFF: float(np.abs(logits - original).max())}


def _torch_run(module):
    import torch

    def run(x: np.ndarray):
        with torch.no_grad():
            return module(torch.from_numpy(x)).float().numpy()
    return run


# ---------------------------------------------------------------------------------------------
# the source

def _split_arrays(split, limit: int | None = None, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (N, C, H, W) images and labels of a split, or of `limit` of them drawn with `seed`."""
    idx = np.arange(len(split))
    if limit is not None and limit < len(idx):
        idx = np.sort(np.random.default_rng(seed).choice(idx, limit, replace=False))
    if split.in_memory:
        return split.images[idx].numpy(), split.labels[idx].numpy()
    return np.stack([split.images[int(i)] for i in idx]), split.labels[idx].numpy()


def _source_data(client: MlflowClient, predictor):
    """The source run's params, test split and a sample of its training split, as it was trained on."""
    from pipeline.config import RunConfig
    from pipeline.training import data

    ref = predictor.ref
    params = client.get_run(ref.run_id).data.params if ref.run_id else {}
    if "dataset" not in params:
        raise ExportError(f"{ref.label}: its source run has no dataset param, so there is no test split to "
                          "evaluate the variants on")
    loaded = data.load(RunConfig.from_params(params))
    if tuple(loaded.image_size) != predictor.preprocessing.image_size or len(loaded.classes) != len(predictor.classes):
        raise ExportError(f"{ref.label}: its source run's data ({params['dataset']}) no longer matches the "
                          "model's input or classes")
    return params, _split_arrays(loaded.test), _split_arrays(loaded.train, CALIBRATION_IMAGES)[0]


def _check_source(client: MlflowClient, uri: str):
    """The original (a loaded Predictor) and its logged metadata; refuses a variant: export its source."""
    from mlflow.models import get_model_info

    predictor = predictions.load(uri, client)
    if isinstance(predictor, predictions.OnnxPredictor):
        raise ExportError(f"{predictor.ref.label} is already an exported variant: export its source "
                          f"{predictor.ref.source or 'model'} instead")
    return predictor, get_model_info(predictor.ref.load_uri).metadata


def _size(uri: str) -> int:
    from mlflow.models import Model

    return int(Model.load(uri).model_size_bytes or 0)  # ModelInfo has no size; the MLmodel file does


# ---------------------------------------------------------------------------------------------
# the whole job

def export(uri: str, register: str = "", int8: bool = True, step: Callable[[str], None] | None = None,
           client: MlflowClient | None = None, runs: int = LATENCY_RUNS) -> Report:
    """Export `uri` to ONNX (and int8), evaluate each against the original, log each in its own run.

    `step(what)` is called before each stage (the CLI draws a progress bar with it). Nothing is logged
    unless every variant was made: a refusal leaves the store as it was.
    """
    import torch

    step = step or (lambda what: None)
    client = client or tracking.connect()
    step("loading the original")
    original, metadata = _check_source(client, uri)
    ref, pre = original.ref, original.preprocessing
    params, (test, labels), sample = _source_data(client, original)
    x, calibration = pre.normalize_array(test), pre.normalize_array(sample)
    made = {}
    step("exporting to ONNX")
    made[names.ONNX] = _refusing(f"{ref.label}: cannot be exported to ONNX", to_onnx, original.module,
                                 torch.from_numpy(x[:2]))
    if int8:
        step("quantizing to int8")
        made[names.INT8] = _refusing(f"{ref.label}: cannot be quantized to int8 (export with --no-int8)",
                                     to_int8, made[names.ONNX], calibration)
    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        step("evaluating the original")
        run = _torch_run(original.module)
        reference = np.concatenate([run(x[i:i + onnx_runtime.BATCH]) for i in range(0, len(x), onnx_runtime.BATCH)])
        report = Report(ref.load_uri, ref.label, Variant(names.ORIGINAL, {
            **compare(reference, reference, labels), names.MODEL_SIZE: _size(ref.load_uri),
            **_latencies(run, x, runs)}))
        for variant, model in made.items():
            step(f"evaluating {variant}")
            session = onnx_runtime.session(model, THREADS)
            input_name = session.get_inputs()[0].name
            report.variants.append(Variant(variant, {
                **compare(reference, onnx_runtime.logits(session, x), labels),
                **_latencies(lambda b, s=session: s.run(None, {input_name: b}), x, runs)}, model))
    finally:
        torch.set_num_threads(threads)
    for v in report.variants:
        step(f"logging {v.variant}")
        _log(client, report, v, metadata, {k: params.get(k, "") for k in ("dataset", "model")}, register)
    return report


def _refusing(reason: str, make: Callable, *args):
    """`make(*args)`, or ExportError with `reason` and the first line of what went wrong."""
    try:
        return make(*args)
    except Exception as e:  # exporters fail in many ways (unsupported ops, dynamic shapes): one line says why
        first = (str(e).strip().splitlines() or [""])[0][:300]
        raise ExportError(f"{reason} ({type(e).__name__}: {first})") from e


def _log(client: MlflowClient, report: Report, v: Variant, metadata: dict, params: dict, register: str,
         tags: dict | None = None) -> None:
    """One variant's run: tags naming the source (and any `tags`), the ONNX model, its figures and the original's."""
    params = {**params, "variant": v.variant, "source": report.source}  # dataset/model: the registry lists them
    experiment = tracking.experiment_id(client, names.EXPORT_EXPERIMENT)
    with lifecycle.tracked(client, None, experiment, f"{report.label} · {v.variant}", params) as run_id:
        lifecycle.set_tags(client, run_id, {names.TAG_EXPORT_SOURCE: report.source, names.TAG_VARIANT: v.variant,
                                            **(tags or {})})
        info = tracking.log_onnx_model(v.model, {**metadata, names.VARIANT_KEY: v.variant,
                                                 names.SOURCE_KEY: report.source}, register)
        v.run_id, v.model_uri = run_id, f"runs:/{run_id}/{names.MODEL_NAME}"
        v.metrics[names.MODEL_SIZE] = _size(info.model_uri)
        original = {names.ORIGINAL_PREFIX + k: value for k, value in report.original.metrics.items()}
        tracker = tracking.MlflowTracker(client, run_id)
        tracker.log_metrics({**v.metrics, **original}, step=0)
        tracker.flush()
        if register and info.registered_model_version is not None:
            version = str(info.registered_model_version)
            client.update_model_version(register, version, f"{v.variant} of {report.label} ({report.source})")
            v.registered = f"models:/{register}/{version}"


# ---------------------------------------------------------------------------------------------
# reading variants back, and exporting in the background

def variants_of(client: MlflowClient, source: str) -> list[dict]:
    """The newest finished run of each variant of `source` (models:/NAME/VERSION), original first.

    Each row: variant, run_id (empty for the original), and the figures under their metric names; pruned
    variants (serving/prune.py) follow ONNX and int8, with `flag` when their accuracy dropped too far.
    """
    from mlflow.entities import ViewType

    experiment = client.get_experiment_by_name(names.EXPORT_EXPERIMENT)
    if experiment is None:
        return []
    found = client.search_runs([experiment.experiment_id], f"tags.`{names.TAG_EXPORT_SOURCE}` = '{source}' and "
                               f"attributes.status = '{names.FINISHED}'", run_view_type=ViewType.ACTIVE_ONLY,
                               order_by=["attributes.start_time DESC"], max_results=200)
    newest = {}
    for run in found:
        newest.setdefault(run.data.tags.get(names.TAG_VARIANT, ""), run)
    rows = [{"variant": v, "run_id": newest[v].info.run_id, "flag": newest[v].data.tags.get(names.TAG_ACCURACY_FLAG, ""),
             **{k: m for k, m in newest[v].data.metrics.items()
                                                               if not k.startswith(names.ORIGINAL_PREFIX)}}
            for v in [*names.VARIANTS, *sorted(set(newest) - set(names.VARIANTS))] if v in newest]  # pruned after
    if rows:  # the original's figures, as the newest export measured them
        latest = max((newest[r["variant"]] for r in rows), key=lambda r: r.info.start_time)
        rows.insert(0, {"variant": names.ORIGINAL, "run_id": "", **{
            k.removeprefix(names.ORIGINAL_PREFIX): m for k, m in latest.data.metrics.items()
            if k.startswith(names.ORIGINAL_PREFIX)}})
    return rows


def start(source: str, log_path: str, int8: bool = True):
    """`python -m pipeline export SOURCE --quiet` as a child process (no shell); output into `log_path`.

    For the dashboard: an export takes seconds for a small model, a minute or more for a big one, so
    the page does not wait for it. Returns the Popen; its exit code says whether it worked (2: refused).
    """
    import subprocess
    import sys
    from pathlib import Path

    argv = [sys.executable, "-m", "pipeline", "export", source, "--quiet"] + ([] if int8 else ["--no-int8"])
    with open(log_path, "wb") as log:
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=Path(__file__).resolve().parents[2], start_new_session=True)


def summary(report: Report) -> str:
    """A plain-text table: each variant's figures and its ratios to the original."""
    base = report.original.metrics
    lines = [f"{report.label} ({report.source}) on its test split:",
             f"{'':9}{'accuracy':>9}{'agree':>8}{'max dp':>9}{'max dlogit':>11}{'size MB':>9}{'x':>6}"
             f"{'1 img p50/p95 ms':>18}{'x':>6}{'64 img p50/p95 ms':>19}{'x':>6}"]
    for v in [report.original] + report.variants:
        m = v.metrics
        size = m.get(names.MODEL_SIZE, 0)
        lines.append(
            f"{v.variant:9}{m[names.TEST_ACCURACY]:>9.2%}{m[names.AGREEMENT]:>8.1%}"
            f"{m[names.MAX_PROBABILITY_DIFF]:>9.1e}{m[names.MAX_LOGIT_DIFF]:>11.1e}{size / 1e6:>9.2f}"
            f"{_ratio(size, base.get(names.MODEL_SIZE)):>6}"
            f"{m[names.LATENCY_1_P50]:>10.2f}/{m[names.LATENCY_1_P95]:<7.2f}"
            f"{_ratio(m[names.LATENCY_1_P50], base[names.LATENCY_1_P50]):>6}"
            f"{m[names.LATENCY_64_P50]:>11.2f}/{m[names.LATENCY_64_P95]:<7.2f}"
            f"{_ratio(m[names.LATENCY_64_P50], base[names.LATENCY_64_P50]):>6}")
    return "\n".join(lines)


def _ratio(value, base) -> str:
    return f"{value / base:.2f}" if value and base else "—"
