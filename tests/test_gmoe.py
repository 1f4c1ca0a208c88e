"""Grid-level MoE: real sparse dispatch, per-view routers, differentiable aux losses."""

from __future__ import annotations

import pytest
import torch

from smgeo_cli.model.gmoe import ExpertPool, GridMoE


def make_moe(num_experts: int = 6, top_k: int = 2, dim: int = 16) -> GridMoE:
    torch.manual_seed(0)
    return GridMoE(ExpertPool(dim, 4 * dim, num_experts), dim, top_k, noise_std=0.1).eval()


def dense_reference(moe: GridMoE, tokens: torch.Tensor) -> torch.Tensor:
    """Every expert on every token, then the top-k mix: what sparse dispatch must equal."""
    flat = tokens.reshape(-1, tokens.shape[-1])
    logits = moe.routers[moe.view](flat)
    top_logits, top_index = logits.topk(moe.top_k, dim=-1)
    gates = torch.softmax(top_logits, dim=-1)
    all_outputs = torch.stack([expert(flat) for expert in moe.pool.experts], dim=1)  # (T, E, C)
    chosen = all_outputs.gather(1, top_index[..., None].expand(-1, -1, flat.shape[-1]))  # (T, k, C)
    return (chosen * gates[..., None]).sum(dim=1).reshape(tokens.shape)


@pytest.mark.parametrize("grad", [True, False], ids=["training-path", "inference-path"])
def test_each_token_is_the_gated_sum_of_exactly_its_top_k_experts(grad):
    moe = make_moe()
    tokens = torch.randn(3, 50, 16)
    for view in ("query", "reference"):
        moe.set_view(view)
        with torch.set_grad_enabled(grad):
            sparse = moe(tokens)
        with torch.no_grad():
            torch.testing.assert_close(sparse, dense_reference(moe, tokens), rtol=1e-5, atol=1e-6)


def test_size_classes_bound_padding_and_keep_distinct_sizes_few():
    from smgeo_cli.model.gmoe import size_class

    sizes = range(1, 20000)
    assert all(0 <= size_class(n) - n < max(64, n / 8) for n in sizes)
    assert len({size_class(n) for n in sizes}) < 80


def test_experts_no_token_chose_receive_no_compute_and_no_gradient():
    moe = make_moe(num_experts=6, top_k=2).train()
    moe.noise_std = 0.0
    with torch.no_grad():  # the router can only ever pick experts 1 and 4
        moe.routers["reference"].weight.zero_()
        moe.routers["reference"].bias.copy_(torch.tensor([-9.0, 5.0, -9.0, -9.0, 4.0, -9.0]))
    rows_seen = {}
    for index, expert in enumerate(moe.pool.experts):
        expert.register_forward_hook(lambda m, inp, out, i=index: rows_seen.__setitem__(i, rows_seen.get(i, 0) + inp[0].shape[0]))
    tokens = torch.randn(2, 30, 16, requires_grad=True)
    moe(tokens).sum().backward()
    assert rows_seen == {1: 60, 4: 60}  # each chosen expert saw each token once, no one else ran
    for index, expert in enumerate(moe.pool.experts):
        has_grad = expert.fc1.weight.grad is not None
        assert has_grad == (index in (1, 4))


def test_router_depends_on_the_view():
    moe = make_moe()
    tokens = torch.randn(1, 40, 16)
    moe.set_view("query")
    query_out = moe(tokens)
    moe.set_view("reference")
    assert not torch.allclose(query_out, moe(tokens))


def test_aux_losses_carry_gradients_to_the_router():
    moe = make_moe().train()
    moe(torch.randn(2, 64, 16))
    (aux,) = moe.pop_aux_losses()
    assert moe.pop_aux_losses() == []
    for name in ("moe_balance", "moe_entropy"):
        moe.routers["reference"].weight.grad = None
        aux[name].backward(retain_graph=True)
        grad = moe.routers["reference"].weight.grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_load_balance_is_one_for_uniform_routing_and_grows_when_routing_collapses():
    from smgeo_cli.model.gmoe import load_balance_loss

    uniform_probs = torch.full((60, 6), 1 / 6)
    spread = torch.arange(60).remainder(6).view(60, 1)
    assert torch.isclose(load_balance_loss(uniform_probs, spread), torch.tensor(1.0))
    collapsed_probs = torch.zeros(60, 6)
    collapsed_probs[:, 0] = 1.0
    assert load_balance_loss(collapsed_probs, torch.zeros(60, 1, dtype=torch.long)) > 5.9
