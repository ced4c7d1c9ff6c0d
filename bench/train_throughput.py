"""Our trainer vs a tutorial-style loop: same model, data, epochs and optimizer, side by side.

The tutorial loop is written the way most tutorials write it: a Dataset returning PIL images with
per-item torchvision transforms, a DataLoader, `loss.item()` and a synchronous `mlflow.log_metric`
every step. Ours keeps the data on the device as uint8, augments in batches and logs in batches.
Both log to a throwaway SQLite MLflow store. Prints images/second of both and the ratio.

    .venv/bin/python bench/train_throughput.py [--epochs 3] [--image-size 0] [--model cnn]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tempfile.mkdtemp()}/bench.db"

import mlflow  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402
from torchvision import transforms  # noqa: E402

from pipeline import data, engine, models, tracking  # noqa: E402
from pipeline.config import RunConfig  # noqa: E402


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


def tutorial_loop(config: RunConfig, d: data.ImageData) -> float:
    """Images/second of the tutorial-style loop, logging every step synchronously to MLflow."""
    size = d.image_size[0]
    transform = transforms.Compose([transforms.RandomCrop(size, padding=max(1, size // 8)), transforms.ToTensor(),
                                    transforms.Normalize(d.mean, d.std)])
    loader = DataLoader(PilDataset(d.train, transform), batch_size=config.batch_size, shuffle=True)
    torch.manual_seed(config.seed)
    model = models.build(config.model, d.channels, d.image_size, len(d.classes))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    criterion = nn.CrossEntropyLoss()
    mlflow.set_experiment("bench-tutorial")
    step, start = 0, time.perf_counter()
    with mlflow.start_run():
        for epoch in range(config.epochs):
            model.train()
            for x, y in loader:
                optimizer.zero_grad()
                loss = criterion(model(x), y)
                loss.backward()
                optimizer.step()
                step += 1
                mlflow.log_metric("train_loss_step", loss.item(), step=step)
    return config.epochs * len(d.train) / (time.perf_counter() - start)


def our_trainer(config: RunConfig, d: data.ImageData) -> float:
    """Images/second of pipeline.engine over the same epochs, logging through the MLflow tracker."""
    client = tracking.connect()
    exp = tracking.experiment_id(client, "bench-ours")
    run = client.create_run(exp)
    tracker = tracking.MlflowTracker(client, run.info.run_id)
    result = engine.fit(config, d, tracker, progress=False)
    client.set_terminated(run.info.run_id)
    seconds = sum(h[engine.EPOCH_SECONDS] for h in result.history)
    return config.epochs * len(d.train) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=0, help="0 keeps digits' 8x8; 28 is MNIST-shaped")
    parser.add_argument("--model", default="cnn")
    args = parser.parse_args()
    config = RunConfig(epochs=args.epochs, image_size=args.image_size, model=args.model, device="cpu",
                       schedule="none", augment="light")
    d = data.load(config)
    tracking.connect()
    print(f"digits {d.image_size[0]}x{d.image_size[1]}, {len(d.train)} training images, {config.model}, "
          f"{config.epochs} epochs, batch {config.batch_size}, {torch.get_num_threads()} CPU threads")
    tutorial = tutorial_loop(config, d)
    ours = our_trainer(config, d)
    print(f"tutorial loop : {tutorial:10,.0f} img/s")
    print(f"our trainer   : {ours:10,.0f} img/s")
    print(f"ratio         : {ours / tutorial:10.1f}x")


if __name__ == "__main__":
    main()
