"""The audit on planted faults: the embedded digits as a PNG folder, spoiled with a fixed seed, audited.

Plants 30 images moved to a wrong class, 10 exact duplicates (same class) and 10 copies of test-split
images into training under their own class (placed so that the trainer's split of the final folder
has the original in test and the copy outside it); then runs one training run and one audit of the
same epochs side by side and prints precision and recall of each finding, and the time ratio.

Run: nice -n 5 .venv/bin/python bench/audit_planted.py [--folds 4] [--epochs 5] [--seed 0]
"""
from __future__ import annotations

import argparse
import csv
import io
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WRONG, DUPLICATES, LEAKS, TOP, RANDOM_PAIRS = 30, 10, 10, 60, 200


def write_digits(folder: Path) -> None:
    from pipeline.training import data

    x, y, classes = data._digits()
    for i, (pixels, label) in enumerate(zip(x.numpy(), y.numpy())):
        (folder / classes[label]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels[0], "L").save(folder / classes[label] / f"{i:04d}.png")


def _class_files(folder: Path) -> dict[str, list[str]]:
    return {c.name: sorted(f.name for f in c.iterdir()) for c in sorted(folder.iterdir()) if c.is_dir()}


def _test_positions(counts: list[int]) -> list[set[int]]:
    """Per class, the sorted positions the trainer holds out for test (folders.held_out on the labels)."""
    from pipeline.imaging import folders

    labels = np.repeat(np.arange(len(counts)), counts)
    held = folders.held_out(labels, folders.TEST_FRACTION, folders.TEST_SPLIT_SEED)
    starts = np.cumsum([0] + counts[:-1])
    return [set((np.flatnonzero(held[s:s + n])).tolist()) for s, n in zip(starts, counts)]


def plant(folder: Path, seed: int) -> dict:
    """Spoil `folder` in place; what was planted, as paths relative to it."""
    rng = np.random.default_rng(seed)
    files = [f"{c}/{n}" for c, names in _class_files(folder).items() for n in names]
    picked = rng.choice(len(files), WRONG + DUPLICATES, replace=False)
    classes = sorted(_class_files(folder))
    wrong, duplicates, used = [], [], set()
    for i in picked[:WRONG]:
        c, name = files[i].split("/")
        to = rng.choice([k for k in classes if k != c])
        shutil.move(folder / c / name, folder / to / name)
        wrong.append(f"{to}/{name}")
        used.add(name)
    for i in picked[WRONG:]:
        c, name = files[i].split("/")
        copy = name.replace(".png", "_dup.png")
        shutil.copy(folder / c / name, folder / c / copy)
        duplicates.append((f"{c}/{name}", f"{c}/{copy}"))
        used.add(name)
    # leaks: one copy in each of LEAKS classes; the final counts fix the split, then names fix the positions
    targets = classes[:LEAKS]
    counts = {c: len(n) + (c in targets) for c, n in _class_files(folder).items()}
    held = dict(zip(classes, _test_positions([counts[c] for c in classes])))
    leaks = []
    for c in targets:
        names = _class_files(folder)[c]
        for anchor in rng.permutation(names):  # "<anchor>_leak.png" sorts right after its anchor
            copy = anchor.replace(".png", "_leak.png")
            final = sorted(names + [copy])
            if final.index(copy) in held[c]:
                continue  # the copy must train
            originals = [n for i, n in enumerate(final) if i in held[c] and n not in used and "_" not in n]
            if originals:
                original = originals[int(rng.integers(len(originals)))]
                shutil.copy(folder / c / original, folder / c / copy)
                leaks.append((f"{c}/{copy}", f"{c}/{original}"))
                break
    assert len(leaks) == LEAKS, "could not place every leak"
    return {"wrong": wrong, "duplicates": duplicates, "leaks": leaks}


def _rows(client, run_id: str, path: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(Path(client.download_artifacts(run_id, path)).read_text())))


def _pr(found: int, planted: int, reported: int) -> str:
    precision = found / reported if reported else float("nan")
    return f"{found} of {planted} (recall {found / planted:.0%}, precision {precision:.0%} of {reported} reported)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the temporary store and folder, and say where")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="audit-planted-"))
    os.environ["RUNBOARD_DATA_ROOT"] = str(work / "data")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'mlflow.db'}"
    from mlflow import MlflowClient

    from pipeline import names
    from pipeline.config import RunConfig
    from pipeline.runs import audit, train

    folder = work / "data" / "digits"
    write_digits(folder)
    planted = plant(folder, args.seed)
    config = RunConfig(dataset="imagefolder:digits", epochs=args.epochs, experiment="bench")
    started = time.perf_counter()
    train.run(config, progress=False)
    one_run = time.perf_counter() - started
    started = time.perf_counter()
    run_id = audit.run(config, args.folds, progress=False)
    audit_s = time.perf_counter() - started
    if args.keep:
        print(f"store kept: MLFLOW_TRACKING_URI={os.environ['MLFLOW_TRACKING_URI']} audit run {run_id}")
    client = MlflowClient()
    issues = _rows(client, run_id, names.AUDIT_LABEL_ISSUES_CSV)
    dups = _rows(client, run_id, names.AUDIT_DUPLICATES_CSV)
    leaks = _rows(client, run_id, names.AUDIT_LEAKS_CSV)

    top = {r["path"] for r in issues[:TOP]}
    wrong = set(planted["wrong"])
    pairs = {frozenset((r["path_a"], r["path_b"])): r for r in dups}
    exact = [r for r in dups if r["kind"] == "exact"]
    planted_pairs = [frozenset(p) for p in planted["duplicates"] + planted["leaks"]]
    dup_found = sum(frozenset(p) in pairs and pairs[frozenset(p)]["kind"] == "exact" for p in planted["duplicates"])
    leak_set = {frozenset((r["train_path"], r["test_path"])) for r in leaks}
    leak_found = sum(frozenset(p) in leak_set for p in planted["leaks"])
    true_leaks = sum(p in set(planted_pairs) for p in leak_set)
    rng = np.random.default_rng(args.seed + 1)
    originals = sorted({r for r in (f"{c}/{n}" for c, ns in _class_files(folder).items() for n in ns)
                        if "_dup" not in r and "_leak" not in r})
    random_pairs = set()
    while len(random_pairs) < RANDOM_PAIRS:
        a, b = rng.choice(len(originals), 2, replace=False)
        random_pairs.add(frozenset((originals[a], originals[b])))
    false_dups = sum(p in pairs for p in random_pairs)

    print(f"folder: {sum(len(n) for n in _class_files(folder).values())} PNG files (the embedded digits, 8x8, "
          f"planted with seed {args.seed}); model cnn, {args.epochs} epochs, {args.folds} folds")
    print(f"label errors in the top {TOP}: {_pr(len(top & wrong), WRONG, TOP)}; "
          f"in the whole list: {_pr(len(wrong & {r['path'] for r in issues}), WRONG, len(issues))}")
    copies = sum(frozenset((r["path_a"], r["path_b"])) in set(planted_pairs) for r in exact)
    print(f"exact duplicates: {dup_found} of {DUPLICATES} planted duplicates found (recall "
          f"{dup_found / DUPLICATES:.0%}); {len(exact)} exact pairs reported, {copies} of them planted copies "
          f"(the {DUPLICATES} duplicates and the {LEAKS} leak copies): precision {copies / max(1, len(exact)):.0%}")
    print(f"near duplicates reported: {len(dups) - len(exact)}")
    print(f"leaks: {_pr(leak_found, LEAKS, len(leaks))}; leaks that are planted copies: {true_leaks} of {len(leaks)}")
    print(f"false duplicates among {RANDOM_PAIRS} random distinct pairs: {false_dups}")
    print(f"time: one training run {one_run:.1f} s, the audit {audit_s:.1f} s: ratio {audit_s / one_run:.2f} "
          f"(goal at most folds + 1 = {args.folds + 1})")
    if not args.keep:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
