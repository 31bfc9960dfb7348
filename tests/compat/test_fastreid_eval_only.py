"""``--eval-only`` on a fastreid checkpoint prints fastreid's numbers: reid's evaluation of the
converted model equals fastreid 1.4.0's evaluation of its own model on the same test images (the
synthetic set, so that no download is needed).

fastreid's ``fastreid.evaluation`` package does not import on Python >= 3.10 (its ``testing.py``
imports ``collections.Mapping``), so its ``ReidEvaluator.evaluate`` is followed line by line with
fastreid's own functions: ``build_dist`` and ``rank.evaluate_rank`` (that file loaded by path)."""

from __future__ import annotations

import importlib.util
import os
import warnings
from typing import Any

import numpy as np
import pytest
import torch

from reid.config import load_config
from reid.data.build import build_reid_test_loader
from reid.engine import DefaultTrainer, build_model_for_eval

fastreid_dist = pytest.importorskip(
    "fastreid.utils.compute_dist",
    reason="fastreid 1.4.0 (and faiss-cpu) not installed: pip install -e .[fastreid-test] and "
    "pip install --no-deps fastreid==1.4.0 (INSTALL.md)",
    exc_type=ImportError,
)
from fastreid.config import get_cfg as fastreid_cfg  # noqa: E402
from fastreid.modeling import build_model as fastreid_build_model  # noqa: E402
from fastreid.utils.checkpoint import Checkpointer as FastreidCheckpointer  # noqa: E402

from .test_fastreid_checkpoints import AGW, randomise  # noqa: E402

pytestmark = pytest.mark.slow


def _fastreid_rank() -> Any:
    import fastreid

    path = os.path.join(os.path.dirname(fastreid.__file__), "evaluation", "rank.py")
    spec = importlib.util.spec_from_file_location("fastreid_evaluation_rank", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    with warnings.catch_warnings():  # "Cython rank evaluation ... unavailable"
        warnings.simplefilter("ignore")
        spec.loader.exec_module(module)
    return module


def fastreid_evaluate(features, pids, camids, num_query: int) -> dict[str, float]:
    """fastreid's ReidEvaluator.evaluate (TEST.METRIC cosine, no AQE, no re-ranking, no ROC)."""
    dist = fastreid_dist.build_dist(features[:num_query], features[num_query:], "cosine")
    cmc, all_ap, all_inp = _fastreid_rank().evaluate_rank(
        dist, pids[:num_query], pids[num_query:], camids[:num_query], camids[num_query:]
    )
    results = {f"Rank-{r}": cmc[r - 1] * 100 for r in (1, 5, 10)}
    results["mAP"] = np.mean(all_ap) * 100
    results["mINP"] = np.mean(all_inp) * 100
    results["metric"] = (np.mean(all_ap) + cmc[0]) / 2 * 100
    return results


MODEL = AGW + [
    "MODEL.DEVICE", "cpu", "MODEL.BACKBONE.DEPTH", "34x", "MODEL.BACKBONE.FEAT_DIM", "512",
    "MODEL.BACKBONE.WITH_NL", "False", "MODEL.BACKBONE.PRETRAIN", "False",
    "MODEL.HEADS.NUM_CLASSES", "6", "TEST.METRIC", "cosine", "TEST.FLIP.ENABLED", "False",
]  # fmt: skip


def test_eval_only_on_a_fastreid_checkpoint_gives_fastreids_numbers(tiny_opts, tmp_path):
    cfg = fastreid_cfg()
    cfg.merge_from_list(MODEL)
    torch.manual_seed(0)
    theirs = fastreid_build_model(cfg)
    randomise(theirs, 0, (32, 16))
    FastreidCheckpointer(theirs, str(tmp_path)).save("model_final")
    weights = str(tmp_path / "model_final.pth")

    ours = load_config(
        None, tiny_opts + MODEL + ["MODEL.WEIGHTS", weights, "OUTPUT_DIR", str(tmp_path)]
    )
    results = DefaultTrainer.test(ours, build_model_for_eval(ours))["Synthetic"]

    loader, num_query = build_reid_test_loader(ours, "Synthetic")
    theirs.eval()
    feats, pids, camids = [], [], []
    with torch.no_grad():
        for batch in loader:
            feats.append(theirs({"images": batch["images"].float().clone()}))
            pids.append(batch["targets"])
            camids.append(batch["camids"])
    expected = fastreid_evaluate(
        torch.cat(feats), torch.cat(pids).numpy(), torch.cat(camids).numpy(), num_query
    )
    assert 0 < expected["mAP"] < 100  # a random model: neither trivial extreme
    for name in ("Rank-1", "Rank-5", "Rank-10", "mAP", "mINP", "metric"):
        assert results[name] == pytest.approx(float(expected[name]), abs=1e-6), name
