"""Sweeps: many configs from one base config and a few values per field, as a grid or at random.

Pure functions (no MLflow): `jobs.submit_sweep` queues what they return. Every config is built with
`dataclasses.replace`, so each one is validated exactly like a single run.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
import random
import re

from pipeline.config import ConfigError, RunConfig

KINDS = ("grid", "random")
# the one more field a sweep may vary besides lr and batch_size
EXTRA_FIELDS = ("weight_decay", "optimizer", "schedule", "model", "augment", "label_smoothing",
                "epochs", "seed", "image_size", "val_fraction")


def _field(name: str) -> dataclasses.Field:
    return next(f for f in dataclasses.fields(RunConfig) if f.name == name)


def parse_values(name: str, text: str) -> list:
    """'1e-3, 3e-3' -> [0.001, 0.003] for field `name`; the messages match a single run's."""
    if not _field(name).metadata["param"]:
        raise ConfigError(f"{name} is a run option, not a hyperparameter a sweep can vary")
    values = []
    for item in (s.strip() for s in text.replace(";", ",").split(",")):
        if not item:
            continue
        value = getattr(RunConfig.from_params({name: item}), name)  # parsed and checked like a run's param
        if value not in values:
            values.append(value)
    if not values:
        raise ConfigError(f"give at least one value for {name}")
    return values


def _name(prefix: str, i: int, values: dict) -> str:
    shown = " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())
    return f"{prefix}-{i:02d} {shown}"


def group_name(run_name: str) -> str:
    """The sweep's own name from one of its run names (`lr-03 lr=0.01` -> `lr`): what _name put before the number."""
    found = re.match(r"(.*)-\d{2,} ", run_name)
    return found.group(1) if found else run_name or "sweep"


def grid(base: RunConfig, space: dict[str, list]) -> list[RunConfig]:
    """Every combination of the values in `space`, in order (the last field varies fastest)."""
    names = list(space)
    combos = [dict(zip(names, combo)) for combo in itertools.product(*space.values())]
    prefix = base.run_name or "sweep"
    return [dataclasses.replace(base, **c, run_name=_name(prefix, i, c)) for i, c in enumerate(combos, 1)]


def random_search(base: RunConfig, space: dict[str, list], n: int, seed: int = 0) -> list[RunConfig]:
    """`n` distinct draws: lr log-uniform between its smallest and largest value, other fields from their values."""
    if n < 1:
        raise ConfigError(f"a random sweep needs at least 1 run, got {n}")
    rng = random.Random(seed)
    draws: list[dict] = []
    for _ in range(n * 20):  # distinct draws; a small discrete space may hold fewer than n
        values = {}
        for name, options in space.items():
            if name == "lr" and len(options) > 1:
                lo, hi = math.log10(min(options)), math.log10(max(options))
                values[name] = float(f"{10 ** rng.uniform(lo, hi):.2g}")
            else:
                values[name] = rng.choice(options)
        if values not in draws:
            draws.append(values)
        if len(draws) == n:
            break
    prefix = base.run_name or "sweep"
    return [dataclasses.replace(base, **v, run_name=_name(prefix, i, v)) for i, v in enumerate(draws, 1)]


def build(base: RunConfig, kind: str, space: dict[str, list], n: int = 8, seed: int = 0) -> list[RunConfig]:
    """The sweep's configs; ConfigError for an unknown kind or a value a run would refuse."""
    if kind == "grid":
        return grid(base, space)
    if kind == "random":
        return random_search(base, space, n, seed)
    raise ConfigError(f"sweep kind must be one of {', '.join(KINDS)}; got {kind!r}")
