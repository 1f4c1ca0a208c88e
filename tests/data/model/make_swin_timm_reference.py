"""Writes swin_timm_reference.safetensors: a small random Swin, inputs, and timm's stage outputs for them.

Run once, in an environment with timm (1.0.31 made the file): tests/test_swin.py checks that
smgeo's own Swin gives the same outputs from the same weights.
"""

import torch
from safetensors.torch import save_file
from timm.models.swin_transformer import SwinTransformer

torch.manual_seed(0)
swin = SwinTransformer(
    img_size=128, patch_size=4, in_chans=3, num_classes=0, embed_dim=8, depths=(2, 2, 2, 1),
    num_heads=(1, 2, 2, 4), window_size=4, strict_img_size=False,
).eval()
tensors = {f"weights.{k}": v.contiguous() for k, v in swin.state_dict().items()}
for name, (height, width) in {"square": (64, 64), "padded": (40, 72)}.items():
    image = torch.randn(2, 3, height, width)
    tensors[f"{name}.input"] = image
    with torch.no_grad():
        tokens = swin.patch_embed(image)
        for index, stage in enumerate(swin.layers):
            tokens = stage(tokens)
            tensors[f"{name}.stage{index}"] = tokens.permute(0, 3, 1, 2).contiguous()
save_file(tensors, "swin_timm_reference.safetensors", metadata={"timm": "1.0.31"})
