"""Training engine on the CPU: schedules, augmentation, accuracy, reproducibility, failures. Run: make test."""
import dataclasses
import math
import re
import time

import pytest
import torch

from pipeline import names
from pipeline.training import batches, data, engine, hardware, models
from pipeline.config import RunConfig
from pipeline.training.engine import TrainingError
from pipeline.training.evaluation import validate


@pytest.fixture(scope="module")
def digits():
    return data.load(RunConfig())


def test_schedules():
    total = 100
    assert [engine.lr_factor("none", s, total) for s in (0, 50, 99)] == [1.0, 1.0, 1.0]
    assert engine.lr_factor("cosine", 0, total) == 1.0 and engine.lr_factor("cosine", 100, total) < 1e-9
    assert engine.lr_factor("step", 49, total) == 1.0 and engine.lr_factor("step", 60, total) == pytest.approx(0.1)
    assert engine.lr_factor("step", 80, total) == pytest.approx(0.01)
    onecycle = [engine.lr_factor("onecycle", s, total) for s in range(total + 1)]
    assert onecycle[0] == pytest.approx(0.1) and max(onecycle) == pytest.approx(1.0)
    assert onecycle.index(max(onecycle)) == 25 and onecycle[-1] < 1e-9
    assert onecycle[12] == pytest.approx(0.1 + 0.9 * 0.12 / 0.25)  # linear warm-up
    assert engine.lr_factor("step", 50, total) == pytest.approx(0.1)  # the drops happen at 50 % and 75 %
    assert engine.lr_factor("step", 75, total) == pytest.approx(0.01)
    assert engine.lr_factor("cosine", 1, 1) < 1e-9 and engine.lr_factor("cosine", 0, 0) == 1.0  # a one-step run


def test_augment_keeps_shape_and_light_only_shifts_by_at_most_an_eighth():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(16, 1, 8, 8)
    assert torch.equal(batches.augment(x, "none", False, gen), x)
    light = batches.augment(x, "light", False, gen)
    assert light.shape == x.shape and not torch.equal(light, x)
    dot = torch.zeros(64, 1, 16, 16)
    dot[:, :, 8, 8] = 1.0
    moved = batches.augment(dot, "light", False, gen)  # sub-pixel shifts: the dot's centre of mass moves
    rows, cols = torch.arange(16.0).view(1, 1, 16, 1), torch.arange(16.0).view(1, 1, 1, 16)
    mass = moved.sum(dim=(1, 2, 3))
    centre = torch.stack([(moved * rows).sum(dim=(1, 2, 3)) / mass, (moved * cols).sum(dim=(1, 2, 3)) / mass], 1)
    assert (centre - 8).abs().max() <= 2.0 + 1e-4 and (centre - 8).abs().max() > 0.5  # up to 1/8 of 16 px
    assert batches.augment(x, "strong", True, gen).shape == x.shape


def test_augment_is_reproducible_from_its_generator():
    x = torch.rand(4, 3, 16, 16)
    a = batches.augment(x, "strong", True, torch.Generator().manual_seed(3))
    b = batches.augment(x, "strong", True, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_cnn_reaches_97_percent_on_digits_in_5_epochs(digits):
    result = engine.fit(RunConfig(epochs=5), digits, progress=False)
    assert result.test.accuracy >= 0.97  # measured over seeds 0-4: 0.992 .. 1.0, 7+ images above the limit
    assert result.epochs_run == 5 and len(result.history) == 5
    assert set(result.history[0]) == set(names.EPOCH_METRICS)


def test_same_seed_same_result(digits):
    config = RunConfig(epochs=1, model="cnn", seed=3, device="cpu")  # cuDNN picks kernels nondeterministically
    a, b = engine.fit(config, digits, progress=False), engine.fit(config, digits, progress=False)
    assert a.test.accuracy == b.test.accuracy
    assert [h["train_loss"] for h in a.history] == [h["train_loss"] for h in b.history]


class _Recorder:
    def __init__(self):
        self.rows, self.flushes = [], 0

    def log_metrics(self, values, step):
        self.rows += [(k, step, v) for k, v in values.items()]

    def flush(self):
        self.flushes += 1


def test_every_step_and_epoch_is_reported(digits):
    rec = _Recorder()
    config = RunConfig(epochs=2, batch_size=128)
    engine.fit(config, digits, rec, progress=False)
    steps = [s for k, s, _ in rec.rows if k == names.TRAIN_LOSS_STEP]
    per_epoch = math.ceil(len(digits.train) / 128)
    assert steps == list(range(1, 2 * per_epoch + 1))
    assert sorted(s for k, s, _ in rec.rows if k == names.VAL_LOSS) == [1, 2]
    assert rec.flushes == 2  # one batched write per epoch, not one per step


def test_nan_loss_stops_training_with_a_clear_error(digits, tmp_path):
    nan = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
           for k, v in models.build("mlp", 1, (8, 8), 10).state_dict().items()}
    torch.save(nan, tmp_path / "nan.pt")
    with pytest.raises(TrainingError, match="loss became nan at step 1"):
        engine.fit(RunConfig(model="mlp", epochs=1, weights=str(tmp_path / "nan.pt")), digits, progress=False)


def test_early_stopping_restores_the_best_epoch(digits, capsys):
    config = RunConfig(model="mlp", epochs=40, patience=2, lr=0.05, optimizer="adam", schedule="none",
                       augment="none", weight_decay=0.0)
    states = []
    result = engine.fit(config, digits, checkpoint=states.append)
    assert result.epochs_run < 40 and result.epochs_run == result.best_epoch + 2
    assert "early stop: val_loss has not improved for 2 epochs" in capsys.readouterr().out
    assert states[-1]["stopped"] and states[-1]["epoch"] == result.epochs_run
    # an attempt resumed from the stopped checkpoint trains no further epoch and keeps the best weights
    rec = _Recorder()
    again = engine.fit(config, digits, rec, progress=False, resume=states[-1])
    assert rec.rows == [] and again.epochs_run == result.epochs_run and again.best_epoch == result.best_epoch
    assert again.test.loss == result.test.loss
    losses = [h["val_loss"] for h in result.history]
    assert min(losses) == losses[result.best_epoch - 1]
    # the network handed back is the best epoch's, not the last one's: score it again on val
    device = next(result.model.parameters()).device
    normalize = batches.Normalizer(digits.mean, digits.std, device, hardware.memory_format(device))
    val_loss, _ = validate(result.model, batches.to_device(digits.val, device), normalize, device)
    assert val_loss == pytest.approx(losses[result.best_epoch - 1], rel=1e-5)
    assert val_loss != pytest.approx(losses[-1], rel=1e-3)  # the last epoch's weights score differently


def test_a_cpu_run_names_its_device_cpu():
    assert engine.device_name(torch.device("cpu")) == "cpu"


def test_cuda_requested_without_gpu_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a GPU machine runs this test too
    assert engine.pick_device("auto").type == "cpu"
    with pytest.raises(TrainingError, match=r"^device cuda was asked for, but no CUDA GPU is available; "
                                            r"use --device auto or cpu$"):
        engine.pick_device("cuda")


# --- the engine's parts on hand-made inputs: each figure is computed here independently ------------

def test_each_optimizer_gets_the_configured_learning_rate_and_decay():
    cpu = torch.device("cpu")
    expected = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
    for kind, cls in expected.items():
        opt = engine.make_optimizer(torch.nn.Linear(2, 2), RunConfig(optimizer=kind, lr=0.123, weight_decay=0.02),
                                    cpu)  # neither torch's default decay (0 or 0.01) nor lr
        group = opt.param_groups[0]
        assert type(opt) is cls and group["lr"] == 0.123 and group["weight_decay"] == 0.02, kind
        assert group["fused"] is True and len(group["params"]) == 2, kind
        if kind == "sgd":
            assert group["momentum"] == 0.9 and group["nesterov"] is True


def test_steps_per_epoch_shards_the_images_and_the_batch():
    assert engine.steps_per_epoch(10, 3) == 4
    assert engine.steps_per_epoch(10, 3, world=2) == 3   # 5 images per process, 2 per step
    assert engine.steps_per_epoch(1293, 128) == 11 and engine.steps_per_epoch(1293, 128, 2) == 11


def test_compile_warms_up_every_batch_size_an_epoch_feeds():
    assert engine.batch_sizes(1293, 64) == [64, 13]       # 20 full batches, then 13 images
    assert engine.batch_sizes(1293, 32, world=2) == [32, 7]  # a shard of 647 images per process
    assert engine.batch_sizes(128, 64) == [64]           # no smaller last batch
    assert engine.batch_sizes(10, 64) == [10]            # one batch, smaller than asked
    assert engine.batch_sizes(64, 64) == [64]


class _Bar:
    """Stands in for tqdm: counts updates and keeps the last postfix."""

    def __init__(self):
        self.n, self.postfix = 0, None

    def update(self, n):
        self.n += n

    def set_postfix(self, **values):
        self.postfix = values


def test_step_losses_reach_the_tracker_every_log_every_steps_with_their_own_steps():
    rec = _Recorder()
    log = engine._StepLog(rec, _Bar())
    for step in range(7, 7 + engine.LOG_EVERY - 1):
        log.add(step, torch.tensor(float(step)))
    assert rec.rows == []  # one host read per interval, not per step
    log.add(7 + engine.LOG_EVERY - 1, torch.tensor(0.5))
    assert [s for _, s, _ in rec.rows] == list(range(7, 7 + engine.LOG_EVERY))
    assert [v for _, _, v in rec.rows][:2] == [7.0, 8.0] and log.bar.postfix["loss"] == "0.5000"
    log.flush()
    assert len(rec.rows) == engine.LOG_EVERY  # nothing pending: nothing written twice


def test_a_non_finite_step_loss_names_its_own_step():
    log = engine._StepLog(_Recorder(), _Bar())
    for step, loss in ((7, 1.0), (8, 1.0), (9, float("inf"))):
        log.add(step, torch.tensor(loss))
    with pytest.raises(TrainingError, match=r"^loss became inf at step 9; try a lower learning rate$"):
        log.flush()


def _one_epoch(start=None, midway=None):
    """One epoch of a fixed linear model with lr 0 (it does not change): two batches of 3 and 2 images."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    x, y = torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1])
    batches = [(x[:3], y[:3]), (x[3:], y[3:])]
    bar, rec = _Bar(), _Recorder()
    cpu = torch.device("cpu")
    out = engine.train_one_epoch(model, optimizer, scheduler, torch.amp.GradScaler("cpu", enabled=False),
                                 torch.nn.CrossEntropyLoss(), batches, cpu, None, 5, engine._StepLog(rec, bar),
                                 start, midway)
    with torch.no_grad():
        logits = model(x)
    losses = torch.nn.functional.cross_entropy(logits, y, reduction="none")
    return out, losses, (logits.argmax(1) == y), bar, rec


def test_an_epoch_reports_the_mean_loss_and_accuracy_over_every_image():
    (step, loss, acc), losses, right, bar, rec = _one_epoch()
    assert 0 < int(right.sum()) < 5  # the accuracy is neither 0 nor 1: a count of wrong ones would differ
    assert step == 7 and bar.n == 2
    assert loss == pytest.approx(float(losses.mean()), rel=1e-6) and acc == int(right.sum()) / 5
    assert [s for _, s, _ in rec.rows] == [6, 7]
    assert [v for _, _, v in rec.rows] == pytest.approx([float(losses[:3].mean()), float(losses[3:].mean())])


def test_an_epoch_cut_off_midway_goes_on_from_its_sums_and_leaves_them_as_they_were():
    start = {"loss": torch.tensor(10.0), "correct": torch.tensor(2), "seen": 5}
    seen_midway = []
    (step, loss, acc), losses, right, _, _ = _one_epoch(
        start, lambda at, total, correct, seen: seen_midway.append((at, float(total), int(correct), seen)))
    assert loss == pytest.approx((10 + float(losses.sum())) / 10, rel=1e-6)
    assert acc == (2 + int(right.sum())) / 10
    assert float(start["loss"]) == 10.0 and int(start["correct"]) == 2  # the resume state is not changed
    assert [(at, seen) for at, _, _, seen in seen_midway] == [(6, 8), (7, 10)]
    assert seen_midway[0][1] == pytest.approx(10 + float(losses[:3].sum()), rel=1e-6)
    assert seen_midway[0][2] == 2 + int(right[:3].sum())


def test_a_given_network_is_the_one_trained_and_returned(digits):
    net = models.build("mlp", 1, (8, 8), 10)
    before = [p.detach().clone() for p in net.parameters()]
    result = engine.fit(RunConfig(model="cnn", epochs=1), digits, progress=False, model=net)
    assert result.model is net
    assert any(not torch.equal(a, b.cpu()) for a, b in zip(before, net.parameters()))  # trained on any device


def test_should_stop_is_asked_after_each_epoch_but_the_last_and_ends_training_when_it_says_so(digits, capsys):
    asked = []
    config = RunConfig(model="mlp", epochs=3, batch_size=256)
    full = engine.fit(config, digits, progress=False, should_stop=lambda e: asked.append(e) or False)
    assert asked == [1, 2] and full.epochs_run == 3
    engine.fit(config, digits, progress=False, should_stop=lambda e: True)
    assert capsys.readouterr() == ("", "")  # a quiet trial says nothing when it is pruned either
    stopped = engine.fit(config, digits, should_stop=lambda e: e == 1)
    assert stopped.epochs_run == 1 and stopped.best_epoch == 1
    assert "pruned: the study's pruner stopped this trial after epoch 1" in capsys.readouterr().out


def test_the_console_shows_each_epoch_by_default(digits, capsys):
    engine.fit(RunConfig(model="mlp", epochs=1, batch_size=256), digits, progress=False)
    assert capsys.readouterr() == ("", "")  # a worker's quiet run prints nothing
    began = time.perf_counter()
    result = engine.fit(RunConfig(model="mlp", epochs=1, batch_size=256), digits)
    took = time.perf_counter() - began
    out, err = capsys.readouterr()
    row = result.history[0]
    assert 0 < row[names.EPOCH_SECONDS] < took  # the epoch's own time, within the call's
    assert row[names.THROUGHPUT] == pytest.approx(len(digits.train) / row[names.EPOCH_SECONDS])
    # the final network scored on the validation split (what a temperature is fitted on) agrees with the log
    assert len(result.val.labels) == len(digits.val) and result.val.accuracy == pytest.approx(row[names.VAL_ACCURACY])
    assert row[names.LR] == pytest.approx(RunConfig().lr * engine.ONECYCLE_START)  # the epoch's first step's
    assert (f"epoch 1: train_loss {row['train_loss']:.4f}  val_loss {row['val_loss']:.4f}  "
            f"val_accuracy {row['val_accuracy']:.4f}  {row[names.THROUGHPUT]:,.0f} img/s") in out
    steps = engine.steps_per_epoch(len(digits.train), 256)
    assert re.search(rf"epoch 1/1: 100%.*\| {steps}/{steps} \[.*(step/s|s/step)", err)  # tqdm writes on stderr


def test_each_augmentation_mode_reaches_the_batches(digits):
    losses = {mode: engine.fit(RunConfig(model="mlp", epochs=1, augment=mode, device="cpu"), digits,
                               progress=False).history[0][names.TRAIN_LOSS] for mode in ("none", "light", "strong")}
    assert len(set(losses.values())) == 3, losses
    flipped = dataclasses.replace(digits, flip=True)  # a folder whose classes allow mirrors
    mirrored = engine.fit(RunConfig(model="mlp", epochs=1, augment="light", device="cpu"), flipped, progress=False)
    assert mirrored.history[0][names.TRAIN_LOSS] != losses["light"]


def test_freeze_epochs_train_only_the_classifier_first(digits):
    net = models.build("mlp", 1, (8, 8), 10)
    head = {id(p) for p in models.classifier(net).parameters()}
    params = {name: p.detach().clone() for name, p in net.named_parameters()}
    classifier = {name for name, p in net.named_parameters() if id(p) in head}
    states = []
    engine.fit(RunConfig(model="mlp", epochs=2, freeze_epochs=1, batch_size=256), digits, progress=False,
               checkpoint=states.append, model=net)
    moved = [{k for k, v in params.items() if not torch.equal(state["model"][k], v)} for state in states]
    assert moved == [classifier, set(params)]  # the classifier alone in epoch 1, the whole network from epoch 2
    assert all(p.requires_grad for p in net.parameters())
