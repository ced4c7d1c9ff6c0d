"""A data audit of an image folder as its own MLflow run (tag runboard.kind=audit).

Glue around maintained libraries: cleanlab's find_label_issues ranks likely label errors from
out-of-fold probabilities (training/crossval.py: K fold models, each scoring what it never saw);
imagehash's pHash and a pixel hash find near and exact duplicates (imaging/duplicates.py); a duplicate
pair straddling the trainer's own test split (folders.held_out with the fixed test seed) is a leak.
It writes audit/summary.json, duplicates.csv, leaks.csv and label_issues.csv, paths relative to the
folder. It is queued and run like a training run (queue/jobs.submit_audit; the worker's child dispatches
here on the kind tag), so it is cancellable (KILLED) and resumable: each fold's held rows are stored as it ends
(audit/folds/fold-K.npz), and a resumed attempt trains only the folds not stored yet.
"""
from __future__ import annotations

import csv
import io
from collections import Counter
from pathlib import Path

import numpy as np
from cleanlab.filter import find_label_issues
from mlflow import MlflowClient
from tqdm.auto import tqdm

from pipeline import names
from pipeline.config import IMAGEFOLDER, RunConfig
from pipeline.imaging import duplicates, folders, images, lineage
from pipeline.runs import inputs, lifecycle, tracking
from pipeline.runs.audit_request import check, params, tags
from pipeline.training import crossval, engine
from pipeline.training import data as datasets

# cleanlab's filter: its default (prune_by_noise_rate) flagged 24 files on the planted digits folder and missed 7 of
# the 30 planted errors (self-confidence as low as 0.0002: with 90 class pairs each pair's noise estimate is tiny);
# predicted_neq_given flagged 48 with all 30 in the top 60 (bench/audit_planted.py, docs/data.md)
LABEL_FILTER = "predicted_neq_given"


def run(config: RunConfig, folds: int, progress: bool = True) -> str:
    """Audit in this process as a new run (not queued); its run id."""
    check(config, folds)
    client = tracking.connect()
    experiment = tracking.experiment_id(client, config.experiment)
    name = config.run_name or f"audit of {config.dataset[len(IMAGEFOLDER):]}"
    with lifecycle.tracked(client, None, experiment, name, params(config, folds)) as run_id:
        audit(client, run_id, config, folds, progress)
    return run_id


def run_queued(client: MlflowClient, run_id: str, progress: bool = True) -> str:
    """The queued audit `run_id`, with the config and folds it was queued with."""
    run = client.get_run(run_id)
    config, folds = lifecycle.config_of(client, run), int(run.data.params.get(names.PARAM_FOLDS, 4))
    with lifecycle.tracked(client, run_id, "", "", {}) as run_id:
        audit(client, run_id, config, folds, progress)
    return run_id


def audit(client: MlflowClient, run_id: str, config: RunConfig, folds: int, progress: bool) -> None:
    """Load (streaming over the memory budget, as training does), score K folds, find pairs, log all."""
    lifecycle.set_tags(client, run_id, {**tags(config), **tracking.environment_tags(
        engine.device_name(engine.pick_device(config.device)))})
    folder = datasets.load_folder(config, (config.image_size,) * 2 if config.image_size else None)
    check(config, folds, _counted(folder))
    inputs.log_dataset(client, run_id, folder.lineage)
    lifecycle.training_started(client, run_id)
    root = config.imagefolder_path()
    paths = [lineage.relative(root, f) for f in folder.files]
    labels = folder.labels.numpy()
    earlier = scored_folds(client, run_id, folder.lineage.digest, folds)
    if earlier:
        lifecycle.set_tags(client, run_id, {names.TAG_AUDIT_FOLDS_REUSED: ",".join(map(str, sorted(earlier)))})
    with tqdm(total=folds + 1, initial=len(earlier), unit="step", disable=not progress, desc="audit") as bar:
        def fold_done(k: int, rows: np.ndarray) -> None:
            tracking.log_arrays(client, run_id, {"probabilities": rows, "digest": np.array(folder.lineage.digest),
                                                 "folds": np.array(folds)}, f"{names.AUDIT_FOLDS_DIR}/fold-{k}.npz")
            client.log_metric(run_id, names.AUDIT_FOLDS_DONE, k, step=k)
            bar.update(1)

        probabilities = crossval.out_of_fold(config, folder, folds, fold_done, earlier)
        pixel_hashes, bits = zip(*(duplicates.fingerprint(images.open_image(f)) for f in folder.files))
        bar.update(1)
    pairs = duplicates.find_pairs(list(pixel_hashes), np.stack(bits))
    held = folders.held_out(labels, folders.TEST_FRACTION, folders.TEST_SPLIT_SEED)
    leaks = duplicates.leaks(pairs, held)
    ranked = find_label_issues(labels, probabilities, filter_by=LABEL_FILTER, return_indices_ranked_by="self_confidence",
                               n_jobs=1)
    issues = [(paths[i], folder.classes[labels[i]], folder.classes[int(probabilities[i].argmax())],
               float(probabilities[i, labels[i]]), rank) for rank, i in enumerate(ranked, start=1)]
    conflicts = sum(labels[p.a] != labels[p.b] for p in pairs)
    summary = _summary(folder, pairs, leaks, issues, conflicts, folds)
    found = tracking.MlflowTracker(client, run_id)
    found.log_metrics({names.AUDIT_LABEL_ISSUES: len(issues), names.AUDIT_LEAKS: len(leaks),
                       names.AUDIT_EXACT_DUPLICATES: summary["counts"]["exact_duplicates"],
                       names.AUDIT_NEAR_DUPLICATES: summary["counts"]["near_duplicates"],
                       names.AUDIT_LABEL_CONFLICTS: int(conflicts), names.AUDIT_UNREADABLE: len(folder.skipped)}, step=0)
    found.flush()
    tracking.log_json(client, run_id, summary, names.AUDIT_SUMMARY_JSON)
    tracking.log_arrays(client, run_id, {"probabilities": probabilities, "labels": labels,
                                         "paths": np.array(paths, dtype=str),
                                         "classes": np.array(folder.classes, dtype=str)}, names.AUDIT_OUT_OF_FOLD_NPZ)
    client.log_text(run_id, _csv(["path_a", "path_b", "kind", "distance"],
                                 [(paths[p.a], paths[p.b], p.kind, p.distance) for p in pairs]),
                    names.AUDIT_DUPLICATES_CSV)
    client.log_text(run_id, _csv(["train_path", "test_path", "kind"],
                                 [(paths[a], paths[b], kind) for a, b, kind in leaks]), names.AUDIT_LEAKS_CSV)
    client.log_text(run_id, _csv(["path", "given", "suggested", "self_confidence", "rank"],
                                 [(p, g, s, f"{c:.4f}", r) for p, g, s, c, r in issues]),
                    names.AUDIT_LABEL_ISSUES_CSV)


def scored_folds(client: MlflowClient, run_id: str, digest: str, folds: int) -> dict[int, np.ndarray]:
    """The folds an earlier attempt of this audit scored and stored (fold -> its held rows), when they were
    scored on the same files (digest) split the same way (folds); a resumed audit trains only the others."""
    import tempfile

    found = {}
    with tempfile.TemporaryDirectory(prefix="runboard-folds-") as tmp:
        for item in client.list_artifacts(run_id, names.AUDIT_FOLDS_DIR):
            k = item.path.rsplit("fold-", 1)[-1].removesuffix(".npz")
            if not k.isdigit():
                continue
            with np.load(client.download_artifacts(run_id, item.path, tmp), allow_pickle=False) as stored:
                if str(stored["digest"]) == digest and int(stored["folds"]) == folds:
                    found[int(k)] = stored["probabilities"]
    return found


def _counted(folder: datasets.Folder) -> folders.FolderScan:
    """A scan-shaped view of what was loaded (files whose pixels are damaged are gone): for check()."""
    return folders.FolderScan(Path("."), folder.classes, list(folder.files), folder.labels.tolist())


def _summary(folder: datasets.Folder, pairs, leaks, issues, conflicts: int, folds: int) -> dict:
    counts = Counter(folder.labels.tolist())  # what was audited: files with damaged pixels are gone
    per_class = {c: counts[i] for i, c in enumerate(folder.classes)}
    kinds = Counter(p.kind for p in pairs)
    profile = folder.lineage.profile
    return {
        "folder": folder.lineage.source, "digest": folder.lineage.digest, "folds": folds,
        "files": len(folder.files), "files_per_class": per_class,
        "imbalance_ratio": round(max(per_class.values()) / max(1, min(per_class.values())), 3),
        "sizes": {"min": profile["min_size"], "max": profile["max_size"], "common": profile["common_sizes"]},
        "modes": dict(Counter(images.read_header(f)[2] for f in folder.files)),
        "unreadable": list(folder.skipped), "excluded": len(folder.lineage.excluded),
        "near_distance": duplicates.NEAR_DISTANCE,
        "counts": {"label_issues": len(issues), "exact_duplicates": kinds[duplicates.EXACT],
                   "near_duplicates": kinds[duplicates.NEAR], "label_conflicts": int(conflicts),
                   "leaks": len(leaks), "unreadable": len(folder.skipped)},
    }


def _csv(header: list[str], rows) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()
