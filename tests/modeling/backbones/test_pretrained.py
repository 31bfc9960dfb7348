import argparse
import logging
import os
import urllib.error
from collections import OrderedDict

import pytest
import torch
import torchvision

from reid.config import get_cfg
from reid.modeling.backbones import (
    ResNet,
    build_backbone,
    find_published_file,
    load_pretrained,
    read_state_dict,
)
from reid.modeling.backbones.pretrained import published_urls


def _cfg(**backbone):
    cfg = get_cfg()
    cfg.MODEL.BACKBONE.DEPTH = "18x"
    cfg.MODEL.BACKBONE.PRETRAIN = True
    for key, value in backbone.items():
        cfg.MODEL.BACKBONE[key] = value
    return cfg


def _torchvision_state() -> "OrderedDict[str, torch.Tensor]":
    return torchvision.models.resnet18(num_classes=1000).state_dict()


def _ibn_state() -> "OrderedDict[str, torch.Tensor]":
    """torchvision's resnet18 keys rewritten into IBN-Net's resnet18_ibn_a layout (bn1 of layer1-3 blocks split)."""
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
    with caplog.at_level(logging.INFO, logger="reid.modeling.backbones.pretrained"):
        backbone = build_backbone(_cfg(PRETRAIN_PATH=str(path)))
    _assert_loaded(backbone, state)
    assert no_download == []
    report = load_pretrained(ResNet(18), str(path))
    assert (
        report.missing == []
        and sorted(report.unexpected) == ["fc.bias", "fc.weight"]
        and report.skipped == []
    )
    assert len(report.loaded) == len(state) - 2
    assert "2 unexpected in the file (ignored): fc.weight, fc.bias" in caplog.text
    assert str(path) in caplog.text


def test_module_prefix_and_state_dict_wrapper_are_stripped(tmp_path):
    state = _torchvision_state()
    path = tmp_path / "wrapped.pth.tar"
    torch.save({"state_dict": {"module." + k: v for k, v in state.items()}, "epoch": 3}, path)
    assert set(read_state_dict(str(path))) == set(state)
    model = ResNet(18)
    report = load_pretrained(model, str(path))
    assert report.missing == []
    _assert_loaded(model, state)


def test_missing_and_unexpected_keys_are_reported(tmp_path):
    state = _torchvision_state()
    del state["layer2.1.conv2.weight"]
    state["layer9.extra"] = torch.zeros(3)
    path = tmp_path / "partial.pth"
    torch.save(state, path)
    report = load_pretrained(ResNet(18), str(path))
    assert report.missing == ["layer2.1.conv2.weight"]
    assert sorted(report.unexpected) == ["fc.bias", "fc.weight", "layer9.extra"]
    assert "1 missing in the file (left as initialised): layer2.1.conv2.weight" in report.summary()


def test_shape_mismatch_is_an_error_except_for_the_classifier(tmp_path):
    state = _torchvision_state()
    state["layer1.0.conv1.weight"] = torch.zeros(64, 64, 1, 1)
    bad = tmp_path / "bad.pth"
    torch.save(state, bad)
    with pytest.raises(
        ValueError,
        match=r"'layer1.0.conv1.weight' has shape \(64, 64, 1, 1\) in the file but \(64, 64, 3, 3\) in the model",
    ):
        load_pretrained(ResNet(18), str(bad))
    other_classes = torchvision.models.resnet18(num_classes=10).state_dict()
    good = tmp_path / "ten_classes.pth"
    torch.save(other_classes, good)
    imagenet_model = torchvision.models.resnet18(num_classes=1000)
    fc_before = imagenet_model.fc.weight.detach().clone()
    report = load_pretrained(imagenet_model, str(good))
    assert sorted(report.skipped) == ["fc.bias", "fc.weight"] and report.missing == [
        "fc.weight",
        "fc.bias",
    ]
    torch.testing.assert_close(imagenet_model.fc.weight, fc_before)
    torch.testing.assert_close(imagenet_model.conv1.weight, other_classes["conv1.weight"])


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
    assert report.missing == [] and sorted(report.unexpected) == ["fc.bias", "fc.weight"]
    _assert_loaded(model, state)
    plain_report = load_pretrained(ResNet(18), str(path))
    assert (
        "layer1.0.bn1.weight" in plain_report.missing
        and "layer1.0.bn1.IN.weight" in plain_report.unexpected
    )


def test_published_file_is_found_in_the_hub_cache(hub_dir, no_download):
    hub_dir.mkdir(parents=True)
    state = _torchvision_state()
    torch.save(state, hub_dir / "resnet18-f37072fd.pth")
    backbone = build_backbone(_cfg())
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
    backbone = build_backbone(_cfg(WITH_IBN=True))
    _assert_loaded(backbone, state)
    assert os.path.basename(published_urls(50, True)[0]) == "resnet50_ibn_a-d9d0bb7b.pth"
    assert os.path.basename(published_urls(101, True)[0]) == "resnet101_ibn_a-59ea0ac6.pth"
    assert os.path.basename(published_urls(50, False)[0]) == "resnet50-0676ba61.pth"


def test_no_network_gives_a_clear_message(hub_dir, no_download):
    with pytest.raises(RuntimeError) as info:
        build_backbone(_cfg(DEPTH="50x", WITH_IBN=True))
    message = str(info.value)
    url = "https://github.com/XingangPan/IBN-Net/releases/download/v1.0/resnet50_ibn_a-d9d0bb7b.pth"
    assert url in message and str(hub_dir / "resnet50_ibn_a-d9d0bb7b.pth") in message
    assert "MODEL.BACKBONE.PRETRAIN_PATH" in message and "no network" in message
    assert no_download == [(url, str(hub_dir / "resnet50_ibn_a-d9d0bb7b.pth"), "d9d0bb7b")]
    with pytest.raises(FileNotFoundError, match="resnet34-b627a593.pth not found in"):
        find_published_file(34, False, download=False)


def test_bad_files_are_clear_errors(tmp_path):
    with pytest.raises(
        FileNotFoundError, match="MODEL.BACKBONE.PRETRAIN_PATH: no such file: /nowhere/w.pth"
    ):
        build_backbone(_cfg(PRETRAIN_PATH="/nowhere/w.pth"))
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
