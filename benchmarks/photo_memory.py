"""Peak memory of reading one large, highly compressed PNG photo: smgeo's reader against Pillow's usual recipe.

What it measures: a generated RGB PNG (``--megapixels``, flat colour with a
few shapes, so a few hundred kilobytes on disk) read in a fresh process by
``smgeo_cli.images.read_rgb`` and, for comparison, by the recipe smgeo used
before (``np.array(ImageOps.exif_transpose(image).convert("RGB"))``, three
copies of the pixels); the peak resident set size (``ru_maxrss``) of each.

    python benchmarks/photo_memory.py [--megapixels 100]
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw

READERS = {
    "smgeo read_rgb": "from smgeo_cli.images import read_rgb\nrgb = read_rgb(path)",
    "Pillow exif_transpose + convert + np.array": (
        "import numpy as np\nfrom PIL import Image, ImageOps\n"
        "with Image.open(path) as image:\n    rgb = np.array(ImageOps.exif_transpose(image).convert('RGB'))"
    ),
}


def peak_mb(code: str, path: Path) -> float:
    """Peak RSS, MB, of a fresh interpreter that runs ``code`` with ``path`` set; the interpreter's own start-up included."""
    script = (
        f"import json, resource\nfrom PIL import Image\nImage.MAX_IMAGE_PIXELS = None\npath = {str(path)!r}\n{code}\n"
        "print(json.dumps(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))"
    )
    return json.loads(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megapixels", type=float, default=100.0)
    args = parser.parse_args()
    side = int(math.sqrt(args.megapixels * 1e6))
    with tempfile.TemporaryDirectory(prefix="smgeo-photo-memory-") as folder:
        path = Path(folder) / "photo.png"
        image = Image.new("RGB", (side, side), (90, 120, 70))
        draw = ImageDraw.Draw(image)
        for i in range(20):
            draw.rectangle((i * side // 25, i * side // 30, i * side // 25 + side // 10, i * side // 30 + side // 12),
                           fill=(200, 40 + 8 * i, 30))  # fmt: skip
        image.save(path, optimize=False)
        del image, draw
        print(f"{side} x {side} PNG ({side * side / 1e6:.0f} MP, {side * side * 3 / 2**20:.0f} MB of RGB): "
              f"{path.stat().st_size / 1024:.0f} KB on disk")  # fmt: skip
        for name, code in READERS.items():
            print(f"{name:<44} peak RSS {peak_mb(code, path):7.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
