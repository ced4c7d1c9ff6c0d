"""onnxruntime sessions for exported variants: one way to open a model and run it, for predictions and export.

ONNX files are protobuf (no pickle). Sessions run on the CPU provider, listed explicitly (the wheel also
offers Azure's), with a fixed thread count: on a loaded CPU one thread is the fastest for small batches.
"""
from __future__ import annotations

import numpy as np

BATCH = 256  # images per run; the exported graph's batch dimension is dynamic


def session(model: bytes | str, threads: int = 1):
    """An InferenceSession of ONNX bytes (or a file path) on the CPU."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.log_severity_level = 3  # errors only: ORT warns about every unused initializer
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def logits(sess, x: np.ndarray) -> np.ndarray:
    """float32 logits (N, classes) of normalized float32 (N, C, H, W) inputs, BATCH images per run."""
    name = sess.get_inputs()[0].name
    x = np.ascontiguousarray(x, dtype=np.float32)
    out = [sess.run(None, {name: x[i:i + BATCH]})[0] for i in range(0, len(x), BATCH)]
    return np.concatenate(out) if out else np.empty((0, sess.get_outputs()[0].shape[1]), np.float32)
