"""The ratio paper's MNIST toy run (Figure 2): the CNN, the three variants' losses, the six panels,
and tools/ratio_toy.py end to end on tiny IDX files the test writes."""

import importlib.util
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from reid.data.mnist import MNIST_FILES, write_idx
from reid.figures.ratio_toy import (
    VARIANTS,
    LeNetPlusPlus,
    ToyHead,
    ToySettings,
    ToyVariant,
    plot_figure2,
    train_variant,
    variant_loss,
)
from reid.modeling.losses import cross_entropy_loss, normalized_softmax_logits, ratio_loss

ROOT = Path(__file__).resolve().parents[2]


def _tool():
    spec = importlib.util.spec_from_file_location("ratio_toy", ROOT / "tools" / "ratio_toy.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _digits(per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Tiny digit images: the digit drawn at a random offset, labels 0..9 in turn."""
    rng = np.random.default_rng(seed)
    labels = np.tile(np.arange(10, dtype=np.uint8), per_class)
    images = np.zeros((len(labels), 28, 28), np.uint8)
    for i, digit in enumerate(labels):
        origin = (int(rng.integers(2, 10)), int(rng.integers(20, 26)))
        cv2.putText(images[i], str(digit), origin, cv2.FONT_HERSHEY_SIMPLEX, 0.8, 255, 2)
    return images, labels


def _write_mnist(root: Path, per_class: int = 3) -> None:
    folder = root / "MNIST" / "raw"
    folder.mkdir(parents=True)
    train, test = _digits(per_class, 0), _digits(1, 1)
    for key, array in (
        ("train_images", train[0]),
        ("train_labels", train[1]),
        ("test_images", test[0]),
        ("test_labels", test[1]),
    ):
        write_idx(str(folder / MNIST_FILES[key]), array)


def test_the_cnn_has_six_convolutions_a_2d_feature_layer_and_the_classifier_makes_eight() -> None:
    net = LeNetPlusPlus()
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 32, 64, 64, 128, 128]
    assert all(c.kernel_size == (5, 5) and c.padding == (2, 2) for c in convs)
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in net.modules()) == 3
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules()) == 6
    # Initialised for PReLU: the 2-D feature of normalised inputs is not vanishingly small.
    torch.manual_seed(0)
    assert net(torch.randn(64, 1, 28, 28)).std() > 0.1
    assert (net.feature.in_features, net.feature.out_features) == (128 * 3 * 3, 2)
    assert net(torch.zeros(3, 1, 28, 28)).shape == (3, 2)


@pytest.mark.slow
def test_variants_differ_only_by_their_loss() -> None:
    images, labels = _digits(2, seed=3)
    test_images, test_labels = _digits(1, seed=4)
    settings = ToySettings(per_class=2, epochs=1, batch_size=10, seed=5)
    no_ratio = ToySettings(**{**settings.__dict__, "ratio_weight": 0.0})
    runs = {
        "nsl": train_variant("nsl", images, labels, test_images, test_labels, settings),
        "nsl_ratio0": train_variant(
            "nsl_ratio", images, labels, test_images, test_labels, no_ratio
        ),
        "nsl_ratio": train_variant("nsl_ratio", images, labels, test_images, test_labels, settings),
        "softmax": train_variant("softmax", images, labels, test_images, test_labels, settings),
    }
    # Same seed, same batches: with lambda = 0 the ratio variant is NSL exactly.
    assert np.array_equal(runs["nsl"].features, runs["nsl_ratio0"].features)
    assert runs["nsl"].losses == runs["nsl_ratio0"].losses
    assert not np.allclose(runs["nsl"].features, runs["nsl_ratio"].features)
    assert runs["nsl_ratio"].losses[0] > runs["nsl"].losses[0]  # + lambda * a positive ratio
    assert not np.allclose(runs["nsl"].features, runs["softmax"].features)
    for run in runs.values():
        assert run.features.shape == (20, 2) and np.array_equal(run.labels, labels)
        assert 0.0 <= run.test_accuracy <= 100.0 and len(run.losses) == 1
    with pytest.raises(ValueError, match="unknown variant 'arcface'"):
        train_variant("arcface", images, labels, test_images, test_labels, settings)


def test_the_ratio_variant_adds_lambda_times_the_ratio_loss_to_nsl() -> None:
    g = torch.Generator().manual_seed(0)
    f, W = torch.randn(12, 2, generator=g), torch.randn(10, 2, generator=g)
    y = torch.arange(12) % 10
    head = ToyHead("nsl_ratio", 2, 14.0)
    head.weight.data.copy_(W)
    settings = ToySettings(ratio_weight=0.7, ratio_eps=0.3)
    value = variant_loss("nsl_ratio", head, f, head(f), y, settings)
    expected = cross_entropy_loss(normalized_softmax_logits(f, W, 14.0), y) + 0.7 * ratio_loss(
        f, y, W, eps=0.3
    )
    assert value.item() == pytest.approx(expected.item(), rel=1e-6)
    softmax = ToyHead("softmax", 2, 14.0)
    assert softmax.bias is not None and head.bias is None


@pytest.mark.slow
def test_figure_has_the_six_panels_raw_and_normalised(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 5)
    variants = {
        name: ToyVariant(name, rng.normal(size=(50, 2)) * (k + 1), labels, 90.0, 80.0 + k, 1.0)
        for k, name in enumerate(VARIANTS)
    }
    fig = plot_figure2(variants, str(tmp_path / "fig.png"))
    image = cv2.imread(str(tmp_path / "fig.png"))
    assert image.shape[:2] == (int(8.4 * 120), int(3 * 4.2 * 120))
    axes = fig.axes
    assert len(axes) == 6
    for col, (name, caption) in enumerate(VARIANTS.items()):
        top, bottom = axes[col], axes[3 + col]
        assert top.get_title() == f"{caption}\noriginal features"
        assert bottom.get_title() == f"{caption}\nnormalized features"
        assert f"test accuracy {80.0 + col:.2f} %" in bottom.get_xlabel()
        raw = variants[name].features
        unit = raw / np.linalg.norm(raw, axis=1, keepdims=True)
        for digit in range(10):
            member = labels == digit
            # One scatter per digit, in digit order, each with its own colour.
            np.testing.assert_allclose(top.collections[digit].get_offsets(), raw[member])
            np.testing.assert_allclose(bottom.collections[digit].get_offsets(), unit[member])
        assert len({tuple(c.get_facecolor()[0]) for c in top.collections}) == 10
        offsets = np.concatenate([c.get_offsets() for c in bottom.collections])
        np.testing.assert_allclose(np.linalg.norm(offsets, axis=1), 1.0, rtol=1e-6)


@pytest.mark.slow
def test_tool_runs_on_tiny_idx_files_and_writes_the_figure(tmp_path: Path, capsys) -> None:
    _write_mnist(tmp_path / "data")
    out = tmp_path / "out" / "figure2.png"
    tool = _tool()
    argv = ["--root", str(tmp_path / "data"), "--output", str(out), "--per-class", "3"]
    assert tool.main([*argv, "--epochs", "1", "--batch-size", "16"]) == 0
    assert cv2.imread(str(out)) is not None
    with open(tmp_path / "out" / "figure2.json") as f:
        summary = json.load(f)
    assert list(summary["variants"]) == list(VARIANTS)
    assert summary["settings"]["per_class"] == 3 and summary["settings"]["epochs"] == 1
    assert summary["mnist"] == str(tmp_path / "data" / "MNIST" / "raw")
    printed = capsys.readouterr().out
    assert "(c) Normalized softmax with ratio loss: train accuracy" in printed
    with pytest.raises(ValueError, match="class 0 has 3 training images, fewer than the 4"):
        tool.main([*argv[:4], "--per-class", "4", "--epochs", "1"])
    with pytest.raises(FileNotFoundError, match="MNIST not found under .*train-images-idx3-ubyte"):
        tool.main(["--root", str(tmp_path / "nothing"), "--output", str(out)])
    assert os.path.isfile(out)
