import argparse
import logging
import os
import urllib.error
from collections import OrderedDict

import pytest
import torch
import torchvision

from reid.config import ConfigError, load_config
from reid.modeling.backbones import (
    ResNet,
    build_backbone,
    find_published_file,
    load_pretrained,
    read_state_dict,
)
from reid.modeling.backbones.pretrained import published_urls
from reid.utils.checkpoint import WeightsMismatchError


def _torchvision_state() -> "OrderedDict[str, torch.Tensor]":
    return torchvision.models.resnet18(num_classes=1000).state_dict()


def _ibn_state() -> "OrderedDict[str, torch.Tensor]":
    """torchvision's resnet18 keys rewritten into IBN-Net's resnet18_ibn_a layout (bn1 of the
    blocks of layer1-3 split)."""
    state = OrderedDict()
    for key, value in _torchvision_state().items():
        parts = key.split(".")
        if parts[0] in ("layer1", "layer2", "layer3") and parts[2] == "bn1":
            half = value.shape[0] // 2 if value.dim() else None
            prefix = ".".join(parts[:3])
            if parts[3] in ("weight", "bias"):
                state[f"{prefix}.IN.{parts[3]}"] = torch.randn(half)
            state[f"{prefix}.BN.{parts[3]}"] = (
                value if value.dim() == 0 else torch.randn(value.shape[0] - half).abs()
            )
        else:
            state[key] = value
    return state


@pytest.fixture
def hub_dir(tmp_path, monkeypatch):
    """A fresh torch hub cache: TORCH_HOME/hub/checkpoints."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    directory = tmp_path / "torch" / "hub" / "checkpoints"
    assert torch.hub.get_dir() == str(tmp_path / "torch" / "hub")
    return directory


@pytest.fixture
def no_download(monkeypatch):
    calls = []

    def refuse(url, dst, hash_prefix=None, progress=True):
        calls.append((url, dst, hash_prefix))
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    return calls


def _assert_loaded(model: torch.nn.Module, state) -> None:
    own = model.state_dict()
    for key, value in state.items():
        if key in own:
            torch.testing.assert_close(own[key], value, msg=key)


def test_local_torchvision_file_loads_every_tensor_and_reports_the_classifier(
    tmp_path, caplog, no_download
):
    state = _torchvision_state()
    path = tmp_path / "r18.pth"
    torch.save(state, path)
    with caplog.at_level(logging.INFO, logger="reid"):
        cfg = load_config(
            None,
            ["MODEL.BACKBONE.DEPTH", "18x", "MODEL.BACKBONE.FEAT_DIM", "512"]
            + ["MODEL.BACKBONE.PRETRAIN", "True", "MODEL.BACKBONE.PRETRAIN_PATH", str(path)],
        )
        backbone = build_backbone(cfg)
    _assert_loaded(backbone, state)
    assert no_download == []
    report = load_pretrained(ResNet(18), str(path))
    assert report.missing == [] and report.ignored == ["fc.weight", "fc.bias"]
    assert len(report.loaded) == len(state) - 2
    assert f"loaded {len(state) - 2} tensors from {path}" in caplog.text
    assert "ignored (not in the model): fc.weight, fc.bias" in caplog.text


def test_module_prefix_and_state_dict_wrapper_are_stripped(tmp_path):
    state = _torchvision_state()
    path = tmp_path / "wrapped.pth.tar"
    torch.save({"state_dict": {"module." + k: v for k, v in state.items()}, "epoch": 3}, path)
    assert set(read_state_dict(str(path))) == set(state)
    model = ResNet(18)
    report = load_pretrained(model, str(path))
    assert report.missing == []
    _assert_loaded(model, state)


def test_missing_and_unexpected_keys_are_an_error_naming_the_file(tmp_path):
    state = _torchvision_state()
    del state["layer2.1.conv2.weight"]
    state["layer9.extra"] = torch.zeros(3)
    path = tmp_path / "partial.pth"
    torch.save(state, path)
    with pytest.raises(WeightsMismatchError) as err:
        load_pretrained(ResNet(18), str(path))
    message = str(err.value)
    assert message.startswith(f"{path}: the weights do not fit the model (ResNet)")
    assert "missing from the weights: layer2.1.conv2.weight" in message
    assert "not in the model: layer9.extra" in message
    assert "are MODEL.BACKBONE.NAME, DEPTH and WITH_IBN those these weights were trained" in message


def test_shape_mismatch_and_a_file_that_fits_nothing_are_errors(tmp_path):
    state = _torchvision_state()
    state["layer1.0.conv1.weight"] = torch.zeros(64, 64, 1, 1)
    bad = tmp_path / "bad.pth"
    torch.save(state, bad)
    with pytest.raises(
        WeightsMismatchError,
        match=r"of another shape: layer1.0.conv1.weight \(64, 64, 1, 1\) vs the model's "
        r"\(64, 64, 3, 3\)",
    ):
        load_pretrained(ResNet(18), str(bad))
    unrelated = tmp_path / "unrelated.pth"
    torch.save({"encoder.weight": torch.zeros(3, 3)}, unrelated)
    with pytest.raises(WeightsMismatchError, match="no tensor of the weights fits the model"):
        load_pretrained(ResNet(18), str(unrelated))
    r18 = tmp_path / "r18.pth"
    torch.save(_torchvision_state(), r18)
    with pytest.raises(
        WeightsMismatchError, match="missing from the weights: layer1.2.conv1.weight"
    ):
        load_pretrained(ResNet(34), str(r18))


def test_non_local_and_se_blocks_are_left_as_initialised_on_imagenet_weights(tmp_path):
    path = tmp_path / "r18.pth"
    state = _torchvision_state()
    torch.save(state, path)
    model = ResNet(18, with_nl=True, with_se=True)
    report = load_pretrained(model, str(path), new_modules=model.added_module_prefixes())
    assert report.missing and all(k.startswith("NL_") or ".se." in k for k in report.missing)
    assert {k.split(".")[0] for k in report.missing} == {
        "NL_2",
        "NL_3",
        "layer1",
        "layer2",
        "layer3",
        "layer4",
    }
    _assert_loaded(model, state)


def test_ibn_net_layout_loads_into_the_ibn_backbone(tmp_path):
    state = _ibn_state()
    assert (
        "layer1.0.bn1.IN.weight" in state
        and "layer3.1.bn1.BN.running_var" in state
        and "layer4.0.bn1.weight" in state
    )
    path = tmp_path / "r18_ibn.pth"
    torch.save(state, path)
    model = ResNet(18, with_ibn=True)
    report = load_pretrained(model, str(path))
    assert report.missing == [] and sorted(report.ignored) == ["fc.bias", "fc.weight"]
    _assert_loaded(model, state)
    with pytest.raises(WeightsMismatchError, match="not in the model: layer1.0.bn1.IN.weight"):
        load_pretrained(ResNet(18), str(path))


def test_published_file_is_found_in_the_hub_cache(hub_dir, no_download):
    hub_dir.mkdir(parents=True)
    state = _torchvision_state()
    torch.save(state, hub_dir / "resnet18-f37072fd.pth")
    backbone = ResNet(18, pretrain=True)
    _assert_loaded(backbone, state)
    assert no_download == []
    os.rename(
        hub_dir / "resnet18-f37072fd.pth", hub_dir / "resnet18-5c106cde.pth"
    )  # the older torchvision name
    assert find_published_file(18, False) == str(hub_dir / "resnet18-5c106cde.pth")


def test_published_ibn_file_is_found_in_the_hub_cache(hub_dir, no_download):
    hub_dir.mkdir(parents=True)
    state = _ibn_state()
    torch.save(state, hub_dir / "resnet18_ibn_a-2f571257.pth")
    backbone = ResNet(18, with_ibn=True, pretrain=True)
    _assert_loaded(backbone, state)
    assert os.path.basename(published_urls(50, True)[0]) == "resnet50_ibn_a-d9d0bb7b.pth"
    assert os.path.basename(published_urls(101, True)[0]) == "resnet101_ibn_a-59ea0ac6.pth"
    assert os.path.basename(published_urls(50, False)[0]) == "resnet50-0676ba61.pth"


def test_no_network_gives_a_clear_message(hub_dir, no_download):
    with pytest.raises(RuntimeError) as info:
        ResNet(50, with_ibn=True, pretrain=True)
    message = str(info.value)
    url = "https://github.com/XingangPan/IBN-Net/releases/download/v1.0/resnet50_ibn_a-d9d0bb7b.pth"
    assert url in message and str(hub_dir / "resnet50_ibn_a-d9d0bb7b.pth") in message
    assert "MODEL.BACKBONE.PRETRAIN_PATH" in message and "no network" in message
    assert no_download == [(url, str(hub_dir / "resnet50_ibn_a-d9d0bb7b.pth"), "d9d0bb7b")]
    with pytest.raises(FileNotFoundError, match="resnet34-b627a593.pth not found in"):
        find_published_file(34, False, download=False)


def test_bad_files_are_clear_errors(tmp_path):
    with pytest.raises(
        ConfigError, match="^MODEL.BACKBONE.PRETRAIN_PATH is not a file: /nowhere/w.pth"
    ):
        build_backbone(
            load_config(
                None,
                [
                    "MODEL.BACKBONE.PRETRAIN",
                    "True",
                    "MODEL.BACKBONE.PRETRAIN_PATH",
                    "/nowhere/w.pth",
                ],
            )
        )
    with pytest.raises(
        ConfigError,
        match=r"^MODEL.BACKBONE.PRETRAIN_PATH is /nowhere/w.pth but MODEL.BACKBONE.PRETRAIN is "
        r"False: nothing would load it",
    ):
        build_backbone(load_config(None, ["MODEL.BACKBONE.PRETRAIN_PATH", "/nowhere/w.pth"]))
    unsafe = tmp_path / "unsafe.pth"
    torch.save({"conv1.weight": torch.zeros(1), "args": argparse.Namespace(lr=0.1)}, unsafe)
    with pytest.raises(
        ValueError,
        match="unsafe.pth: cannot be read as a PyTorch weight file with weights_only=True",
    ):
        read_state_dict(str(unsafe))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pth"):
        read_state_dict(str(junk))
    nested = tmp_path / "nested.pth"
    torch.save({"meta": {"epoch": 1}}, nested)
    with pytest.raises(ValueError, match="holds no tensors"):
        read_state_dict(str(nested))
    with pytest.raises(ValueError, match="no published ImageNet weights for ResNet depth 152"):
        published_urls(152, False)
