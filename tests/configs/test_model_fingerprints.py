"""reid's own configs build and train the same network as before the fastreid-convention keys.

The fingerprints in ``data/model_fingerprints.json`` were recorded from main before issue 12 made
fastreid's conventions the schema defaults (stem max-pool, non-local inner channels, Linear
classifier init, label smoothing, triplet anchor, MGN stripes) and set reid's choices in reid's
Base files. For every config under configs/ (Base files, row configs; not the dataset layers): the
parameter count, a hash of the state dict's key names and shapes, a seeded eval forward (the test
feature of 2 images) and a seeded training forward (every loss value on a P=2 x K batch).

Re-record (only when a change is MEANT to change a network): ``python
tests/configs/test_model_fingerprints.py --write``. Re-recorded since: the survey's CE + ArcFace and
CE + circle rows (issue 15: the survey's plain CE and ArcFace as written); added: issue 15's rows.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "model_fingerprints.json")
if ROOT not in sys.path:  # run as a script
    sys.path.insert(0, ROOT)

from reid.config import load_config  # noqa: E402
from reid.engine.defaults import with_num_classes  # noqa: E402
from reid.modeling import build_model  # noqa: E402

NUM_CLASSES = 6
# Height 64 gives MGN's part branches 4 rows (3 stripes of 2, 1, 1 rows balanced, 1, 1, 2 chunked).
IMAGE_SIZE = (64, 32)
# Loose enough for a different summation order, far below any change of initialisation or
# convention (those move the values by more than 1e-3).
RTOL, ATOL = 1e-4, 1e-5


def config_files() -> list[str]:
    """Every config of configs/ but the dataset layers of the papers, relative to the repo."""
    paths = glob.glob(os.path.join(ROOT, "configs", "**", "*.yml"), recursive=True)
    layers = os.path.join("configs", "papers", "datasets")
    rel = sorted(os.path.relpath(p, ROOT) for p in paths)
    return [p for p in rel if not p.startswith(layers)]


def _stats(t: torch.Tensor) -> list[float]:
    t = t.detach().double().flatten()
    return [float(t.sum()), float(t.abs().sum()), float(t.norm()), *map(float, t[:4])]


def fingerprint(rel_path: str) -> dict:
    """The fingerprint of one config's model (see the module doc)."""
    opts = ["MODEL.BACKBONE.PRETRAIN", "False", "MODEL.DEVICE", "cpu"]
    cfg = with_num_classes(load_config(os.path.join(ROOT, rel_path), opts), NUM_CLASSES)
    torch.manual_seed(0)
    model = build_model(cfg)
    state = model.state_dict()
    shapes = "\n".join(f"{k}:{tuple(v.shape)}" for k, v in state.items())
    k = max(2, int(cfg.DATALOADER.NUM_INSTANCE))
    generator = torch.Generator().manual_seed(1)
    images = torch.rand(2 * k, 3, *IMAGE_SIZE, generator=generator) * 255
    targets = torch.arange(2).repeat_interleave(k)
    model.eval()
    with torch.no_grad():
        feats = model({"images": images[:2]})
    model.train()
    torch.manual_seed(2)
    outputs = model({"images": images, "targets": targets})
    losses = model.losses(outputs, targets)
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "state_keys": len(state),
        "shapes_sha256": hashlib.sha256(shapes.encode()).hexdigest(),
        "test_feature": _stats(feats),
        "losses": {name: float(v) for name, v in sorted(losses.items())},
    }


# Configs whose network changed on purpose after the record: the AdaSP rows follow the AdaSP
# repository, i.e. fastreid's conventions (stem max-pool, non-local blocks, MGN stripes, classifier
# init) where reid's differ; tests/configs/test_adasp_configs.py checks them.
CHANGED_ON_PURPOSE = os.path.join("configs", "papers", "adasp", "")


def _compared() -> list[str]:
    return [p for p in config_files() if not p.startswith(CHANGED_ON_PURPOSE)]


def _recorded() -> dict:
    with open(DATA, encoding="utf-8") as f:
        return json.load(f)


# A few representative configs in the fast tier (one per Base file family); all in the slow tier.
FAST = (
    "configs/Base-bagtricks.yml",
    "configs/Synthetic/quickstart.yml",
    "configs/papers/unified/tri_euclidean_all.yml",
)


def test_every_config_has_a_fingerprint():
    assert [p for p in sorted(_recorded()) if not p.startswith(CHANGED_ON_PURPOSE)] == _compared()


@pytest.mark.parametrize(
    "rel_path",
    [p if p in FAST else pytest.param(p, marks=pytest.mark.slow) for p in _compared()],
)
def test_config_builds_and_trains_the_recorded_network(rel_path):
    expected = _recorded()[rel_path]
    got = fingerprint(rel_path)
    assert got["params"] == expected["params"]
    assert (got["state_keys"], got["shapes_sha256"]) == (
        expected["state_keys"],
        expected["shapes_sha256"],
    )
    assert got["test_feature"] == pytest.approx(expected["test_feature"], rel=RTOL, abs=ATOL)
    assert sorted(got["losses"]) == sorted(expected["losses"])
    for name, value in expected["losses"].items():
        assert got["losses"][name] == pytest.approx(value, rel=RTOL, abs=ATOL), name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="record the fingerprints")
    args = parser.parse_args()
    torch.set_num_threads(1)
    records = {}
    for rel_path in config_files():
        records[rel_path] = fingerprint(rel_path)
        print(rel_path, records[rel_path]["params"], flush=True)
    if args.write:
        with open(DATA, "w", encoding="utf-8") as f:
            json.dump(records, f, indent=1, sort_keys=True)
            f.write("\n")


if __name__ == "__main__":
    main()
