"""How numbers read on every page: percentages, scores, durations, sizes, learning rates, and what is missing.

Each kind is written one way, by one function here; tables show the same through the st.column_config
helpers at the bottom, so a cell and a sentence about it agree. Nothing is ever shown as "None".
"""
from __future__ import annotations

import math

MISSING = "—"  # a value that is not there (not logged yet, not applicable); also st.dataframe's placeholder
PERCENT_STEP = 0.001  # st.column_config "percent" then draws one decimal, as percent() writes it
SCORE_FORMAT = "%.3f"
LR_FORMAT = "%.2e"  # sprintf-js writes the exponent unpadded, as lr() does
SIZE_UNITS = ("bytes", "kB", "MB", "GB", "TB")


def _number(value) -> float | None:
    """`value` as a finite float, else None (None, NaN, inf, text)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _missing(value) -> bool:
    """None, NaN, an infinity or pandas' NA (whose truth value raises)."""
    if value is None:
        return True
    try:
        return bool(value != value) or (isinstance(value, float) and math.isinf(value))
    except TypeError:
        return True


def percent(fraction) -> str:
    """A share in 0..1 as a percentage with one decimal: 0.6375 -> 63.8%."""
    number = _number(fraction)
    return MISSING if number is None else f"{number:.1%}"


def score(value) -> str:
    """A score that is not a share (F1, ECE, loss) with three decimals: 0.97 -> 0.970."""
    number = _number(value)
    return MISSING if number is None else f"{number:.3f}"


def number(value) -> str:
    """Any other measure (a loss, a throughput) with four significant digits: 0.2 -> 0.2, 308.666 -> 308.7."""
    figure = _number(value)
    return MISSING if figure is None else f"{figure:.4g}"


def count(value) -> str:
    """A number of things (files, images) with thousands separators: 50000 -> 50,000."""
    figure = _number(value)
    return MISSING if figure is None else f"{int(round(figure)):,}"


def duration(seconds) -> str:
    """Seconds as a person reads them: 7 -> 7s, 84 -> 1m 24s, 3720 -> 1h 02m."""
    number = _number(seconds)
    if number is None:
        return MISSING
    whole = int(round(number))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def size(n_bytes) -> str:
    """A size in decimal units with one decimal above a kB: 2932105 -> 2.9 MB, 512 -> 512 bytes."""
    number = _number(n_bytes)
    if number is None:
        return MISSING
    unit = 0
    while abs(number) >= 1000 and unit < len(SIZE_UNITS) - 1:
        number, unit = number / 1000, unit + 1
    return f"{number:.0f} bytes" if unit == 0 else f"{number:.1f} {SIZE_UNITS[unit]}"


def lr(value) -> str:
    """A learning rate, one way on every page: 0.03 -> 3.00e-2 (tables draw it with LR_FORMAT)."""
    if _missing(value):
        return MISSING
    number = _number(value)
    if number is None:
        return str(value)
    mantissa, exponent = f"{number:.2e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def text(value) -> str:
    """Any cell value as text, MISSING for None or NaN."""
    return MISSING if _missing(value) else str(value)


def kind_of(column: str):
    """The formatter a metric column's name calls for: accuracies percent, lr an lr, F1 and its kin scores."""
    name = column.lower()
    if "accuracy" in name or name.endswith(" acc") or "agreement" in name:
        return percent
    if name == "lr" or name.endswith("_lr") or name.endswith(" lr"):
        return lr
    if any(kind in name for kind in ("f1", "precision", "recall", "ece", "auc", "ap_macro")):
        return score
    return number


def table_formats(frame) -> dict:
    """Column -> formatter for a pandas Styler: every numeric column, by what its name says it holds."""
    return {column: kind_of(str(column)) for column in frame.select_dtypes("number").columns}


# --- the same in st.dataframe columns ---------------------------------------------------------------

def percent_column(label: str | None = None, **kwargs):
    import streamlit as st

    return st.column_config.NumberColumn(label, format="percent", step=PERCENT_STEP, **kwargs)


def score_column(label: str | None = None, **kwargs):
    import streamlit as st

    return st.column_config.NumberColumn(label, format=SCORE_FORMAT, **kwargs)


def lr_column(label: str | None = None, **kwargs):
    import streamlit as st

    return st.column_config.NumberColumn(label, format=LR_FORMAT, **kwargs)
