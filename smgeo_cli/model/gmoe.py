"""Grid-level sparse mixture of experts (GMoE).

A "grid" is one token of a Swin stage. Each token is routed by the router of
the view it comes from (query or reference) to its top-k experts, and only
those experts run on it: tokens are gathered per expert, pushed through that
expert, and scattered back weighted by their gates. An expert that no token
chose does no work at all.

:class:`GridMoE` stands in for ``SwinBlock.mlp`` (:mod:`smgeo_cli.model.swin`): it takes and
returns tokens shaped (B, N, C). The encoder tells it which view it is serving
before each call (``set_view``), and it keeps the auxiliary losses of its
forward calls for the model to collect afterwards (``pop_aux_losses``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from smgeo_cli.model.swin import Mlp

VIEWS = ("query", "reference")


class ExpertPool(nn.Module):
    """The experts of one stage; every MoE block of the stage draws on them."""

    def __init__(self, dim: int, hidden_dim: int, num_experts: int) -> None:
        super().__init__()
        self.experts = nn.ModuleList(Mlp(dim, hidden_dim) for _ in range(num_experts))

    def __len__(self) -> int:
        return len(self.experts)


def load_balance_loss(router_probs: torch.Tensor, expert_index: torch.Tensor) -> torch.Tensor:
    """Switch-Transformer load balance: ``E * sum_e f_e * P_e``.

    Args:
        router_probs: (T, E) softmax over all experts for each token.
        expert_index: (T, k) experts each token was sent to.

    ``f_e`` is the share of routing slots that went to expert e (not
    differentiable), ``P_e`` the mean router probability of e (carries the
    gradient). It is 1 for perfectly uniform routing and grows as routing
    collapses onto few experts.
    """
    num_experts = router_probs.shape[-1]
    counts = torch.bincount(expert_index.flatten(), minlength=num_experts).to(router_probs.dtype)
    slot_share = counts / counts.sum()
    mean_prob = router_probs.mean(dim=0)
    return num_experts * torch.sum(slot_share * mean_prob)


def gate_entropy(router_probs: torch.Tensor) -> torch.Tensor:
    """Mean per-token entropy of the router distribution, (T, E) -> scalar.

    Minimising it makes each grid commit to few experts (sharp, specialised
    routing); the load balance term keeps that from collapsing onto one.
    """
    return -(router_probs * torch.log(router_probs.clamp_min(1e-9))).sum(dim=-1).mean()


def size_class(count: int) -> int:
    """``count`` rounded up to a multiple of 64, or of 1/8 of its power of two when that is coarser.

    Padding stays under 64 rows or 12.5 %, and only a few dozen sizes occur.
    """
    step = max(64, 1 << max(0, count.bit_length() - 4))
    return -(-count // step) * step


class GridMoE(nn.Module):
    """Sparse top-k mixture of experts with a router per view.

    Args:
        pool: the stage's experts (shared with the stage's other MoE blocks).
        dim: token channels C.
        top_k: experts per token.
        noise_std: std of Gaussian noise on router logits while training,
            so that near-ties explore other experts.
    """

    def __init__(self, pool: ExpertPool, dim: int, top_k: int, noise_std: float) -> None:
        super().__init__()
        self.pool = pool
        self.routers = nn.ModuleDict({view: nn.Linear(dim, len(pool)) for view in VIEWS})
        self.top_k = top_k
        self.noise_std = noise_std
        self.view = "reference"
        self._aux_losses: list[dict[str, torch.Tensor]] = []

    def set_view(self, view: str) -> None:
        if view not in VIEWS:
            raise ValueError(f"view must be one of {VIEWS}, got {view!r}")
        self.view = view

    def pop_aux_losses(self) -> list[dict[str, torch.Tensor]]:
        """Auxiliary losses of the forward calls since the last pop."""
        losses, self._aux_losses = self._aux_losses, []
        return losses

    def route(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Router decision for flat tokens (T, C).

        Returns:
            expert_index: (T, k) chosen experts, best first.
            gates: (T, k) softmax over the chosen experts' logits.
            router_probs: (T, E) softmax over all experts (for the aux losses).
        """
        logits = self.routers[self.view](tokens)
        if self.training and self.noise_std > 0:
            logits = logits + torch.randn_like(logits) * self.noise_std
        top_logits, expert_index = logits.topk(self.top_k, dim=-1)
        gates = F.softmax(top_logits, dim=-1)
        router_probs = F.softmax(logits, dim=-1)
        return expert_index, gates, router_probs

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, N, C) -> (B, N, C)."""
        shape = tokens.shape
        flat = tokens.reshape(-1, shape[-1])
        expert_index, gates, router_probs = self.route(flat)

        output = torch.zeros_like(flat)
        # Sorting the (token, slot) pairs by expert gives each expert one
        # contiguous run of its tokens: one gather, one expert call, one
        # scatter-add per expert that was chosen at all.
        flat_expert = expert_index.flatten()
        order = torch.argsort(flat_expert, stable=True)
        counts = torch.bincount(flat_expert, minlength=len(self.pool)).tolist()
        token_of_slot = order // self.top_k
        gate_of_slot = gates.flatten()[order]
        # Without autograd, each expert's batch is padded to a size class: a
        # stream of ever-different tensor sizes fragments the CPU heap until
        # memory grows with the number of tiles scanned.
        pad = not torch.is_grad_enabled()
        start = 0
        for expert, count in zip(self.pool.experts, counts):
            if count:
                token_ids = token_of_slot[start : start + count]
                rows = F.pad(token_ids, (0, size_class(count) - count)) if pad else token_ids
                expert_out = expert(flat[rows])[:count]
                weighted = expert_out * gate_of_slot[start : start + count, None]
                output.index_add_(0, token_ids, weighted.to(output.dtype))
            start += count

        self._aux_losses.append(
            {"moe_balance": load_balance_loss(router_probs, expert_index), "moe_entropy": gate_entropy(router_probs)}
        )
        return output.reshape(shape)
