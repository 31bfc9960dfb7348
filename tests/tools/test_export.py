"""tools/export.py: ONNX (run in onnxruntime), TorchScript and torch.export files of the Baseline
and MGN models give the extractor's features on real images, with any batch size; the printed
parity figure and the model card."""

import glob
import importlib.util
import json
import os

import numpy as np
import onnxruntime
import pytest
import torch

from reid import FeatureExtractor
from reid.config import load_config
from reid.data.build import read_image
from reid.data.transforms import EvalTransform
from reid.modeling import build_model
from reid.utils.checkpoint import Checkpointer
from reid.utils.file_io import atomic_write_text

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SUFFIX = {"onnx": ".onnx", "torchscript": ".pt", "export": ".pt2"}


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location(
        "export_tool", os.path.join(ROOT, "tools", "export.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _images(synthetic_root, count=5):
    paths = sorted(glob.glob(os.path.join(synthetic_root, "synthetic", "*", "query", "*.jpg")))
    assert len(paths) >= count
    return paths[:count]


def _run_exported(fmt, path, images):
    """The exported file run by its own runtime, not through reid."""
    if fmt == "onnx":
        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        assert [i.name for i in session.get_inputs()] == ["images"]
        assert [o.name for o in session.get_outputs()] == ["features"]
        return session.run(None, {"images": images.numpy()})[0]
    module = torch.jit.load(path) if fmt == "torchscript" else torch.export.load(path).module()
    with torch.no_grad():
        return module(images).numpy()


def _check_against_extractor(fmt, path, run_dir, cfg, paths):
    transform = EvalTransform(cfg)
    images = torch.stack([transform(read_image(p)) for p in paths])
    reference = FeatureExtractor.from_run(run_dir, device="cpu")(paths).numpy()
    for batch in (images, images[:1]):  # the export traced a batch of 2
        ours = _run_exported(fmt, path, batch)
        expected = reference[: len(batch)]
        assert ours.shape == expected.shape
        relative = np.abs(ours - expected).max() / np.abs(expected).max()
        assert relative <= 1e-4, (fmt, relative)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "torchscript", "export"])
def test_baseline_exports_give_the_extractors_features(
    tool, fmt, tiny_run, synthetic_root, tmp_path, capsys
):
    out = str(tmp_path / f"model{SUFFIX[fmt]}")
    assert tool.main(["--config-file", tiny_run, "--format", fmt, "--output", out]) == 0
    printed = capsys.readouterr().out
    runtime = {"onnx": "onnxruntime", "torchscript": "torch.jit", "export": "torch.export"}[fmt]
    assert f"Exported {os.path.join(tiny_run, 'model_final.pth')} to {out} ({fmt}," in printed
    assert f"parity ({runtime} vs PyTorch, random batches of 1 and 3 images): max abs" in printed
    assert "(ok)" in printed
    assert (
        "Input 'images': float32 B x 3 x 32 x 16, RGB, 0..255; output 'features': B x 512"
        in printed
    )

    card = json.load(open(out + ".json"))
    assert card["input"]["shape"] == ["batch", 3, 32, 16]
    assert card["output"] == {
        "name": "features",
        "shape": ["batch", 512],
        "dtype": "float32",
        "l2_normalized": True,
    }
    assert card["metric"] == "cosine" and card["flip_averaged"] is True
    assert card["parity"]["max_rel"] <= 1e-4 and card["parity"]["batch_sizes"] == [1, 3]
    assert oct(os.stat(out).st_mode & 0o777) != "0o600"  # readable by others, as umask allows

    cfg = load_config(os.path.join(tiny_run, "config.yaml"))
    _check_against_extractor(fmt, out, tiny_run, cfg, _images(synthetic_root))


@pytest.mark.slow
def test_mgn_onnx_export_gives_the_extractors_features(
    tool, tiny_opts, synthetic_root, tmp_path, capsys
):
    config = os.path.join(ROOT, "configs", "papers", "adasp", "Market1501", "mgn_CE_adasp.yml")
    opts = [
        *tiny_opts,
        "MODEL.BACKBONE.WITH_IBN",
        "False",
        "MODEL.BACKBONE.WITH_NL",
        "False",
        "INPUT.SIZE_TEST",
        "[96, 32]",  # MGN's three torch.chunk stripes need a feature map of height >= 5
        "TEST.FLIP.ENABLED",
        "True",
        "MODEL.HEADS.NUM_CLASSES",
        "6",
        "SOLVER.AMP.ENABLED",
        "False",
        "OUTPUT_DIR",
        str(tmp_path / "mgn"),
    ]
    cfg = load_config(config, opts)
    assert (
        cfg.MODEL.META_ARCHITECTURE == "MGN"
        and cfg.MODEL.HEADS.POOL_LAYER == "GeneralizedMeanPoolingP"
    )
    model = build_model(cfg)
    with torch.no_grad():  # away from the initial values, so every part of the graph matters
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    os.makedirs(cfg.OUTPUT_DIR)
    Checkpointer(model, cfg.OUTPUT_DIR, meta={"num_classes": 6}).save("model_final")
    atomic_write_text(os.path.join(cfg.OUTPUT_DIR, "config.yaml"), cfg.dump())

    out = str(tmp_path / "mgn.onnx")
    assert tool.main(["--config-file", cfg.OUTPUT_DIR, "--format", "onnx", "--output", out]) == 0
    assert "(ok)" in capsys.readouterr().out
    card = json.load(open(out + ".json"))
    assert card["output"]["shape"] == ["batch", 8 * 256]  # the 8 heads' 256-d features
    _check_against_extractor("onnx", out, cfg.OUTPUT_DIR, cfg, _images(synthetic_root))


def test_bad_arguments_are_refused_before_any_work(tool, tmp_path, capsys):
    with pytest.raises(SystemExit):
        tool.main(["--config-file", "x", "--format", "export", "--output", str(tmp_path / "m.pt")])
    assert "--format export writes a .pt2 file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        tool.main(["--config-file", "x", "--format", "tflite", "--output", "m"])
    assert "invalid choice: 'tflite'" in capsys.readouterr().err
