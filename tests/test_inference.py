"""FeatureExtractor: the evaluator's features for the same images, every input kind, flip and
metric, precision, run folders and checkpoints (EMA included), unreadable files, finding images."""

import os

import numpy as np
import pytest
import torch
from PIL import Image
from torch.optim.swa_utils import AveragedModel

from reid import FeatureExtractor
from reid.data.build import build_reid_test_loader
from reid.data.transforms import EvalTransform
from reid.evaluation.evaluator import (
    EvalSettings,
    ReidEvaluator,
    inference_on_dataset,
    score_features,
)
from reid.inference import (
    FeatureModel,
    build_inference_model,
    default_weights,
    find_images,
)
from reid.modeling import build_model
from reid.utils.checkpoint import Checkpointer, WeightsMismatchError
from reid.utils.file_io import atomic_write_text

NUM_CLASSES = 6


def make_run(cfg, folder, *names):
    """A run folder: config.yaml (test features flip-averaged) and checkpoints of one randomly
    initialised model."""
    os.makedirs(folder, exist_ok=True)
    cfg = cfg.clone()
    cfg.defrost()
    cfg.TEST.FLIP.ENABLED = True
    cfg.MODEL.HEADS.NUM_CLASSES = NUM_CLASSES
    cfg.OUTPUT_DIR = str(folder)
    cfg.freeze()
    model = build_model(cfg)
    checkpointer = Checkpointer(model, str(folder), meta={"num_classes": NUM_CLASSES})
    for name in names or ("model_final",):
        checkpointer.save(name)
    atomic_write_text(os.path.join(folder, "config.yaml"), cfg.dump())
    return cfg, model.eval()


class Recording(ReidEvaluator):
    def process(self, batch, features):
        self.features = getattr(self, "features", []) + [features.clone()]
        self.paths = getattr(self, "paths", []) + list(batch["img_paths"])
        super().process(batch, features)


def evaluator_features(cfg, model):
    """What the evaluator computes: features of query then gallery, their paths and metrics."""
    loader, num_query = build_reid_test_loader(cfg, "Synthetic")
    evaluator = Recording(cfg, num_query)
    results = inference_on_dataset(model, loader, evaluator, flip=cfg.TEST.FLIP.ENABLED)
    return torch.cat(evaluator.features), evaluator, num_query, results


@pytest.mark.parametrize("metric", ["cosine", pytest.param("euclidean", marks=pytest.mark.slow)])
def test_features_are_the_evaluators_and_score_the_same(tiny_cfg, tmp_path, metric):
    cfg, model = make_run(tiny_cfg("TEST.METRIC", metric), tmp_path / "run")
    raw, evaluator, num_query, results = evaluator_features(cfg, model)
    extractor = FeatureExtractor.from_run(str(tmp_path / "run"))
    assert extractor.batch_size == cfg.TEST.IMS_PER_BATCH
    assert extractor.feature_model.flip

    out = extractor.extract_files(evaluator.paths)
    assert out.failed == [] and out.paths == evaluator.paths
    assert out.features.dtype == np.float32 and out.features.shape == (len(evaluator.paths), 512)
    expected = torch.nn.functional.normalize(raw, dim=1) if metric == "cosine" else raw
    torch.testing.assert_close(torch.from_numpy(out.features), expected, rtol=0, atol=1e-6)
    if metric == "cosine":
        np.testing.assert_allclose(np.linalg.norm(out.features, axis=1), 1.0, atol=1e-5)

    # The same list through __call__ (paths, batched the same way) gives the same rows.
    torch.testing.assert_close(extractor(evaluator.paths), torch.from_numpy(out.features))

    pids = torch.cat(evaluator._pids)
    camids = torch.cat(evaluator._camids)
    settings = EvalSettings.from_config(cfg, "Synthetic")
    ours = score_features(torch.from_numpy(out.features), pids, camids, num_query, settings)
    for key, value in results.items():
        assert ours[key] == pytest.approx(value, abs=1e-9), key


def test_every_input_kind_gives_the_same_feature(tiny_run, tmp_path):
    extractor = FeatureExtractor.from_run(tiny_run)
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, size=(40 + 3 * i, 20 + i, 3), dtype=np.uint8) for i in range(3)]
    paths = []
    for i, array in enumerate(arrays):
        paths.append(str(tmp_path / f"img{i}.png"))  # lossless, so the file holds the array
        Image.fromarray(array).save(paths[-1])
    by_path = extractor(paths)
    assert by_path.shape == (3, 512) and by_path.dtype == torch.float32
    torch.testing.assert_close(extractor([Image.fromarray(a) for a in arrays]), by_path)
    torch.testing.assert_close(extractor(arrays), by_path)
    tensors = [torch.from_numpy(a).permute(2, 0, 1) for a in arrays]
    torch.testing.assert_close(extractor(tensors), by_path)
    torch.testing.assert_close(extractor([paths[0], arrays[1], tensors[2]]), by_path)
    torch.testing.assert_close(extractor(paths[1]), by_path[1:2])  # one image: 1 x D
    torch.testing.assert_close(extractor(Image.open(paths[2]).convert("L")).shape, (1, 512))
    same = [np.ascontiguousarray(arrays[0]) for _ in range(2)]
    torch.testing.assert_close(extractor(np.stack(same)), by_path[:1].expand(2, -1))
    torch.testing.assert_close(extractor(torch.stack([tensors[0]] * 2)), by_path[:1].expand(2, -1))
    assert extractor([]).shape == (0, 512)


def test_flip_averaging_and_euclidean_features_by_hand(tiny_cfg, tmp_path):
    cfg, model = make_run(tiny_cfg("TEST.METRIC", "euclidean"), tmp_path / "run")
    image = np.random.default_rng(1).integers(0, 256, size=(32, 16, 3), dtype=np.uint8)
    x = EvalTransform(size=(32, 16))(image)[None]
    with torch.no_grad():
        plain = model({"images": x})
        flipped = model({"images": x.flip(3)})
    ours = FeatureExtractor.from_run(str(tmp_path / "run"))(image)
    torch.testing.assert_close(ours, (plain + flipped) / 2)  # euclidean: not normalised
    no_flip = FeatureExtractor.from_run(str(tmp_path / "run"), opts=["TEST.FLIP.ENABLED", "False"])
    torch.testing.assert_close(no_flip(image), plain)
    assert not no_flip.normalized and no_flip.metric == "euclidean"


@pytest.mark.slow
def test_reduced_precision_is_close_and_returns_float32(tiny_run, tmp_path):
    images = [np.full((32, 16, 3), v, dtype=np.uint8) for v in (30, 120, 220)]
    images[1][:16] = 255
    full = FeatureExtractor.from_run(tiny_run)(images)
    low = FeatureExtractor.from_run(tiny_run, precision="fp16")(images)
    assert low.dtype == torch.float32
    cosine = (full * low).sum(1)
    assert cosine.min() > 0.995 and not torch.equal(full, low)  # fp16 really ran
    # The model runs under autocast to the chosen type. (bf16 features are not compared: CPU bf16
    # convolutions of this torch build sometimes return NaN on a first call, upstream.)
    for precision, dtype in (("fp32", None), ("fp16", torch.float16), ("bf16", torch.bfloat16)):
        extractor = FeatureExtractor.from_run(tiny_run, precision=precision)
        seen = []

        def record(*_, seen=seen):
            enabled = torch.is_autocast_enabled("cpu")
            seen.append(torch.get_autocast_dtype("cpu") if enabled else None)

        extractor.feature_model.model.register_forward_pre_hook(record)
        extractor(images[0])
        assert seen == [dtype, dtype], precision  # the image and its flipped copy
    with pytest.raises(ValueError, match=r"precision must be one of \['bf16', 'fp16', 'fp32'\]"):
        FeatureExtractor.from_run(tiny_run, precision="int8")


def test_run_folders_checkpoints_and_default_weights(tiny_cfg, tmp_path):
    run = tmp_path / "run"
    cfg, _ = make_run(tiny_cfg(), run, "model_0001", "model_final")
    # Weights: MODEL.WEIGHTS, else model_final.pth next to a run's config.yaml, else OUTPUT_DIR's.
    assert default_weights(cfg, str(run / "config.yaml")) == str(run / "model_final.pth")
    moved = tmp_path / "moved"
    os.rename(run, moved)
    assert default_weights(cfg, str(moved / "config.yaml")) == str(moved / "model_final.pth")
    with pytest.raises(FileNotFoundError, match="MODEL.WEIGHTS is empty and there is no"):
        default_weights(cfg)
    with_weights = cfg.clone()
    with_weights.defrost()
    with_weights.MODEL.WEIGHTS = "/some/model.pth"
    assert default_weights(with_weights) == "/some/model.pth"

    final = FeatureExtractor.from_run(str(moved))(np.zeros((32, 16, 3), np.uint8))
    again = FeatureExtractor.from_config(str(moved))(np.zeros((32, 16, 3), np.uint8))
    torch.testing.assert_close(final, again)  # a run folder as the config, its model_final
    (moved / "last_checkpoint").write_text("model_0001.pth")
    assert FeatureExtractor.from_run(str(moved), "last").feature_dim == 512
    with pytest.raises(FileNotFoundError, match="checkpoints in .*: model_0001.pth, model_final"):
        FeatureExtractor.from_run(str(moved), "model_best.pth")
    with pytest.raises(FileNotFoundError, match="is not a run folder: it has no config.yaml"):
        FeatureExtractor.from_run(str(tmp_path))


@pytest.mark.slow
def test_ema_weights_are_used_when_the_checkpoint_has_them(tiny_cfg, tmp_path):
    cfg, model = make_run(tiny_cfg(), tmp_path / "run")
    ema = AveragedModel(model, use_buffers=True)
    with torch.no_grad():
        for p in ema.module.parameters():
            p.mul_(0.5)
    path = str(tmp_path / "with_ema.pth")
    torch.save({"model": model.state_dict(), "ema": ema.state_dict(), "num_classes": 6}, path)
    image = np.full((32, 16, 3), 90, np.uint8)
    x = EvalTransform(size=(32, 16))(image)[None]

    def reference(net):
        net.eval()
        with torch.no_grad():
            f = (net({"images": x}) + net({"images": x.flip(3)})) / 2
        return torch.nn.functional.normalize(f, dim=1)

    averaged = FeatureExtractor.from_config(cfg, path)(image)
    torch.testing.assert_close(averaged, reference(ema.module))
    raw = FeatureExtractor.from_config(cfg, path, use_ema=False)(image)
    torch.testing.assert_close(raw, reference(model))
    with pytest.raises(ValueError, match="use_ema=True but the checkpoint holds no EMA"):
        build_inference_model(cfg, str(tmp_path / "run" / "model_final.pth"), use_ema=True)


@pytest.mark.slow
def test_weights_that_do_not_fit_and_imagenet_weights_never_read(tiny_cfg, tmp_path):
    cfg, _ = make_run(tiny_cfg(), tmp_path / "run")
    weights = str(tmp_path / "run" / "model_final.pth")
    other = tiny_cfg("MODEL.BACKBONE.DEPTH", "34x")
    with pytest.raises(WeightsMismatchError, match="model_final.pth: the weights do not fit"):
        build_inference_model(other, weights)
    # PRETRAIN would read ImageNet weights from a file that does not exist: never done here.
    pretrain = tiny_cfg("MODEL.BACKBONE.PRETRAIN", "True", "MODEL.BACKBONE.PRETRAIN_PATH", "/no")
    assert isinstance(FeatureModel(build_inference_model(pretrain, weights)), FeatureModel)
    # A bare state dict without num_classes: the classifier is re-initialised, features load.
    bare = str(tmp_path / "bare.pth")
    torch.save(torch.load(weights, weights_only=True)["model"], bare)
    image = np.full((32, 16, 3), 90, np.uint8)
    torch.testing.assert_close(
        FeatureExtractor.from_config(cfg, bare)(image),
        FeatureExtractor.from_config(cfg, weights)(image),
    )


def test_bad_inputs_name_their_position(tiny_run, tmp_path):
    extractor = FeatureExtractor.from_run(tiny_run)
    good = np.zeros((8, 4, 3), np.uint8)
    with pytest.raises(ValueError, match=r"image 1: an array must be uint8 H x W x 3 \(RGB\)"):
        extractor([good, good.astype(np.float32)])
    with pytest.raises(ValueError, match=r"image 0: a tensor must be 3 x H x W"):
        extractor([torch.zeros(4, 8, 8)])
    with pytest.raises(ValueError, match=r"image 0: a float tensor must hold values in 0..255"):
        extractor(torch.full((3, 8, 8), 300.0))
    with pytest.raises(TypeError, match="image 2: expected a path, a PIL image"):
        extractor([good, good, 3])
    with pytest.raises(OSError, match="cannot read image .*missing.jpg"):
        extractor(str(tmp_path / "missing.jpg"))


def test_unreadable_files_are_skipped_and_reported(tiny_run, tmp_path):
    extractor = FeatureExtractor.from_run(tiny_run)
    extractor.batch_size = 2
    paths = []
    for i in range(4):
        paths.append(str(tmp_path / f"ok{i}.jpg"))
        Image.new("RGB", (16, 32), (40 * i, 90, 200)).save(paths[-1])
    broken = tmp_path / "broken.jpg"
    broken.write_text("not an image")
    missing = str(tmp_path / "gone.jpg")
    order = [paths[0], str(broken), paths[1], paths[2], missing, paths[3]]
    out = extractor.extract_files(order, progress=True)
    assert out.paths == paths
    assert [p for p, _ in out.failed] == [str(broken), missing]
    assert all("cannot read image" in reason for _, reason in out.failed)
    # Other batches (the bad files leave gaps) change the float rounding only.
    np.testing.assert_allclose(out.features, extractor(paths).numpy(), rtol=0, atol=1e-6)
    nothing = extractor.extract_files([missing])
    assert nothing.features.shape == (0, 512) and nothing.paths == []


def test_find_images_walks_folders_and_patterns(tmp_path):
    for rel in ("a/1.jpg", "a/sub/2.PNG", "a/sub/notes.txt", "b/3.jpeg", "c.bmp", "d.dat"):
        os.makedirs(tmp_path / os.path.dirname(rel), exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    t = str(tmp_path)
    assert find_images([f"{t}/a"]) == [f"{t}/a/1.jpg", f"{t}/a/sub/2.PNG"]
    assert find_images([f"{t}/**/*.jp*g"]) == [f"{t}/a/1.jpg", f"{t}/b/3.jpeg"]
    assert find_images([f"{t}/[ab]"]) == [f"{t}/a/1.jpg", f"{t}/a/sub/2.PNG", f"{t}/b/3.jpeg"]
    # Explicit files are kept whatever their suffix; duplicates only once, first place kept.
    assert find_images([f"{t}/d.dat", f"{t}/c.bmp", f"{t}/a", f"{t}/c.bmp"]) == [
        f"{t}/d.dat",
        f"{t}/c.bmp",
        f"{t}/a/1.jpg",
        f"{t}/a/sub/2.PNG",
    ]
    with pytest.raises(FileNotFoundError, match="input not found: .*nothing"):
        find_images([f"{t}/nothing"])
    os.makedirs(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="no images .* in .*empty"):
        find_images([f"{t}/empty"])
    with pytest.raises(FileNotFoundError, match=r"no images .* in .*\*.gif"):
        find_images([f"{t}/*.gif"])
