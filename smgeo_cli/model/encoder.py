"""Cross-view encoder: one Swin Transformer serving drone and reference views.

Each view has its own patch embedding (the query's takes RGB plus the click
map, 4 channels; the reference's RGB); every stage after it is shared, with the
MLP of chosen blocks replaced by a :class:`~smgeo_cli.model.gmoe.GridMoE` whose
router depends on the view. One set of weights takes the 256 query and the 1024
reference alike (see :mod:`smgeo_cli.model.swin`).
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch
from torch import nn

from smgeo_cli.errors import WeightsError
from smgeo_cli.model.config import SMGeoConfig
from smgeo_cli.model.gmoe import ExpertPool, GridMoE
from smgeo_cli.model.swin import PatchEmbed, Swin, adapt_state_dict

QUERY_CHANNELS = 4  # RGB + click map
REFERENCE_CHANNELS = 3


def build_swin(config: SMGeoConfig, in_chans: int) -> Swin:
    """A headless Swin sized by ``config``; its patch embedding takes ``in_chans``."""
    return Swin(
        img_size=config.ref_size,
        patch_size=config.patch_size,
        in_chans=in_chans,
        embed_dim=config.embed_dim,
        depths=config.depths,
        num_heads=config.num_heads,
        window_size=config.window_size,
        mlp_ratio=config.mlp_ratio,
        drop_path_rate=config.drop_path_rate,
    )


def insert_moe(swin: Swin, config: SMGeoConfig) -> None:
    """Replace the MLP of the configured blocks by GMoE layers, one expert pool per stage."""
    for stage_index, block_indexes in config.moe_blocks.items():
        stage = swin.layers[stage_index]
        dim = stage.blocks[0].norm2.normalized_shape[0]
        pool = ExpertPool(dim, int(dim * config.mlp_ratio), config.num_experts)
        for block_index in block_indexes:
            stage.blocks[block_index].mlp = GridMoE(pool, dim, config.top_k, config.router_noise_std)


class CrossViewEncoder(nn.Module):
    """Multi-stage features of either view.

    ``forward(image, view)`` maps (B, C_view, H, W) to a list with one
    (B, C_s, H / stride_s, W / stride_s) map per stage, strides 4, 8, 16, 32
    for the usual patch size 4.
    """

    def __init__(self, config: SMGeoConfig) -> None:
        super().__init__()
        self.config = config
        self.reference_backbone = build_swin(config, REFERENCE_CHANNELS)
        if config.shared_backbone:
            # Only the patch embedding is the query's own; it gets the 4th channel.
            self.query_patch_embed = PatchEmbed(config.patch_size, QUERY_CHANNELS, config.embed_dim)
            self.query_backbone = None
        else:
            self.query_backbone = build_swin(config, QUERY_CHANNELS)
        if config.use_moe:
            for swin in self.backbones():
                insert_moe(swin, config)
        self.stage_channels = [config.embed_dim * 2**i for i in range(config.num_stages)]

    def backbones(self) -> list[Swin]:
        return [b for b in (self.reference_backbone, self.query_backbone) if b is not None]

    def moe_layers(self) -> Iterator[GridMoE]:
        return (m for m in self.modules() if isinstance(m, GridMoE))

    @contextmanager
    def _routing(self, view: str) -> Iterator[None]:
        for layer in self.moe_layers():
            layer.set_view(view)
        yield

    def forward(self, image: torch.Tensor, view: str) -> list[torch.Tensor]:
        if view == "query":
            swin = self.query_backbone or self.reference_backbone
            embed = self.query_patch_embed if self.query_backbone is None else swin.patch_embed
        else:
            swin = self.reference_backbone
            embed = swin.patch_embed
        with self._routing(view):
            return swin.forward_stages(embed(image))

    def load_backbone_state(self, state_dict: dict[str, torch.Tensor], source: str) -> None:
        """Start the backbone(s) from an image classifier's Swin (timm's or Microsoft's layout, e.g. ImageNet).

        :func:`~smgeo_cli.model.swin.adapt_state_dict` resizes the position
        tables to this config's windows and drops the classifier. The 3-channel
        patch embedding seeds both views: the query's click channel starts at
        zero, so the pretrained filters see RGB exactly as before.
        """
        for swin in self.backbones():
            adapted = adapt_state_dict(state_dict, swin)
            if "patch_embed.proj.weight" not in adapted:
                raise WeightsError(f"{source}: not a Swin state dict (no patch_embed.proj.weight)")
            if swin.patch_embed.proj.in_channels == QUERY_CHANNELS:
                adapted["patch_embed.proj.weight"] = _with_click_channel(adapted["patch_embed.proj.weight"])
            try:
                _seed_experts_from_mlp(swin, adapted)
                missing, unexpected = swin.load_state_dict(adapted, strict=False)
            except RuntimeError as exc:  # tensor shapes differ
                problem = str(exc).strip().splitlines()[-1].strip()
                raise WeightsError(f"{source}: backbone weights do not fit this config ({problem})") from None
            # Routers are new and experts were seeded above; nothing else may be absent.
            missing = [k for k in missing if ".routers." not in k and ".pool." not in k]
            if missing or unexpected:
                raise WeightsError(
                    f"{source}: backbone weights do not fit this config "
                    f"(missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]}); "
                    "use weights of a Swin with the same embed_dim and depths"
                )
        if self.query_backbone is None:
            query_state = {
                "proj.weight": _with_click_channel(state_dict["patch_embed.proj.weight"]),
                "proj.bias": state_dict["patch_embed.proj.bias"],
                "norm.weight": state_dict["patch_embed.norm.weight"],
                "norm.bias": state_dict["patch_embed.norm.bias"],
            }
            self.query_patch_embed.load_state_dict(query_state)


def _with_click_channel(rgb_kernel: torch.Tensor) -> torch.Tensor:
    """(D, 3, p, p) -> (D, 4, p, p) with a zero kernel for the click map."""
    return torch.cat([rgb_kernel, torch.zeros_like(rgb_kernel[:, :1])], dim=1)


def _seed_experts_from_mlp(swin: Swin, state_dict: dict[str, torch.Tensor]) -> None:
    """Start every expert of a GMoE block from the block's pretrained MLP.

    Pops the ``<block>.mlp.fc*`` entries from ``state_dict``, since the model
    has experts there. Where several blocks share a pool, the last block's MLP
    seeds it; routing soon makes the experts differ anyway.
    """
    moe_layers = {name: m for name, m in swin.named_modules() if isinstance(m, GridMoE)}
    for key in [k for k in state_dict if k.rsplit(".", 2)[0] in moe_layers]:
        layer_name, fc, param = key.rsplit(".", 2)
        tensor = state_dict.pop(key)
        for expert in moe_layers[layer_name].pool.experts:
            getattr(getattr(expert, fc), param).data.copy_(tensor)


def read_backbone_weights(path: Path) -> dict[str, torch.Tensor]:
    """A Swin state dict from a ``.safetensors`` file (or a ``.pth`` of plain tensors)."""
    path = Path(path)
    if not path.exists():
        raise WeightsError(f"{path}: backbone weights file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
            state = state.get("model", state.get("state_dict", state))
    except Exception as exc:  # noqa: BLE001 - any decode failure is the same user error
        raise WeightsError(f"{path}: cannot read backbone weights ({exc})") from None
    return state
