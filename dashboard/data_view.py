"""The Data page's pure helpers: a folder's audits, reading their CSVs, picking files, writing an exclusion list.

An exclusion list is a new text file under `<data root>/.runboard/exclusions/`, named by its content, so
nothing of the user's is moved, changed or deleted, and a list once launched is never overwritten.
"""
from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pandas as pd
from PIL import Image

from pipeline import names
from pipeline.imaging import images

EXCLUSIONS = Path(".runboard") / "exclusions"  # under the data root; scans skip dot-folders
SHOWN_SIDE = 96                                  # px a gallery image is drawn at (tiny images are enlarged)


def audits_of(runs: pd.DataFrame, folder: str) -> pd.DataFrame:
    """Audit runs of `folder` (relative to the data root), newest first."""
    kind, audited = f"tags.{names.TAG_KIND}", f"tags.{names.TAG_AUDIT_FOLDER}"
    if kind not in runs or audited not in runs:
        return runs.iloc[0:0]
    found = runs[(runs[kind] == names.KIND_AUDIT) & (runs[audited] == folder)]
    return found.sort_values("start_time", ascending=False)


def table(raw: bytes) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(raw), dtype=str, keep_default_na=False)


def label_issues(raw: bytes) -> pd.DataFrame:
    """label_issues.csv with `suspicion` = 1 - self_confidence: how sure the audit is the label is wrong."""
    frame = table(raw)
    frame["self_confidence"] = frame["self_confidence"].astype(float)
    frame["rank"] = frame["rank"].astype(int)
    frame["suspicion"] = 1.0 - frame["self_confidence"]
    return frame


def chosen_files(issues: pd.DataFrame, ticked: list[str], at_least: float | None) -> list[str]:
    """Ticked files plus every suspect at or above `at_least` suspicion (None: ticked only), in rank order."""
    above = set(issues.loc[issues["suspicion"] >= at_least, "path"]) if at_least is not None else set()
    wanted = above | set(ticked)
    return [p for p in issues["path"] if p in wanted] + sorted(wanted - set(issues["path"]))


def write_exclusions(data_root: Path, files: list[str], reason: str) -> str:
    """Write the list (reason as a # line) and return its path relative to the data root, for RunConfig.exclude."""
    text = f"# {reason}\n" + "".join(f"{f}\n" for f in files)
    name = hashlib.sha256(text.encode()).hexdigest()[:16] + ".txt"
    path = data_root / EXCLUSIONS / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_text(text)
    return (EXCLUSIONS / name).as_posix()


def picture(folder: Path, relative: str) -> Image.Image | None:
    """One audited image for a gallery, enlarged if tiny; None when the path leaves the folder or cannot be read."""
    path = (folder / relative).resolve()
    if folder.resolve() not in path.parents:
        return None
    try:
        img = images.open_image(path)
    except (images.ImageError, OSError):
        return None
    scale = max(1, SHOWN_SIDE // max(img.size))
    return img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST) if scale > 1 else img
