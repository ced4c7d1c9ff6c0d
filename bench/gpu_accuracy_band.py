"""The CUDA recipe's accuracy band on digits: the same runs in fp32 and in mixed precision, seed by seed.

On a GPU the engine trains in bf16 autocast with channels_last (fp16 with a grad scaler where bf16 is
missing). This trains each model on the embedded digits once with that recipe, once in fp16 with its scaler
and once in plain fp32 (autocast off, contiguous layout), for seeds 0..N-1, on the same device, and prints
the test accuracy of each and the largest gap to fp32. tests/test_hardware.py checks the same band on the
CPU, emulated; this is the figure on the real device.

    .venv/bin/python bench/gpu_accuracy_band.py --device cuda --seeds 5
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from pipeline.config import RunConfig  # noqa: E402
from pipeline.training import data, engine, hardware  # noqa: E402

RECIPES = {  # name -> (autocast dtype, memory format); None: what hardware picks for the device; False: autocast off
    "fp32": (False, torch.contiguous_format),
    "fp16+scaler": (torch.float16, torch.channels_last),
    "device's recipe": (None, None),
}


def accuracy(config: RunConfig, digits, dtype, layout) -> tuple[float, set]:
    """Test accuracy of one run, with the engine's precision and layout choices swapped as asked, and the
    autocast dtypes it really used (a spy, so a swap that did not take shows)."""
    amp, fmt, autocast, used = hardware.amp_dtype, hardware.memory_format, hardware.autocast, set()
    if dtype is not None:
        hardware.amp_dtype = lambda device: dtype or None
    if layout is not None:
        hardware.memory_format = lambda device: layout
    hardware.autocast = lambda device, d: used.add(str(d).removeprefix("torch.")) or autocast(device, d)
    try:
        return engine.fit(config, digits, progress=False).test.accuracy, used
    finally:
        hardware.amp_dtype, hardware.memory_format, hardware.autocast = amp, fmt, autocast


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", choices=("cpu", "cuda"))
    parser.add_argument("--models", default="cnn,mlp")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args(argv)
    digits = data.load(RunConfig())
    device = engine.pick_device(args.device)
    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}), "
          f"its recipe: {hardware.amp_dtype(device)}, {hardware.memory_format(device)}; torch {torch.__version__}")
    for model in args.models.split(","):
        gaps = {name: [] for name in RECIPES if name != "fp32"}
        for seed in range(args.seeds):
            config = RunConfig(model=model, epochs=args.epochs, seed=seed, device=args.device)
            started, scores, used = time.perf_counter(), {}, {}
            for name, (dtype, layout) in RECIPES.items():
                scores[name], used[name] = accuracy(config, digits, dtype, layout)
            for name in gaps:
                gaps[name].append(scores[name] - scores["fp32"])
            print(f"{model} seed {seed}: " + "  ".join(f"{n} {a:.4f} ({'/'.join(sorted(used[n]))})"
                                                        for n, a in scores.items())
                  + f"   ({time.perf_counter() - started:.1f} s)")
        for name, values in gaps.items():
            print(f"{model} {name} - fp32: mean {sum(values) / len(values):+.4f}, "
                  f"largest gap {max(map(abs, values)):.4f} over {len(values)} seeds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
