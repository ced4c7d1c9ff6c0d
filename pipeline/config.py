"""One validated `RunConfig`: every hyperparameter and run option, with its default, in one place.

The CLI flags, the MLflow params and (later) the dashboard's launch form are all built from it, so a
run can be rebuilt from its params and nothing else invents defaults.
"""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from pipeline import settings
from pipeline.errors import UserError

DATASETS = ("digits", "mnist", "fashion-mnist", "cifar10")
IMAGEFOLDER = "imagefolder:"
MODELS = ("mlp", "cnn", "resnet18", "mobilenet_v3_small")
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("none", "cosine", "onecycle", "step")
AUGMENTATIONS = ("none", "light", "strong")
DEVICES = ("auto", "cpu", "cuda")


class ConfigError(UserError):
    """A value a user gave is not allowed; the message names the field and what is allowed."""


def _opt(default, help: str, choices: tuple | None = None, param: bool = True):
    return field(default=default, metadata={"help": help, "choices": choices, "param": param})


@dataclass(frozen=True)
class RunConfig:
    # --- data ---
    dataset: str = _opt("digits", f"one of {', '.join(DATASETS)}, or imagefolder:PATH (class-per-folder "
                        "images under the data root)")
    image_size: int = _opt(0, "side in pixels images are resized to (shrinking averages areas); 0 keeps a "
                           "built-in dataset's size, and an image folder's when its images are all one size up to "
                           "64 px, else takes the median shorter side clamped to 32..224 (224 with ImageNet "
                           "weights); the size used is logged as param image_size_resolved")
    val_fraction: float = _opt(0.1, "share of the training split held out for validation, in (0, 0.5]")
    augment: str = _opt("light", "none: the images as they are; light: random shifts of up to 1/8 of the side (at "
                        "least 1 px, so 1 px at 8 px and 3.5 px at 28 px), resampled bilinearly; strong: also "
                        "rotation up to 10 degrees and scale up to a tenth. No mode mirrors images unless flip is on", AUGMENTATIONS)
    exclude: str = _opt("", "image folders only: a text file inside the data root listing files to leave out, "
                        "relative to the folder, one a line (lines starting with # say why); the list is logged "
                        "as data/excluded_files.txt and is part of the dataset digest")
    flip: bool = _opt(False, "also mirror training images left-right at random: only for images whose class "
                      "survives a mirror (photos of objects; not digits, text or arrows); cifar10 always flips")
    # --- model ---
    model: str = _opt("cnn", "architecture", MODELS)
    weights: str = _opt("", "local file of pretrained weights to start from (nothing is downloaded); a "
                        "torchvision ImageNet state dict also brings ImageNet's preprocessing: RGB, 224 px "
                        "unless image_size is set, ImageNet mean and std")
    freeze_epochs: int = _opt(0, "train only the classifier (the last linear layer) for this many first epochs, "
                              "keeping the pretrained backbone as it is; then train everything")
    # --- optimisation ---
    epochs: int = _opt(5, "passes over the training split")
    batch_size: int = _opt(64, "images per optimizer step")
    optimizer: str = _opt("adamw", "sgd uses Nesterov momentum 0.9", OPTIMIZERS)
    lr: float = _opt(3e-3, "peak learning rate")
    weight_decay: float = _opt(5e-4, "decoupled for adamw, L2 for sgd and adam")
    schedule: str = _opt("onecycle", "learning-rate schedule, stepped per batch", SCHEDULES)
    label_smoothing: float = _opt(0.0, "cross-entropy label smoothing, in [0, 1)")
    patience: int = _opt(0, "stop after this many epochs without a better val_loss; 0 never stops early")
    seed: int = _opt(0, "seeds the validation split, initial weights, shuffling and augmentation")
    device: str = _opt("auto", "auto picks CUDA when present", DEVICES)
    compile: bool = _opt(False, "torch.compile the model: the first steps compile (logged as compile_seconds, "
                         "not counted in throughput), later ones run faster")
    # --- run options (not hyperparameters: kept as the run's experiment, name and tags) ---
    experiment: str = _opt("runboard", "MLflow experiment to log into", param=False)
    run_name: str = _opt("", "MLflow run name; empty lets MLflow pick one", param=False)
    register: str = _opt("", "register the trained model as a new version of this name", param=False)

    def __post_init__(self) -> None:
        _validate(self)

    # --- MLflow params -------------------------------------------------------------------------
    def to_params(self) -> dict[str, str]:
        """The hyperparameters as MLflow params (strings), enough to rebuild this config."""
        return {f.name: str(getattr(self, f.name)) for f in dataclasses.fields(self) if f.metadata["param"]}

    @classmethod
    def from_params(cls, params: dict[str, str], **options) -> "RunConfig":
        """Rebuild a config from a run's params; unknown params are ignored, missing ones default."""
        values = {}
        for f in dataclasses.fields(cls):
            if f.name in params and f.metadata["param"]:
                values[f.name] = _parse(f, params[f.name])
        return cls(**values, **options)

    @property
    def is_imagefolder(self) -> bool:
        return self.dataset.startswith(IMAGEFOLDER)

    def imagefolder_path(self) -> Path:
        """The image folder, resolved inside the data root (validation already refused escapes)."""
        return _confined(self.dataset[len(IMAGEFOLDER):])

    def exclude_path(self) -> Path | None:
        """The exclusion list, resolved inside the data root, or None."""
        return _confined(self.exclude, "exclude") if self.exclude else None


_BOOLS = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False, "off": False}


def parse_bool(text: str) -> bool:
    """'True'/'False' (as MLflow params store them), also true/false, 1/0, yes/no, on/off."""
    try:
        return _BOOLS[str(text).strip().lower()]
    except KeyError:
        raise ValueError(f"not a boolean: {text!r}") from None


def _parse(f: dataclasses.Field, text: str):
    kind = type(f.default)
    try:
        return parse_bool(text) if kind is bool else kind(text)
    except ValueError:
        raise ConfigError(f"{f.name} must be {kind.__name__}, got {text!r}") from None


def _confined(raw: str, what: str = "dataset imagefolder path") -> Path:
    root = settings.data_root().resolve()
    path = Path(raw).expanduser()
    path = (path if path.is_absolute() else root / path).resolve()
    if path != root and root not in path.parents:
        raise ConfigError(f"{what} must be inside the data root {root}, got {raw!r}")
    return path


def _validate(c: RunConfig) -> None:
    for f in dataclasses.fields(c):
        value, kind = getattr(c, f.name), type(f.default)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            object.__setattr__(c, f.name, float(value))
        elif not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise ConfigError(f"{f.name} must be {kind.__name__}, got {value!r}")
        choices = f.metadata["choices"]
        if choices and value not in choices:
            raise ConfigError(f"{f.name} must be one of {', '.join(choices)}; got {value!r}")
    if c.is_imagefolder:
        if not c.dataset[len(IMAGEFOLDER):]:
            raise ConfigError("dataset imagefolder: needs a folder, e.g. imagefolder:flowers")
        c.imagefolder_path()
    elif c.dataset not in DATASETS:
        raise ConfigError(f"dataset must be one of {', '.join(DATASETS)} or imagefolder:PATH; got {c.dataset!r}")
    if c.exclude:
        if not c.is_imagefolder:
            raise ConfigError(f"exclude lists files of an image folder; dataset {c.dataset!r} has none")
        if not c.exclude_path().is_file():
            raise ConfigError(f"exclude file not found: {c.exclude}")
    checks = [
        ("epochs", 1 <= c.epochs <= 10_000, "an integer from 1 to 10000"),
        ("batch_size", 1 <= c.batch_size <= 65_536, "an integer from 1 to 65536"),
        ("lr", 0 < c.lr <= 10, "> 0 and <= 10"),
        ("weight_decay", 0 <= c.weight_decay < 1, ">= 0 and < 1"),
        ("label_smoothing", 0 <= c.label_smoothing < 1, ">= 0 and < 1"),
        ("val_fraction", 0 < c.val_fraction <= 0.5, "> 0 and <= 0.5"),
        ("patience", c.patience >= 0, ">= 0"),
        ("freeze_epochs", c.freeze_epochs >= 0, ">= 0"),
        ("seed", c.seed >= 0, ">= 0"),
        ("image_size", c.image_size == 0 or 4 <= c.image_size <= 512, "0 (native) or from 4 to 512"),
    ]
    for name, ok, allowed in checks:
        if not ok:
            raise ConfigError(f"{name} must be {allowed}, got {getattr(c, name)!r}")
    if c.weights and not Path(c.weights).expanduser().is_file():
        raise ConfigError(f"weights file not found: {c.weights}")


# --- CLI -----------------------------------------------------------------------------------------
def _bool_flag(text: str) -> bool:
    try:
        return parse_bool(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One --flag per field, with its help text, default and choices."""
    for f in dataclasses.fields(RunConfig):
        flag = "--" + f.name.replace("_", "-")
        kind = type(f.default)
        if kind is bool:  # `--compile` alone turns it on; `--compile False` (as the queue writes it) too
            parser.add_argument(flag, type=_bool_flag, nargs="?", const=True, default=f.default, metavar="BOOL",
                                help=f"{f.metadata['help']} (default: {f.default!r})")
            continue
        parser.add_argument(flag, type=kind, default=f.default, choices=f.metadata["choices"],
                            help=f"{f.metadata['help']} (default: {f.default!r})")


def from_args(args: argparse.Namespace) -> RunConfig:
    return RunConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(RunConfig)})
