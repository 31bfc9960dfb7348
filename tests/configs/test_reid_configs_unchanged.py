"""Every reid config trains exactly what it trained before issue 12 changed the schema's defaults.

Issue 12 gave every key with a fastreid name fastreid's default and meaning, and moved reid's own
preferences into reid's Base-*.yml files. This test holds each config under configs/ (every file but
the dataset layers of configs/papers/datasets, which only name data) to the facts recorded from the
main branch before that change (``reid_configs_before_issue12.json``, written by running this file
as a script on that branch):

- the resolved value of every key that existed then;
- the iterations per epoch on three fixed training sets (the engine's loader length) and the planned
  LR at the start and the middle of every epoch and at the last iteration (the whole training plan);
- the optimizer's parameter groups (LR and weight decay per kind of parameter);
- the arguments the backbone, the head, its pooling and classifier, the MGN branches and every loss
  are built with, the sampler class and the resolved device.

    python tests/configs/test_reid_configs_unchanged.py --record tests/configs/<file>.json
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
from collections import namedtuple
from typing import Any

import pytest
import torch
import yaml
from torch import nn
from yacs.config import CfgNode

from reid.config import load_config
from reid.data.build import build_train_loader
from reid.data.samplers import build_train_sampler
from reid.modeling.backbones.build import BACKBONE_REGISTRY
from reid.modeling.heads.build import HEAD_REGISTRY
from reid.modeling.layers import build_classifier, build_pooling
from reid.modeling.losses import LOSS_REGISTRY
from reid.modeling.meta_arch.build import resolve_device
from reid.solver import build_optimizer
from reid.solver.stages import StagedSchedule, build_training_plan

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REFERENCE = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "reid_configs_before_issue12.json"
)
LAYERS = os.path.join("configs", "papers", "datasets")

# Training sets of fixed size: identity -> number of images. "market" has Market-1501's 751
# identities and 12,936 images; "small" 150 x 10; "sparse" 1,000 identities of 3 images each, fewer
# than K, so that an identity pass is longer than an image pass.
TRAIN_SETS = {
    "market": [18] * 169 + [17] * 582,
    "small": [10] * 150,
    "sparse": [3] * 1000,
}
Record = namedtuple("Record", "pid camid")


def config_files() -> list[str]:
    """Every config under configs/ but the dataset layers, relative to the repository root."""
    paths = glob.glob(os.path.join(ROOT, "configs", "**", "*.yml"), recursive=True)
    rel = sorted(os.path.relpath(p, ROOT) for p in paths)
    return [p for p in rel if not p.startswith(LAYERS + os.sep)]


def _plain(value: Any) -> Any:
    """A config or argument value as JSON data (tuples as lists); None if it is not data."""
    if isinstance(value, CfgNode) or isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return None


def _flat(node: CfgNode, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in node.items():
        if isinstance(value, CfgNode):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = _plain(value)
    return out


def _data_args(args: dict[str, Any]) -> dict[str, Any]:
    return {k: _plain(v) for k, v in sorted(args.items()) if _plain(v) is not None}


def _rle(values: list[float]) -> list[list[float]]:
    """[[index, value]] where the value changes."""
    out: list[list[float]] = []
    for i, v in enumerate(values):
        if not out or v != out[-1][1]:
            out.append([i, v])
    return out


def _schedule_facts(cfg: CfgNode) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    for name, counts in TRAIN_SETS.items():
        records = [Record(pid, i % 2) for pid, n in enumerate(counts) for i in range(n)]
        sampler = build_train_sampler(cfg, records, rank=0, world_size=1, seed=0)
        loader = build_train_loader(records, transform=None, sampler=sampler)
        per_epoch = len(loader)
        schedule = StagedSchedule(cfg, build_training_plan(cfg), per_epoch)
        base = cfg.SOLVER.BASE_LR
        epochs = range(cfg.SOLVER.MAX_EPOCH)
        facts[name] = {
            "iters_per_epoch": per_epoch,
            "max_iters": schedule.max_iters,
            "lr_epoch_start": _rle([base * schedule.factor(e * per_epoch) for e in epochs]),
            "lr_epoch_middle": _rle(
                [base * schedule.factor(e * per_epoch + per_epoch // 2) for e in epochs]
            ),
            "lr_last": base * schedule.factor(schedule.max_iters - 1),
            "sampler": type(sampler).__name__,
        }
    return facts


class _ToyModel(nn.Module):
    """One parameter of every kind the optimizer groups: weights, biases, norms, in and out of
    the heads."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
        self.heads = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))


def _optimizer_facts(cfg: CfgNode) -> dict[str, Any]:
    optimizer = build_optimizer(cfg, _ToyModel())
    groups = {
        str(g["name"]): {"lr": g["lr"], "weight_decay": g["weight_decay"]}
        for g in optimizer.param_groups
    }
    defaults = {
        k: _plain(v) for k, v in sorted(optimizer.defaults.items()) if _plain(v) is not None
    }
    return {"type": type(optimizer).__name__, "groups": groups, "defaults": defaults}


def _model_facts(cfg: CfgNode) -> dict[str, Any]:
    facts: dict[str, Any] = {"device": str(resolve_device(cfg.MODEL.DEVICE))}
    backbone = BACKBONE_REGISTRY.get(cfg.MODEL.BACKBONE.NAME)
    from_config = getattr(backbone, "from_config", None)
    if from_config is None:  # a builder function: its class's arguments
        from reid.modeling.backbones.resnet import ResNet

        from_config = ResNet.from_config
    facts["backbone"] = _data_args(from_config(cfg))
    head_cls = HEAD_REGISTRY.get(cfg.MODEL.HEADS.NAME)
    head_args = head_cls.from_config(cfg, 2048)
    facts["head"] = _data_args(head_args)
    pooling = build_pooling(cfg)
    facts["pooling"] = [type(pooling).__name__, pooling.extra_repr()]
    classifier = build_classifier(cfg, 16, 5)
    # ArcFace's fallback became a key (issue 15); its default is the behaviour recorded.
    facts["classifier"] = [
        type(classifier).__name__,
        classifier.extra_repr().replace(", fallback=insightface", ""),
    ]
    if cfg.MODEL.META_ARCHITECTURE == "MGN":
        from reid.modeling.meta_arch.mgn import MGN_CONFIG

        facts["mgn"] = _data_args(MGN_CONFIG.arguments(cfg))
    losses = {}
    for name in cfg.MODEL.LOSSES.NAME:
        loss_cls = LOSS_REGISTRY.get(name)
        losses[name] = {
            "weight": loss_cls.weight(cfg),
            "args": _data_args(loss_cls.from_config(cfg, feat_dim=256)),
        }
    facts["losses"] = losses
    return facts


def config_facts(
    path: str, parts: tuple[str, ...] = ("schedule", "optimizer", "model")
) -> dict[str, Any]:
    """What the config at ``path`` (relative to the repository root) trains, as JSON data."""
    cfg = load_config(os.path.join(ROOT, path))
    cfg.defrost()
    cfg.MODEL.HEADS.NUM_CLASSES = 100
    cfg.freeze()
    torch.manual_seed(0)
    facts = {"schedule": _schedule_facts, "optimizer": _optimizer_facts, "model": _model_facts}
    return {"config": _flat(cfg), **{part: facts[part](cfg) for part in parts}}


def record(output: str) -> None:
    """Write the facts of every config, the config values shared by all of them once."""
    facts = {path: config_facts(path) for path in config_files()}
    flat = [f["config"] for f in facts.values()]
    common = {k: v for k, v in flat[0].items() if all(k in c and c[k] == v for c in flat)}
    for f in facts.values():
        f["config"] = {k: v for k, v in f["config"].items() if k not in common}
    lines = [f'"common_config": {json.dumps(common, sort_keys=True)}']
    lines += [f"{json.dumps(path)}: {json.dumps(f, sort_keys=True)}" for path, f in facts.items()]
    with open(output, "w", encoding="utf-8") as out:
        out.write("{\n" + ",\n".join(lines[:1]) + ',\n"configs": {\n')
        out.write(",\n".join(lines[1:]) + "\n}}\n")


def _load_reference() -> dict[str, Any]:
    with open(REFERENCE, encoding="utf-8") as f:
        return json.load(f)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=0.0)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


# Keys of the reference that no longer exist, each with where its effect is now checked.
REMOVED_KEYS: dict[str, str] = {
    "MODEL.LOSSES.TRI.HARD_MINING": "an alias of MINING now; TripletLoss's mining argument",
    # reid's resize-then-crop moved to INPUT.RESIZE_THEN_CROP (INPUT.CROP is fastreid's random
    # resized crop now); tests/configs/test_paper_transforms.py checks those pipelines step by step.
    "INPUT.CROP.ENABLED": "reid's resize-then-crop is INPUT.RESIZE_THEN_CROP.ENABLED now",
    "INPUT.CROP.RESIZE": "reid's resize-then-crop is INPUT.RESIZE_THEN_CROP.RESIZE now",
}
# Arguments added since (a path into the facts, e.g. ("model", "backbone", "stem_pool")) -> the
# value every config must build with to train as before; any other new argument fails the test.
ADDED_ARGUMENTS: dict[tuple[str, ...], Any] = {
    # fastreid's conventions are the schema defaults; reid's configs keep reid's (issue 12)
    ("model", "backbone", "stem_pool"): "padded",
    ("model", "backbone", "nl_inter_channels"): 0,
    ("model", "backbone", "nl_init"): "kaiming",
    ("model", "mgn", "stripes"): "balanced",
    ("model", "losses", "CrossEntropyLoss", "args", "smooth_over"): "all",
    ("model", "losses", "TripletLoss", "args", "anchor_as_positive"): False,
    # the open readings of the papers became keys, the recorded reading the default (issue 15)
    ("model", "losses", "CrossEntropyLoss", "args", "ohem_rounding"): "floor",
    ("model", "losses", "RatioLoss", "args", "average_over"): "batch_classes",
}
# (key, value before as JSON) -> the value that means the same now.
RENAMED_VALUES: dict[tuple[str, str], Any] = {
    # "images" was ceil(#images / batch) batches and at least one identity pass; it is now
    # fastreid's #images // batch, and the old epoch is "images_ceil".
    ("DATALOADER.EPOCH_LENGTH", '"images"'): "images_ceil",
}

# Configs changed on purpose since the record: path prefix -> (the keys that changed, "*" for
# any, the facts not compared, why). The AdaSP rows follow the AdaSP repository exactly (issue 12):
# they start from fastreid's Base-bagtricks.yml, not reid's, so fastreid's epoch, schedule clock
# and conventions, AutoAugment, the camera-balanced sampler and VehicleID's training set;
# tests/configs/test_adasp_configs.py checks them against the repository.
CHANGED_ON_PURPOSE: dict[str, tuple[set[str], set[str], str]] = {
    os.path.join("configs", "papers", "adasp", ""): (
        {"*"},
        {"schedule", "model"},
        "the AdaSP repository's files on fastreid's bag of tricks",
    ),
    # The survey's rows built from its formulas use its plain CE and ArcFace as written (issue 15).
    os.path.join("configs", "papers", "survey", "ce_arcface.yml"): (
        {"MODEL.LOSSES.CE.EPSILON", "MODEL.HEADS.ARCFACE.FALLBACK"},
        {"model"},
        "the survey's CE + ArcFace: no label smoothing, cos(theta + m) without a fallback",
    ),
    os.path.join("configs", "papers", "survey", "ce_circle.yml"): (
        {"MODEL.LOSSES.CE.EPSILON"},
        {"model"},
        "the survey's CE + circle: no label smoothing",
    ),
}
# Configs added after the record (issue 15's rows); tests/configs/test_paper_configs.py trains them.
ADDED_CONFIGS = {
    os.path.join("configs", "papers", *p.split("/"))
    for p in (
        "survey/ce_center.yml",
        "unified/meta_ntuplet16_cls.yml",
        *(
            f"unified/{cls}tri_{metric}_{mining}_hinge.yml"
            for cls in ("", "cls_")
            for metric in ("cosine", "euclidean")
            for mining in ("all", "hard")
        ),
    )
}

# The recipes the others build on run in the fast tier; every config in the full suite.
FAST = {
    os.path.join("configs", *p.split("/"))
    for p in (
        "Base-bagtricks.yml",
        "Synthetic/quickstart.yml",
        "papers/ratio/Base-ratio.yml",
        "papers/unified/Base-mpn.yml",
        "papers/adasp/Base-SBS.yml",
    )
}


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    return _load_reference()


def _changed_on_purpose(path: str) -> bool:
    return any(path.startswith(prefix) for prefix in CHANGED_ON_PURPOSE)


def test_every_recorded_config_still_exists_and_every_config_is_recorded(reference):
    recorded = [p for p in sorted(reference["configs"]) if not _changed_on_purpose(p)]
    assert recorded == [
        p for p in config_files() if not _changed_on_purpose(p) and p not in ADDED_CONFIGS
    ]
    assert ADDED_CONFIGS <= set(config_files())
    assert FAST <= set(config_files())


def test_dataset_layers_name_data_only():
    """A table run is its row config plus a dataset layer: the layer must not touch training (its
    only other key is the evaluation protocol's number of gallery draws)."""
    for path in glob.glob(os.path.join(ROOT, LAYERS, "*.yml")):
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
        assert set(data) - {"TEST"} == {"DATASETS"}, path
        assert set(data.get("TEST", {})) <= {"GALLERY_DRAWS"}, path


def _expected_config(reference: dict[str, Any], path: str) -> dict[str, Any]:
    """The recorded values, but for removed keys and keys that nothing in the config reads: those
    of the losses it does not use and those its head has no option for (the head must now keep
    their new defaults). The arguments of the head and of the losses in use are compared too."""
    expected = {**reference["common_config"], **reference["configs"][path]["config"]}
    head = HEAD_REGISTRY.get(expected["MODEL.HEADS.NAME"])
    used = expected["MODEL.LOSSES.NAME"]
    unused_blocks = {cls.config_block.path for name, cls in LOSS_REGISTRY if name not in used}
    unused_blocks -= {LOSS_REGISTRY.get(name).config_block.path for name in used}
    unread = [
        key
        for key in expected
        if key in REMOVED_KEYS
        or key.rsplit(".", 1)[0] in unused_blocks
        or key in {f"MODEL.HEADS.{k}" for k in head.ignored_keys}
    ]
    for key in unread:
        del expected[key]
    return {k: RENAMED_VALUES.get((k, json.dumps(v)), v) for k, v in expected.items()}


@pytest.mark.parametrize(
    "path",
    [
        pytest.param(p, marks=() if p in FAST else pytest.mark.slow)
        for p in config_files()
        if p in _load_reference()["configs"]
    ],
)
def test_config_trains_what_it_trained_before(reference, path):
    expected = reference["configs"][path]
    keys_changed: set[str] = set()
    parts_changed: set[str] = set()
    for prefix, (keys, parts, _why) in CHANGED_ON_PURPOSE.items():
        if path.startswith(prefix):
            keys_changed, parts_changed = keys, parts
    compared = tuple(p for p in ("schedule", "optimizer", "model") if p not in parts_changed)
    actual = config_facts(path, compared)
    config = actual["config"]
    changed = {
        key: (value, config.get(key, "<missing>"))
        for key, value in _expected_config(reference, path).items()
        if "*" not in keys_changed
        and key not in keys_changed
        and (key not in config or not _same(value, config[key]))
    }
    assert changed == {}, f"{path}: key: (before, now)"
    for where, value in ADDED_ARGUMENTS.items():
        node = actual
        for step in where[:-1]:
            node = node.get(step, {})
        if where[-1] in node:
            assert _same(node.pop(where[-1]), value), (path, where)
    for part in compared:
        assert _same(expected[part], actual[part]), (path, part, expected[part], actual[part])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", required=True, metavar="JSON")
    record(parser.parse_args().record)
