"""The playground's batch table and CSV: plain pandas from pipeline.serving.predict results, no Streamlit.

One row per image: its prediction and confidence, a warning when the image is unlike the model's
training data (dashboard.input_check), the top classes, the error when it could not be used; with a
second model, that model's answer and whether the two agree.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from PIL import Image

from dashboard import formatting
from dashboard.input_check import sentence

if TYPE_CHECKING:  # the page has torch loaded anyway; this module does not need it
    from pipeline.serving.predict import ImageResult

DISAGREE_STYLE = "background-color: rgba(231, 76, 60, 0.18)"  # a light red row
ERROR_STYLE = "background-color: rgba(245, 158, 11, 0.20); font-style: italic"  # amber: not an answer at all
DISPLAY_PX = 160  # small images are enlarged (nearest neighbour, pixels stay sharp) to this side


def enlarged(picture: Image.Image | np.ndarray) -> Image.Image:
    """An image (or uint8 C,H,W array) big enough to see, without smoothing tiny inputs into blur."""
    if isinstance(picture, np.ndarray):
        picture = Image.fromarray(picture[0] if picture.shape[0] == 1 else picture.transpose(1, 2, 0))
    scale = DISPLAY_PX // max(picture.size)
    if scale <= 1:
        return picture
    return picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.NEAREST)


def _answer(result: ImageResult, prefix: str = "") -> dict:
    p = result.prediction
    return {f"{prefix}prediction": p.label if p else None, f"{prefix}confidence": p.probability if p else None,
            f"{prefix}top": "; ".join(f"{label} {formatting.percent(q)}" for label, q in p.top) if p else ""}


def warning(reasons: Sequence[str], other: Sequence[str] | None = None) -> str:
    """The row's warning: why the image is unlike the training data, per model when the two models differ."""
    if other is None or list(other) == list(reasons):
        return sentence(list(reasons))
    return "; ".join(f"{side}: {sentence(list(r))}" for side, r in (("A", reasons), ("B", other)) if r)


def results_frame(results: Sequence[ImageResult], other: Sequence[ImageResult] | None = None,
                  unlike: Sequence[Sequence[str]] = (), other_unlike: Sequence[Sequence[str]] = ()) -> pd.DataFrame:
    """image, prediction, confidence, warning, top, error [, B prediction, B confidence, B top, agree].

    `unlike` and `other_unlike` hold each image's reasons to distrust model A's and B's answer (input_check).
    """
    rows = []
    for i, a in enumerate(results):
        reasons = unlike[i] if unlike else []
        row = {"image": a.name, **_answer(a), "error": a.error}
        if other is not None:
            b = other[i]
            both = a.prediction is not None and b.prediction is not None
            row.update(_answer(b, "B "), agree=(a.prediction.label == b.prediction.label) if both else None)
            row["warning"] = warning(reasons, other_unlike[i] if other_unlike else [])
        else:
            row["warning"] = warning(reasons)
        rows.append(row)
    columns = ["image", "prediction", "confidence", "warning", "top", "error"]
    if other is not None:
        columns += ["B prediction", "B confidence", "B top", "agree"]
    return pd.DataFrame(rows, columns=columns)


def agreement(frame: pd.DataFrame) -> tuple[int, int, int]:
    """(agreeing, compared, left out): images with a warning are left out, whatever the two models said."""
    trusted = frame["warning"].eq("")
    compared = frame["agree"].notna()
    return (int((compared & trusted & frame["agree"].eq(True)).sum()), int((compared & trusted).sum()),
            int((compared & ~trusted).sum()))


def disagreement_styles(row: pd.Series) -> list[str]:
    """Styler.apply(axis=1): rows where the models disagree stand out in red, images that failed in amber."""
    if row.get("error"):
        return [ERROR_STYLE] * len(row)
    agree = row.get("agree")
    differ = agree is not None and not pd.isna(agree) and not agree
    return [DISAGREE_STYLE if differ else ""] * len(row)


def to_csv(frame: pd.DataFrame, model_uri: str, other_uri: str | None = None) -> bytes:
    """The table as CSV, each row naming the pinned model version(s) that answered."""
    named = frame.assign(model=model_uri)
    if other_uri is not None:
        named = named.assign(**{"B model": other_uri})
    return named.to_csv(index=False).encode()
