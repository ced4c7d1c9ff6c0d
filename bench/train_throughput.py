"""Our trainer vs a baseline loop: same model, data, epochs and optimizer, side by side.

Baselines:
- tutorial (default): the way most tutorials write it: a Dataset of PIL images with per-item
  torchvision transforms, a DataLoader, `loss.item()` and a synchronous `mlflow.log_metric` every step.
- plain: the data already on the device, the same augmentation, but fp32, NCHW, an unfused
  optimizer and no compile: what mixed precision, channels_last, fused steps and --compile add.
Ours keeps the data on the device as uint8, augments in large chunks there and logs in batches.
Both log to a throwaway SQLite MLflow store. Prints images/second (training time only, after any
compile warm-up) and time to accuracy (training seconds until val_accuracy first reaches
--target, checked after each epoch) of both, and the ratios.

    .venv/bin/python bench/train_throughput.py                      # digits on the CPU, ~1 minute
    .venv/bin/python bench/train_throughput.py --device cuda --synthetic mnist --epochs 3
    .venv/bin/python bench/train_throughput.py --device cuda --synthetic cifar10 --model resnet18 \\
        --baseline plain --batch-size 512 [--compile]
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tempfile.mkdtemp()}/bench.db"
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as `python -m pipeline` sets it, for both loops

import mlflow  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from PIL import Image  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402
from torchvision import transforms  # noqa: E402

from pipeline import names
from pipeline.runs import tracking  # noqa: E402
from pipeline.training import batches, data, engine, hardware, models  # noqa: E402
from pipeline.config import RunConfig  # noqa: E402

SYNTHETIC = {"mnist": ((1, 28, 28), 60_000, 10_000), "cifar10": ((3, 32, 32), 50_000, 10_000)}


# ---------------------------------------------------------------------------------------------
# data

def synthetic(kind: str, limit: int = 0, seed: int = 0) -> data.ImageData:
    """Images of the real dataset's shape and count, drawn at random but learnable by a CNN: the class
    is the orientation (5 angles) and stripe width (2) of a noisy grating at a random phase."""
    (channels, h, w), n_train, n_test = SYNTHETIC[kind]
    if limit:  # a quick look on a slow device
        n_train, n_test = min(n_train, limit), min(n_test, limit)
    gen = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")

    def split(n):
        labels = torch.randint(0, 10, (n,), generator=gen)
        angle = (labels % 5).float() * math.pi / 5
        period = torch.where(labels < 5, 4.0, 7.0)
        phase = torch.rand(n, generator=gen) * 2 * math.pi
        along = xx * angle.cos().view(-1, 1, 1) + yy * angle.sin().view(-1, 1, 1)
        wave = torch.sin(2 * math.pi * along / period.view(-1, 1, 1) + phase.view(-1, 1, 1))
        pixels = 128 + 70 * wave + 40 * torch.randn(n, h, w, generator=gen)
        images = pixels.clamp(0, 255).to(torch.uint8)[:, None].expand(n, channels, h, w).contiguous()
        return data.Split(images, labels)

    n_val = n_train // 10
    return data.ImageData(f"synthetic-{kind}", [str(c) for c in range(10)], split(n_train - n_val), split(n_val),
                          split(n_test), flip=False)  # a mirrored grating is another class


class PilDataset(Dataset):
    """The tutorial shape: one PIL image per item, transformed per item."""

    def __init__(self, split: data.Split, transform):
        self.images = [Image.fromarray(x[0].numpy() if x.shape[0] == 1 else x.permute(1, 2, 0).numpy())
                       for x in split.images]
        self.labels = split.labels.tolist()
        self.transform = transform

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.transform(self.images[i]), self.labels[i]


# ---------------------------------------------------------------------------------------------
# baselines: each returns the training seconds and the val accuracy after every epoch

def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def tutorial_loop(config: RunConfig, d: data.ImageData, device: torch.device) -> tuple[list[float], list[float]]:
    """PIL images, per-item transforms, a DataLoader, `.item()` and a synchronous MLflow call per step."""
    size = d.image_size[0]
    normalize = transforms.Normalize(d.mean, d.std)
    flip = [transforms.RandomHorizontalFlip()] if d.flip else []
    train_tf = transforms.Compose([transforms.RandomCrop(size, padding=max(1, size // 8)), *flip,
                                   transforms.ToTensor(), normalize])
    loader = DataLoader(PilDataset(d.train, train_tf), batch_size=config.batch_size, shuffle=True)
    val = DataLoader(PilDataset(d.val, transforms.Compose([transforms.ToTensor(), normalize])), batch_size=256)
    torch.manual_seed(config.seed)
    model = models.build(config.model, d.channels, d.image_size, len(d.classes)).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    criterion = nn.CrossEntropyLoss()
    mlflow.set_experiment("bench-tutorial")
    step, seconds, accuracy = 0, [], []
    with mlflow.start_run():
        for epoch in range(config.epochs):
            start = time.perf_counter()
            model.train()
            for x, y in loader:
                x, y = x.to(device), y.to(device)
                optimizer.zero_grad()
                loss = criterion(model(x), y)
                loss.backward()
                optimizer.step()
                step += 1
                mlflow.log_metric("train_loss_step", loss.item(), step=step)
            _sync(device)
            seconds.append(time.perf_counter() - start)
            model.eval()
            with torch.no_grad():
                correct = sum((model(x.to(device)).argmax(1).cpu() == y).sum().item() for x, y in val)
            accuracy.append(correct / len(d.val))
    return seconds, accuracy


def plain_loop(config: RunConfig, d: data.ImageData, device: torch.device) -> tuple[list[float], list[float]]:
    """Data on the device and the same augmentation, but fp32, NCHW, an unfused optimizer, no compile."""
    train, val = batches.to_device(d.train, device), batches.to_device(d.val, device)
    normalize = batches.Normalizer(d.mean, d.std, device)
    gen = torch.Generator(device=device).manual_seed(config.seed)
    torch.manual_seed(config.seed)
    model = models.build(config.model, d.channels, d.image_size, len(d.classes)).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    seconds, accuracy = [], []
    for epoch in range(config.epochs):
        start = time.perf_counter()
        model.train()
        order = torch.randperm(len(train), device=device)
        for i in range(0, len(train), config.batch_size):
            idx = order[i:i + config.batch_size]
            x = normalize(batches.augment(train.images[idx].float(), config.augment, d.flip, gen))
            loss = F.cross_entropy(model(x), train.labels[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        _sync(device)
        seconds.append(time.perf_counter() - start)
        model.eval()
        with torch.no_grad():
            scored = batches.eval_batches(val, None, device, normalize)
            correct = sum((model(x).argmax(1) == y).sum() for x, y in scored)
        accuracy.append(correct.item() / len(val))
    return seconds, accuracy


def our_trainer(config: RunConfig, d: data.ImageData) -> tuple[list[float], list[float], float]:
    """pipeline.engine over the same epochs, logging through the MLflow tracker; also the compile warm-up."""
    client = tracking.connect()
    run = client.create_run(tracking.experiment_id(client, "bench-ours"))
    tracker = tracking.MlflowTracker(client, run.info.run_id)
    result = engine.fit(config, d, tracker, progress=False)
    tracker.flush()
    client.set_terminated(run.info.run_id)
    warm = [m.value for m in client.get_metric_history(run.info.run_id, names.COMPILE_SECONDS)]
    return ([h[names.EPOCH_SECONDS] for h in result.history], [h[names.VAL_ACCURACY] for h in result.history],
            warm[0] if warm else 0.0)


# ---------------------------------------------------------------------------------------------
# report

def time_to(target: float, seconds: list[float], accuracy: list[float]) -> tuple[float, int]:
    """Training seconds until val accuracy first reaches `target`, and that epoch; (nan, 0) if never."""
    for epoch, acc in enumerate(accuracy, 1):
        if acc >= target:
            return sum(seconds[:epoch]), epoch
    return math.nan, 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="auto: CUDA when present")
    parser.add_argument("--synthetic", choices=tuple(SYNTHETIC), default=None,
                        help="MNIST- or CIFAR-10-shaped random data (no download) instead of digits")
    parser.add_argument("--baseline", choices=("tutorial", "plain"), default="tutorial", help="the loop we race")
    parser.add_argument("--model", default="cnn", choices=models.MODELS)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=0, help="digits only: 0 keeps 8x8")
    parser.add_argument("--target", type=float, default=0.95, help="val accuracy for time-to-accuracy")
    parser.add_argument("--compile", action="store_true", help="our trainer with torch.compile")
    parser.add_argument("--limit", type=int, default=0, help="synthetic: at most this many images per split")
    args = parser.parse_args()
    config = RunConfig(epochs=args.epochs, batch_size=args.batch_size, image_size=args.image_size, model=args.model,
                       device=args.device, schedule="none", augment="light", compile=args.compile)
    device = engine.pick_device(config.device)
    hardware.configure(device)  # the same threads for both loops: the comparison is of the loops
    d = synthetic(args.synthetic, args.limit) if args.synthetic else data.load(config)
    tracking.connect()
    threads = f", {torch.get_num_threads()} CPU threads" if device.type == "cpu" else ""
    print(f"{d.name} {d.image_size[0]}x{d.image_size[1]}x{d.channels}, {len(d.train)} training images, "
          f"{config.model}, {config.epochs} epochs, batch {config.batch_size}, {engine.device_name(device)}{threads}, "
          f"torch {torch.__version__}")
    baseline = {"tutorial": tutorial_loop, "plain": plain_loop}[args.baseline](config, d, device)
    *ours, warm = our_trainer(config, d)
    rows = []
    for name, (seconds, accuracy) in ((f"{args.baseline} loop", baseline), ("our trainer", ours)):
        rate = config.epochs * len(d.train) / sum(seconds)
        tta, epoch = time_to(args.target, seconds, accuracy)
        rows.append((rate, tta))
        reached = f"{tta:7.2f} s (epoch {epoch})" if epoch else "    not reached"
        print(f"{name:15}: {rate:10,.0f} img/s   to {args.target:.0%} val acc: {reached}   "
              f"final val acc {accuracy[-1]:.4f}   epochs: {' '.join(f'{t:.2f}' for t in seconds)} s")
    (base_rate, base_tta), (our_rate, our_tta) = rows
    tta = f"{base_tta / our_tta:.1f}x" if not math.isnan(base_tta + our_tta) else \
        "n/a (a loop never reached it: raise --epochs or lower --target)"
    print(f"{'ratio':15}: {our_rate / base_rate:10.1f}x       time to accuracy: {tta}"
          + (f"   (compile warm-up {warm:.1f} s, not counted)" if config.compile else ""))
    if config.epochs > 1:  # the first epoch holds one-off costs (cuDNN autotuning, lazy init) that compile's
        # warm-up absorbs for ours alone: epochs 2.. compare the loops as they run for the rest of a long run
        steady = [statistics.median(seconds[1:]) for seconds, _ in (baseline, ours)]
        print(f"{'after epoch 1':15}: {steady[0] / steady[1]:10.1f}x       median epoch {steady[0]:.2f} s "
              f"({args.baseline}) vs {steady[1]:.2f} s (ours)")


if __name__ == "__main__":
    main()
