"""The timing every PyTorch bench script shares with `amun bench`: untimed
warm-up steps, then the median seconds per step over `windows` windows of
`steps` steps, with the device synchronised at each window's ends."""
import statistics
import time

import torch


def median_step_seconds(step, device, warmup, windows, steps):
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(warmup):
        step()
    sync()
    rates = []
    for _ in range(windows):
        t = time.perf_counter()
        for _ in range(steps):
            step()
        sync()
        rates.append((time.perf_counter() - t) / steps)
    return statistics.median(rates)
