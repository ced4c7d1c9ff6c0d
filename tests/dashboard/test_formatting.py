"""The one formatter: each kind of number written one way, and never "None".

Run: .venv/bin/python -m pytest tests/dashboard/test_formatting.py -q
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from dashboard import formatting, tables

MISSING_VALUES = [None, float("nan"), np.nan, math.inf, pd.NA]


def test_percentages_have_one_decimal():
    assert [formatting.percent(v) for v in (0.6376, 0.75, 0.6, 0.9972, 1, "0.435")] == \
        ["63.8%", "75.0%", "60.0%", "99.7%", "100.0%", "43.5%"]


def test_scores_have_three_decimals():
    assert [formatting.score(v) for v in (0.97, 0.12345, 2)] == ["0.970", "0.123", "2.000"]


def test_other_measures_keep_four_significant_digits():
    assert [formatting.number(v) for v in (0.2, 0.123456, 308.666, 1.2e-5)] == ["0.2", "0.1235", "308.7", "1.2e-05"]


def test_durations_read_as_people_say_them():
    assert [formatting.duration(s) for s in (0, 11.059, 84, 3725)] == ["0s", "11s", "1m 24s", "1h 02m"]
    assert tables.format_duration is formatting.duration  # the pages' old name is the same function


def test_sizes_in_decimal_units():
    assert [formatting.size(n) for n in (512, 2_932_105, 1_500, 4.2e9)] == ["512 bytes", "2.9 MB", "1.5 kB", "4.2 GB"]


def test_learning_rates_in_one_notation():
    assert [formatting.lr(v) for v in (0.03, "0.003", 1e-4, 0.0093)] == ["3.00e-2", "3.00e-3", "1.00e-4", "9.30e-3"]
    assert formatting.lr("auto") == "auto"  # a param that is not a number stays as it was written
    assert tables.format_lr is formatting.lr and tables.LR_FORMAT == formatting.LR_FORMAT == "%.2e"


@pytest.mark.parametrize("value", MISSING_VALUES)
def test_a_missing_value_is_a_dash_never_none(value):
    for format_ in (formatting.percent, formatting.score, formatting.number, formatting.duration, formatting.size,
                    formatting.lr, formatting.text):
        assert format_(value) == formatting.MISSING == "—", format_


def test_metric_columns_are_formatted_by_what_their_name_says():
    frame = pd.DataFrame({"run": ["a"], "test_accuracy": [0.97], "best val_accuracy": [0.9972],
                          "test_f1_macro": [0.97], "val_loss": [0.1234], "lr": [0.03]})
    shown = {c: f(frame[c].iloc[0]) for c, f in formatting.table_formats(frame).items()}
    assert shown == {"test_accuracy": "97.0%", "best val_accuracy": "99.7%", "test_f1_macro": "0.970",
                     "val_loss": "0.1234", "lr": "3.00e-2"}


def test_table_columns_draw_what_the_functions_write():
    # st.column_config "percent" draws max(log10(1/step) - 2, 0) decimals: 0.001 -> one, as percent() writes
    column = formatting.percent_column("acc")
    assert column["type_config"]["format"] == "percent" and column["type_config"]["step"] == formatting.PERCENT_STEP
    assert formatting.lr_column("lr")["type_config"]["format"] == formatting.LR_FORMAT
    assert formatting.score_column("f1")["type_config"]["format"] == "%.3f" == formatting.SCORE_FORMAT
