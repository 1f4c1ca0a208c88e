"""Copy a trained run's weights into the bundled model folder, in fp16.

    python scripts/bundled/export.py RUN_WEIGHTS_DIR models/smgeo-nano-bundled

The folder gets config.json (named after the folder) and model.safetensors;
its MODEL_CARD.md is written by hand from the run's figures.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from smgeo_cli.model.weights import load_model, save_weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", type=Path, help="a weights folder from smgeo train, e.g. runs/x/last")
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    model = load_model(args.weights)
    model.config = model.config.replace(name=args.out.name)
    save_weights(model, args.out, half=True, metadata={"made_by": "scripts/bundled/train.sh, then finetune.sh"})
    size_mb = (args.out / "model.safetensors").stat().st_size / 1e6
    print(f"{args.out}: {model.config.name}, {size_mb:.1f} MB fp16")


if __name__ == "__main__":
    main()
