"""RunConfig: validation messages, MLflow param round trip, CLI flags. Run: make test."""
import argparse
import dataclasses

import pytest

from pipeline import config as cfg
from pipeline.config import ConfigError, RunConfig


def test_defaults_are_valid_and_train_digits_cnn():
    c = RunConfig()
    assert (c.dataset, c.model) == ("digits", "cnn")


@pytest.mark.parametrize("field, value, message", [
    ("lr", -1.0, "lr must be > 0"),
    ("lr", 0.0, "lr must be > 0"),
    ("epochs", 0, "epochs must be an integer from 1"),
    ("batch_size", 0, "batch_size must be"),
    ("optimizer", "rmsprop", "optimizer must be one of sgd, adam, adamw"),
    ("schedule", "linear", "schedule must be one of none, cosine, onecycle, step"),
    ("augment", "heavy", "augment must be one of none, light, strong"),
    ("model", "vgg", "model must be one of mlp, cnn, resnet18, mobilenet_v3_small"),
    ("dataset", "imagenet", "dataset must be one of digits, mnist, fashion-mnist, cifar10 or imagefolder:PATH"),
    ("val_fraction", 0.0, "val_fraction must be > 0"),
    ("val_fraction", 0.9, "val_fraction must be > 0 and <= 0.5"),
    ("label_smoothing", 1.0, "label_smoothing must be >= 0 and < 1"),
    ("weight_decay", -0.1, "weight_decay must be >= 0"),
    ("patience", -1, "patience must be >= 0"),
    ("image_size", 2, "image_size must be 0 (native) or from 4 to 512"),
    ("epochs", "5", "epochs must be int"),
    ("epochs", True, "epochs must be int"),
    ("weights", "/no/such/file.pt", "weights file not found"),
])
def test_bad_values_name_the_field(field, value, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        RunConfig(**{field: value})


def test_int_given_for_float_is_accepted():
    assert RunConfig(lr=1).lr == 1.0


def test_params_round_trip():
    c = RunConfig(model="mlp", lr=0.01, epochs=3, schedule="cosine", augment="strong", label_smoothing=0.1,
                  patience=2, seed=7, experiment="x", run_name="y", register="z")
    params = c.to_params()
    assert all(isinstance(v, str) for v in params.values())
    assert "experiment" not in params and "run_name" not in params and "register" not in params
    rebuilt = RunConfig.from_params(params, experiment="x", run_name="y", register="z")
    assert rebuilt == c


def test_from_params_ignores_unknown_and_defaults_missing():
    assert RunConfig.from_params({"lr": "0.5", "something_else": "1"}) == RunConfig(lr=0.5)


def test_from_params_rejects_garbage():
    with pytest.raises(ConfigError, match="epochs must be int"):
        RunConfig.from_params({"epochs": "many"})


def test_imagefolder_confined_to_data_root(tmp_path, monkeypatch):
    monkeypatch.setenv("RUNBOARD_DATA_ROOT", str(tmp_path))
    (tmp_path / "pets").mkdir()
    assert RunConfig(dataset="imagefolder:pets").imagefolder_path() == (tmp_path / "pets").resolve()
    assert RunConfig(dataset=f"imagefolder:{tmp_path}/pets").imagefolder_path() == (tmp_path / "pets").resolve()
    for escape in ("../", "/etc", "pets/../../x"):
        with pytest.raises(ConfigError, match="must be inside the data root"):
            RunConfig(dataset=f"imagefolder:{escape}")
    with pytest.raises(ConfigError, match="needs a folder"):
        RunConfig(dataset="imagefolder:")


def test_every_field_is_a_cli_flag_with_help():
    parser = argparse.ArgumentParser()
    cfg.add_arguments(parser)
    actions = {a.dest: a for a in parser._actions}
    for f in dataclasses.fields(RunConfig):
        assert f.name in actions and actions[f.name].help
    args = parser.parse_args(["--lr", "0.02", "--batch-size", "16", "--model", "mlp"])
    assert cfg.from_args(args) == RunConfig(lr=0.02, batch_size=16, model="mlp")


def test_compile_is_a_bool_flag_and_param():
    parser = argparse.ArgumentParser()
    cfg.add_arguments(parser)
    assert cfg.from_args(parser.parse_args([])).compile is False
    assert cfg.from_args(parser.parse_args(["--compile"])).compile is True
    assert cfg.from_args(parser.parse_args(["--compile", "False"])).compile is False  # as the queue writes it
    c = RunConfig(compile=True)
    assert c.to_params()["compile"] == "True" and RunConfig.from_params(c.to_params()) == c
    assert RunConfig.from_params({"compile": "False"}).compile is False
    with pytest.raises(ConfigError, match="compile must be bool"):
        RunConfig.from_params({"compile": "sometimes"})
    with pytest.raises(ConfigError, match="compile must be bool"):
        RunConfig(compile=1)
