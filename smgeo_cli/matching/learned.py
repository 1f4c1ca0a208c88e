"""XFeat keypoints and LighterGlue matches: the learned counterpart of SIFT and the ratio test.

Images are numpy arrays, (H, W, 3) uint8 RGB or (H, W) uint8 grey, as in
``features``; keypoints come back in pixels of the image as given (pixel
edges), so the homography code does not know which features it fits.

XFeat averages the colour channels and normalises the image's contrast
itself, so the image goes in as it is, without SIFT's CLAHE. Its network
downsamples by 32, so the working copy is shrunk (``max_side`` or ``zoom``) and
then cut to multiples of 32 pixels; keypoints are integer pixels of that copy.
Unlike SIFT these features are not rotation invariant: ``views`` turns the
photo to the headings tried.
"""

from __future__ import annotations

import numpy as np
import torch

from . import networks
from .features import Features, check_image, detection_mask, resize_to, working_size

KIND = "xfeat"
# Keypoints kept per image, strongest first. LighterGlue's attention grows with
# the square of the count; 2048 covers a 1024 px tile (one per 500 px^2).
MAX_KEYPOINTS = 2048
# Side multiple of the network's input (five stride-2 stages).
NETWORK_MULTIPLE = 32


def network_size(size: tuple[int, int]) -> tuple[int, int]:
    """(width, height) rounded down to multiples of ``NETWORK_MULTIPLE``, at least one multiple."""
    return tuple(max(NETWORK_MULTIPLE, side // NETWORK_MULTIPLE * NETWORK_MULTIPLE) for side in size)


def _image_tensor(image: np.ndarray, device: torch.device) -> torch.Tensor:
    """(1, C, H, W) float32 in [0, 1] from (H, W, 3) or (H, W) uint8."""
    pixels = image if image.ndim == 3 else image[..., None]
    return torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1)[None].to(device, torch.float32) / 255.0


@torch.inference_mode()
def describe_xfeat(
    image: np.ndarray,
    *,
    valid: np.ndarray | None = None,
    max_side: int | None = None,
    max_keypoints: int = MAX_KEYPOINTS,
    device: torch.device | str = "cpu",
) -> Features:
    """XFeat keypoints and descriptors of ``image``.

    Args:
        image: (H, W, 3) uint8 RGB or (H, W) uint8 grey.
        valid: optional (H, W) bool, False on no-data; no keypoint is kept
            near it (``features.VALID_MARGIN_PX`` working pixels).
        max_side: longest side of the working copy (None: full size), before
            it is cut to multiples of 32.
        max_keypoints: most keypoints kept, the strongest.
        device: where the network runs.

    Returns:
        Features of kind ``"xfeat"``: (N, 2) keypoints in input pixels and
        (N, 64) float32 unit descriptors.
    """
    check_image(image, "image")
    height, width = image.shape[:2]
    if valid is not None and valid.shape != (height, width):
        raise ValueError(f"valid mask shape {valid.shape} does not match image shape {(height, width)}")
    device = torch.device(device)
    size = network_size(working_size((width, height), max_side))
    scale = (size[0] / width, size[1] / height)
    found = networks.xfeat(device).detectAndCompute(_image_tensor(resize_to(image, size), device), top_k=max_keypoints)
    pixels = found[0]["keypoints"].long().cpu().numpy()  # integer (x, y) of the working copy
    descriptors = found[0]["descriptors"].float().cpu().numpy()
    if valid is not None:
        keep = detection_mask(valid, size)[pixels[:, 1], pixels[:, 0]] > 0
        pixels, descriptors = pixels[keep], descriptors[keep]
    keypoints = (pixels + 0.5) / scale
    return Features(keypoints=keypoints, descriptors=descriptors, image_size=(width, height), work_scale=scale, kind=KIND)


def _glue_input(features: Features, device: torch.device) -> dict[str, torch.Tensor]:
    """LighterGlue's view of one image: keypoints in working pixels (centres at integers), its working size."""
    work_size = features.work_size
    points = features.keypoints * features.work_scale - 0.5
    return {
        "keypoints": torch.from_numpy(points).to(device, torch.float32)[None],
        "descriptors": torch.from_numpy(features.descriptors).to(device)[None],
        "image_size": torch.tensor([work_size], dtype=torch.float32, device=device),
    }


@torch.inference_mode()
def glue_matches(query: Features, reference: Features, device: torch.device | str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """LighterGlue's matches: (M, 2) query points and their (M, 2) reference points, input pixels of each."""
    if len(query) < 2 or len(reference) < 2:
        return np.empty((0, 2)), np.empty((0, 2))
    device = torch.device(device)
    result = networks.lighterglue(device)({"image0": _glue_input(query, device), "image1": _glue_input(reference, device)})
    pairs = result["matches"][0].cpu().numpy()
    return query.keypoints[pairs[:, 0]], reference.keypoints[pairs[:, 1]]
