"""Is B really better than A? A paired comparison of two runs' kept test predictions.

Both must have scored the same test images (same ids, same labels, same classes, and the same dataset
digest when both logged one): then each image is a pair, and the 2x2 table of right/wrong, a paired
bootstrap of the accuracy difference and the exact McNemar test (scipy's two-sided binomial test on
the discordant pairs) say whether the difference is more than luck.
"""
from __future__ import annotations

import io
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from pipeline import names
from pipeline.errors import UserError
from pipeline.serving import model_refs

RESAMPLES = 10_000   # bootstrap resamples: the interval's ends move by well under 0.1 point between seeds
ALPHA = 0.05         # significant when p < ALPHA (as a constant: 1 - 0.95 is 0.050000000000000044 in floats)
LEVEL = 1 - ALPHA    # the bootstrap interval's coverage
CHUNK = 500          # resamples drawn at once: 500 x N indices stay small for N = 10,000 images


class CompareError(UserError):
    """The two runs cannot be compared pair by pair; the message says why."""


@dataclass
class Side:
    label: str                 # how people name it: "digits-cnn v2", "run 1a2b3c4d"
    run_id: str
    ids: np.ndarray
    labels: np.ndarray
    predicted: np.ndarray
    classes: list[str]
    digests: frozenset[str]    # the test dataset's logged digests, when the run logged any


@dataclass
class Comparison:
    a: str
    b: str
    n: int
    both_right: int
    only_a: int
    only_b: int
    both_wrong: int
    accuracy_a: float
    accuracy_b: float
    low: float                 # the paired bootstrap interval of accuracy_b - accuracy_a
    high: float
    p_value: float             # exact McNemar: binomtest(only_b, only_a + only_b, 0.5), two-sided
    resamples: int
    only_a_ids: np.ndarray
    only_b_ids: np.ndarray

    @property
    def difference(self) -> float:
        return self.accuracy_b - self.accuracy_a

    @property
    def significant(self) -> bool:
        return self.p_value < ALPHA


def load(client: MlflowClient, what: str) -> Side:
    """A run id or a model URI, with its kept test predictions."""
    if what.startswith(("models:/", "runs:/")):
        ref = model_refs.resolve(client, what)
        run_id, label = ref.run_id, ref.label.split(" @")[0]
    elif re.fullmatch(r"[0-9a-fA-F]{32}", what.strip()):
        run_id, label = what.strip(), f"run {what.strip()[:8]}"
    else:
        raise CompareError(f"{what!r} is neither a run id (32 hex digits) nor a model URI ({model_refs.URI_FORMS})")
    try:
        run = client.get_run(run_id)
    except MlflowException as e:
        if model_refs.missing(e):
            raise CompareError(f"no run with id {run_id}") from None
        raise
    if not what.startswith("models:/") and run.info.run_name:
        label = f"{run.info.run_name} ({run_id[:8]})"
    with tempfile.TemporaryDirectory(prefix="runboard-compare-") as tmp:
        try:
            local = client.download_artifacts(run_id, names.PREDICTIONS_NPZ, tmp)
        except (MlflowException, OSError):
            raise CompareError(f"{label} has no {names.PREDICTIONS_NPZ} (trained before runs kept their "
                               "predictions, or not finished): nothing to compare") from None
        kept = arrays(Path(local).read_bytes())
    return Side(label, run_id, kept["ids"], kept["labels"], kept["predicted"], kept["classes"], _digests(run))


def arrays(npz: bytes) -> dict:
    """predictions.npz as plain arrays (no pickle), its ids under `ids` whatever they are called."""
    with np.load(io.BytesIO(npz), allow_pickle=False) as z:
        out = {k: z[k] for k in z.files}
    out["ids"] = out.get("paths", out.get("indices", np.arange(len(out["labels"]))))
    out["classes"] = [str(c) for c in out.get("classes", [])]
    return out


def _digests(run) -> frozenset[str]:
    """Digests of the datasets a run logged with mlflow.log_input: its test split's when it names one."""
    inputs = getattr(run, "inputs", None)
    found = [(d.dataset.digest, {t.key: t.value for t in (d.tags or [])}.get("mlflow.data.context", ""))
             for d in (getattr(inputs, "dataset_inputs", None) or [])]
    test = [digest for digest, context in found if context == "test"]
    return frozenset(test or [digest for digest, _ in found])


def aligned(a: Side, b: Side) -> tuple[np.ndarray, np.ndarray]:
    """B's predictions in A's image order, or CompareError saying why the images are not the same."""
    if a.digests and b.digests and a.digests != b.digests:
        raise CompareError(f"{a.label} and {b.label} were tested on different data (dataset digests "
                           f"{', '.join(sorted(a.digests))} vs {', '.join(sorted(b.digests))})")
    if a.classes and b.classes and a.classes != b.classes:
        raise CompareError(f"{a.label} and {b.label} have different classes ({len(a.classes)} vs {len(b.classes)}: "
                           f"{a.classes[:5]} vs {b.classes[:5]})")
    if a.ids.dtype.kind != b.ids.dtype.kind or len(a.ids) != len(b.ids) or set(a.ids.tolist()) != set(b.ids.tolist()):
        missing = len(set(a.ids.tolist()) ^ set(b.ids.tolist()))
        raise CompareError(f"{a.label} and {b.label} were tested on different images ({len(a.ids)} vs {len(b.ids)} "
                           f"test images, {missing} not in both): a paired test needs the same ones")
    order = np.argsort(b.ids, kind="stable")[np.searchsorted(np.sort(b.ids, kind="stable"), a.ids)]
    if not np.array_equal(a.labels, b.labels[order]):
        wrong = int((a.labels != b.labels[order]).sum())
        raise CompareError(f"{a.label} and {b.label} give {wrong} of the same test images different true labels: "
                           "the data changed between them")
    return a.predicted == a.labels, b.predicted[order] == a.labels


def compare(a: Side, b: Side, resamples: int = RESAMPLES, seed: int = 0) -> Comparison:
    """The paired comparison of B against A on their common test images."""
    from scipy.stats import binomtest

    right_a, right_b = aligned(a, b)
    n = len(right_a)
    if n == 0:
        raise CompareError(f"{a.label} and {b.label} kept no test predictions")
    only_a, only_b = int((right_a & ~right_b).sum()), int((right_b & ~right_a).sum())
    diff = right_b.astype(np.float64) - right_a.astype(np.float64)
    rng, means = np.random.default_rng(seed), []
    for start in range(0, resamples, CHUNK):
        idx = rng.integers(0, n, size=(min(CHUNK, resamples - start), n))
        means.append(diff[idx].mean(axis=1))
    means = np.concatenate(means)
    tail = (1 - LEVEL) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    p = binomtest(only_b, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
    return Comparison(a.label, b.label, n, int((right_a & right_b).sum()), only_a, only_b,
                      int((~right_a & ~right_b).sum()), float(right_a.mean()), float(right_b.mean()),
                      float(low), float(high), float(p), len(means),  # the resamples really drawn
                      a.ids[right_a & ~right_b], a.ids[right_b & ~right_a])


def points(x: float) -> str:
    """An accuracy difference in percentage points, signed: +0.8, −0.3 (a true minus sign)."""
    value = round(x * 100, 1) + 0.0  # no "-0.0"
    return f"{value:+.1f}".replace("-", "−")


def p_text(p: float) -> str:
    return f"p = {p:.2g}" if p >= 0.001 else "p < 0.001"


def sentence(c: Comparison) -> str:
    """One line for a decision: 'v2 vs v1 on the same 359 images: +0.8 points (95 % CI −0.3 to +1.9), p = 0.18: …'."""
    verdict = "a significant difference" if c.significant else "not a significant difference"
    return (f"{c.b} vs {c.a} on the same {c.n} images: {points(c.difference)} points "
            f"(95 % CI {points(c.low)} to {points(c.high)}), {p_text(c.p_value)}: {verdict}")


def report(c: Comparison) -> str:
    """What `python -m pipeline compare A B` prints."""
    width = max(len(c.a), len(c.b), 12)
    return "\n".join([
        f"A: {c.a:<{width}}  test accuracy {c.accuracy_a:.2%}",
        f"B: {c.b:<{width}}  test accuracy {c.accuracy_b:.2%}",
        f"on the same {c.n} test images:",
        f"{'':<{width + 3}}  {'B right':>8}  {'B wrong':>8}",
        f"{'A right':<{width + 3}}  {c.both_right:>8}  {c.only_a:>8}",
        f"{'A wrong':<{width + 3}}  {c.only_b:>8}  {c.both_wrong:>8}",
        f"both right {c.both_right} · only A right {c.only_a} · only B right {c.only_b} · both wrong {c.both_wrong}",
        f"accuracy B − A: {points(c.difference)} points, 95 % paired bootstrap interval {points(c.low)} to "
        f"{points(c.high)} ({c.resamples:,} resamples)",
        f"exact McNemar {p_text(c.p_value)} (two-sided binomial test on the {c.only_a + c.only_b} discordant pairs; "
        f"p = {c.p_value:.6g}): " + ("a significant difference at 5 %" if c.significant
                                     else "not a significant difference at 5 %"),
    ])
