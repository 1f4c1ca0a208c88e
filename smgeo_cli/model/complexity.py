"""Parameter and FLOP counts, for ``smgeo info`` and model cards."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from smgeo_cli.model.smgeo import SMGeo


@dataclass
class Complexity:
    """``gflops_*`` count multiply and add separately (2 per MAC), as torch's FlopCounterMode does."""

    parameters: int
    gflops_per_query: float  # query + reference tile, end to end
    gflops_reference: float  # encoding one reference tile (cached across queries)
    gflops_query: float  # a query against an already-encoded tile


def _gflops(fn) -> float:
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops() / 1e9


@torch.inference_mode()
def measure(model: SMGeo) -> Complexity:
    """Counts at the config's sizes, batch 1, in eval mode.

    With sparse MoE only the chosen experts run, so the count follows the
    actual routing of the probe input (random noise), not a dense upper bound.
    """
    config = model.config
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    generator = torch.Generator().manual_seed(0)
    query = torch.randn(1, 3, config.query_size, config.query_size, generator=generator).to(device)
    reference = torch.randn(1, 3, config.ref_size, config.ref_size, generator=generator).to(device)
    click = torch.tensor([[config.query_size / 2, config.query_size / 2]], device=device)
    reference_features = model.encode_reference(reference)
    result = Complexity(
        parameters=sum(p.numel() for p in model.parameters()),
        gflops_per_query=_gflops(lambda: model.detect(query, click, reference=reference)),
        gflops_reference=_gflops(lambda: model.encode_reference(reference)),
        gflops_query=_gflops(lambda: model.detect(query, click, reference_features=reference_features)),
    )
    model.pop_aux_losses()
    model.train(was_training)
    return result
