"""Training throughput of a model config on this machine: samples/s for forward + backward + AdamW step.

Random inputs at the config's sizes (data loading excluded: it runs in
workers beside the step). Prints the median over timed steps after warm-up.

    python benchmarks/train_throughput.py --config smgeo-nano --batch-size 8 --steps 10
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from smgeo_cli.device import resolve_device, set_cpu_threads
from smgeo_cli.model.config import resolve_config
from smgeo_cli.model.smgeo import SMGeo
from smgeo_cli.train.losses import smgeo_loss
from smgeo_cli.train.targets import center_targets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="smgeo-nano")
    parser.add_argument("--ref-size", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    config = resolve_config(args.config)
    if args.ref_size:
        config = config.replace(ref_size=args.ref_size)
    device = resolve_device(args.device)
    set_cpu_threads()
    torch.manual_seed(0)
    model = SMGeo(config).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    b, q, r = args.batch_size, config.query_size, config.ref_size
    query, reference = torch.randn(b, 3, q, q, device=device), torch.randn(b, 3, r, r, device=device)
    click = torch.rand(b, 2, device=device) * q
    corner = torch.rand(b, 2, device=device) * r * 0.7
    boxes = torch.cat([corner, corner + r * 0.1], dim=1)

    times = []
    for step in range(args.warmup + args.steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        maps = model(query, click, reference)
        loss = smgeo_loss(maps, center_targets(boxes, maps["heatmap"].shape[-1], config.fusion_stride), config)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
    median = statistics.median(times)
    print(f"config {config.name}  query {q}  reference {r}  batch {b}  device {device}  threads {torch.get_num_threads()}")
    print(f"median step {median:.3f} s  ->  {b / median:.2f} samples/s  ({median / b:.3f} s/sample)")


if __name__ == "__main__":
    main()
