"""Swin Transformer backbone: headless, channels-last, any input size its strides divide.

Liu et al. 2021, "Swin Transformer: Hierarchical Vision Transformer using Shifted
Windows". Parameter names follow timm's ``SwinTransformer`` (the layout where every
stage after the first starts with its patch merging), so ImageNet Swins saved from
timm and SMGeo weights written by earlier releases load as they are.

Window and shift sizes are fixed when the backbone is built, from the grid each
stage has at ``img_size``: a stage whose grid is no larger than the window attends
over its whole grid, unshifted. Inputs of other sizes are padded up to whole
windows, and the shifted-window mask is built for each call's grid, so one set of
weights serves the small query and the large reference.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

# Attention logit added between tokens that a cyclic shift made neighbours but that
# are not neighbours on the ground; softmax turns it into (almost) zero weight.
MASKED_LOGIT = -100.0


# --- helpers ------------------------------------------------------------------------


def window_partition(tokens: torch.Tensor, window: int) -> torch.Tensor:
    """(B, H, W, C) -> (B * nW, window * window, C); H and W are multiples of ``window``.

    Windows come batch-major, then row-major over the grid of windows.
    """
    batch, height, width, channels = tokens.shape
    grid = tokens.view(batch, height // window, window, width // window, window, channels)
    return grid.permute(0, 1, 3, 2, 4, 5).reshape(-1, window * window, channels)


def window_merge(windows: torch.Tensor, window: int, height: int, width: int) -> torch.Tensor:
    """(B * nW, window * window, C) -> (B, H, W, C); the inverse of :func:`window_partition`."""
    channels = windows.shape[-1]
    grid = windows.view(-1, height // window, width // window, window, window, channels)
    return grid.permute(0, 1, 3, 2, 4, 5).reshape(-1, height, width, channels)


def relative_position_index(window: int) -> torch.Tensor:
    """(N, N) index into the (2 * window - 1)^2 bias table for each pair of a window's N tokens."""
    rows, cols = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    coords = torch.stack([rows.flatten(), cols.flatten()])  # (2, N)
    offsets = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)  # (N, N, 2), from 0
    return offsets[..., 0] * (2 * window - 1) + offsets[..., 1]


def shifted_window_mask(
    height: int, width: int, window: int, shift: int, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """(nW, N, N) additive attention mask for a grid that was rolled by ``-shift``.

    ``height`` and ``width`` are the grid after padding to whole windows. Tokens in
    different bands (the last ``shift`` rows or columns wrapped around from the
    other side, the band before them, the rest) must not attend to each other.
    """
    region = torch.zeros(1, height, width, 1, device=device, dtype=dtype)
    bands = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    label = 0
    for rows in bands:
        for cols in bands:
            region[:, rows, cols, :] = label
            label += 1
    region_windows = window_partition(region, window).squeeze(-1)  # (nW, N)
    different = region_windows.unsqueeze(1) != region_windows.unsqueeze(2)
    return torch.zeros_like(different, dtype=dtype).masked_fill(different, MASKED_LOGIT)


def stage_window(grid_side: int, window: int, shifted: bool) -> tuple[int, int]:
    """(window, shift) of a block whose stage has ``grid_side`` tokens a side at the build size."""
    if grid_side <= window:
        return grid_side, 0
    return window, window // 2 if shifted else 0


def drop_path(tokens: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Stochastic depth: zero a residual branch for a random ``rate`` of the samples, rescale the rest."""
    if rate == 0.0 or not training:
        return tokens
    keep = 1.0 - rate
    mask = tokens.new_empty((tokens.shape[0],) + (1,) * (tokens.ndim - 1)).bernoulli_(keep)
    return tokens * mask / keep


# --- blocks, small to large -----------------------------------------------------------


class PatchEmbed(nn.Module):
    """(B, C_in, H, W) -> (B, H / p, W / p, D): non-overlapping p x p patches, projected and normalised."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        height, width = image.shape[-2:]
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(f"input {height} x {width} is not a multiple of the patch size {self.patch_size}")
        return self.norm(self.proj(image).permute(0, 2, 3, 1))


class Mlp(nn.Module):
    """(..., C) -> (..., C): Linear(C, hidden) - GELU - Linear(hidden, C)."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(tokens)))


class WindowAttention(nn.Module):
    """Multi-head self-attention inside each window, with a learnt relative position bias."""

    def __init__(self, dim: int, num_heads: int, window: int) -> None:
        super().__init__()
        self.window = window
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(window), persistent=False)
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def position_bias(self) -> torch.Tensor:
        """(1, heads, N, N) bias of each token pair by their offset in the window."""
        n = self.relative_position_index.shape[0]
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(n, n, -1)
        return bias.permute(2, 0, 1).unsqueeze(0)

    def forward(self, windows: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B * nW, N, C) -> (B * nW, N, C); ``mask`` is (nW, N, N) or None."""
        count, n, channels = windows.shape
        q, k, v = self.qkv(windows).reshape(count, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        logits = (q * self.scale) @ k.transpose(-2, -1) + self.position_bias()  # (B * nW, heads, N, N)
        if mask is not None:
            num_windows = mask.shape[0]
            logits = logits.view(-1, num_windows, self.num_heads, n, n) + mask[None, :, None]
            logits = logits.view(-1, self.num_heads, n, n)
        attended = logits.softmax(dim=-1) @ v  # (B * nW, heads, N, C / heads)
        return self.proj(attended.transpose(1, 2).reshape(count, n, channels))


class SwinBlock(nn.Module):
    """(B, H, W, C) -> (B, H, W, C): (shifted-)window attention, then the MLP, each residual."""

    def __init__(
        self, dim: int, num_heads: int, window: int, shift: int, mlp_ratio: float, drop_path_rate: float
    ) -> None:
        super().__init__()
        self.window = window
        self.shift = shift
        self.drop_path_rate = drop_path_rate
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, num_heads, window)
        self.norm2 = nn.LayerNorm(dim)
        # Replaced by a GridMoE in the blocks a config names (see encoder.insert_moe).
        self.mlp: nn.Module = Mlp(dim, int(dim * mlp_ratio))

    def window_attention(self, tokens: torch.Tensor) -> torch.Tensor:
        height, width = tokens.shape[1:3]
        # Roll first, then pad: the padding stays at the far edges, outside the wrapped bands.
        if self.shift:
            tokens = torch.roll(tokens, shifts=(-self.shift, -self.shift), dims=(1, 2))
        pad_h = -height % self.window
        pad_w = -width % self.window
        tokens = F.pad(tokens, (0, 0, 0, pad_w, 0, pad_h))
        padded_h, padded_w = tokens.shape[1:3]
        mask = None
        if self.shift:
            mask = shifted_window_mask(padded_h, padded_w, self.window, self.shift, tokens.device, tokens.dtype)
        windows = self.attn(window_partition(tokens, self.window), mask)
        tokens = window_merge(windows, self.window, padded_h, padded_w)[:, :height, :width, :]
        if self.shift:
            tokens = torch.roll(tokens, shifts=(self.shift, self.shift), dims=(1, 2))
        return tokens

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        batch, height, width, channels = tokens.shape
        tokens = tokens + drop_path(self.window_attention(self.norm1(tokens)), self.drop_path_rate, self.training)
        flat = tokens.reshape(batch, -1, channels)
        flat = flat + drop_path(self.mlp(self.norm2(flat)), self.drop_path_rate, self.training)
        return flat.reshape(batch, height, width, channels)


class PatchMerging(nn.Module):
    """(B, H, W, C) -> (B, ceil(H / 2), ceil(W / 2), 2C): each 2 x 2 neighbourhood becomes one token."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        batch, height, width, channels = tokens.shape
        tokens = F.pad(tokens, (0, 0, 0, width % 2, 0, height % 2))
        height, width = tokens.shape[1:3]
        # Channel order (column offset, row offset, C): the order timm's weights were learnt in.
        neighbourhoods = tokens.reshape(batch, height // 2, 2, width // 2, 2, channels).permute(0, 1, 3, 4, 2, 5)
        return self.reduction(self.norm(neighbourhoods.flatten(3)))


class SwinStage(nn.Module):
    """Patch merging (all stages but the first), then ``depth`` blocks alternating plain and shifted windows."""

    def __init__(
        self,
        dim: int,
        grid_side: int,
        depth: int,
        downsample: bool,
        num_heads: int,
        window: int,
        mlp_ratio: float,
        drop_path_rates: list[float],
    ) -> None:
        super().__init__()
        self.downsample = PatchMerging(dim // 2) if downsample else nn.Identity()
        blocks = []
        for index in range(depth):
            block_window, shift = stage_window(grid_side, window, shifted=index % 2 == 1)
            blocks.append(SwinBlock(dim, num_heads, block_window, shift, mlp_ratio, drop_path_rates[index]))
        self.blocks = nn.Sequential(*blocks)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(tokens))


# --- the backbone ----------------------------------------------------------------------


class Swin(nn.Module):
    """Headless Swin: ``patch_embed`` and ``layers``, one :class:`SwinStage` per entry of ``depths``.

    Stage ``s`` has ``embed_dim * 2**s`` channels at stride ``patch_size * 2**s``.
    ``img_size`` only sets the windows (see the module docstring); any input whose
    sides are multiples of ``patch_size`` runs.
    """

    def __init__(
        self,
        img_size: int,
        patch_size: int,
        in_chans: int,
        embed_dim: int,
        depths: Sequence[int],
        num_heads: Sequence[int],
        window_size: int,
        mlp_ratio: float,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        # Stochastic depth grows linearly over all blocks, from 0 to drop_path_rate.
        rates = torch.linspace(0, drop_path_rate, sum(depths)).split(list(depths))
        grid_side = img_size // patch_size
        stages = []
        for index, depth in enumerate(depths):
            if index > 0:
                grid_side = (grid_side + 1) // 2
            stages.append(
                SwinStage(
                    embed_dim * 2**index, grid_side, depth, index > 0, num_heads[index], window_size, mlp_ratio,
                    rates[index].tolist(),
                )
            )
        self.layers = nn.Sequential(*stages)
        self.apply(_init_weights)

    def forward_stages(self, tokens: torch.Tensor) -> list[torch.Tensor]:
        """Channels-last patch tokens (B, H / p, W / p, D) -> one (B, C_s, H_s, W_s) map per stage."""
        features = []
        for stage in self.layers:
            tokens = stage(tokens)
            features.append(tokens.permute(0, 3, 1, 2))
        return features


def _init_weights(module: nn.Module) -> None:
    # Truncated normal (std 0.02) for the linear layers and the position tables, as Swin was trained from.
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, WindowAttention):
        nn.init.trunc_normal_(module.relative_position_bias_table, std=0.02)


def resize_position_bias_table(table: torch.Tensor, window: int) -> torch.Tensor:
    """((2w' - 1)^2, heads) table learnt for another square window w' -> ((2 * window - 1)^2, heads), bicubic."""
    old_side = int(round(table.shape[0] ** 0.5))
    new_side = 2 * window - 1
    if old_side == new_side:
        return table
    grid = table.T.reshape(1, -1, old_side, old_side).float()
    resized = F.interpolate(grid, size=(new_side, new_side), mode="bicubic", align_corners=False)
    return resized.reshape(-1, new_side * new_side).T.to(table.dtype).contiguous()


def adapt_state_dict(state_dict: dict[str, torch.Tensor], swin: Swin) -> dict[str, torch.Tensor]:
    """An image classifier's Swin weights, renamed and resized to load into ``swin``.

    Takes timm's layout and Microsoft's original one (where each stage *ends* with the
    patch merging that timm puts at the start of the next). Drops the classifier, the
    final norm and the buffers; resizes each relative position table to the window of
    the block it lands in.
    """
    original_layout = "layers.0.downsample.reduction.weight" in state_dict
    adapted = {}
    for key, tensor in state_dict.items():
        if key.startswith(("head", "norm.")) or key.endswith(("relative_position_index", "attn_mask")):
            continue
        if original_layout:
            key = re.sub(r"layers\.(\d+)\.downsample", lambda m: f"layers.{int(m.group(1)) + 1}.downsample", key)
        if key.endswith("relative_position_bias_table"):
            try:
                attention = swin.get_submodule(key.rsplit(".", 1)[0])
            except AttributeError:  # a block this config lacks: load_state_dict names it
                pass
            else:
                tensor = resize_position_bias_table(tensor, attention.window)
        adapted[key] = tensor
    return adapted
