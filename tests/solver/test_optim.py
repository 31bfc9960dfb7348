"""Parameter groups, the param_groups() convention, optimizer options, freezing and the config."""

import pytest
import torch
from torch import nn

from reid.config import ConfigError, InvalidArgument, get_cfg
from reid.solver import build_optimizer, group_names, make_optimizer


class Centers(nn.Module):
    """A loss holding learnable centers that asks for its own LR and no weight decay."""

    def __init__(self) -> None:
        super().__init__()
        self.centers = nn.Parameter(torch.zeros(3, 4))

    def param_groups(self) -> list[dict]:
        return [{"params": [self.centers], "lr": 0.5, "weight_decay": 0.0, "name": "centers"}]


class Head(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.bnneck = nn.BatchNorm1d(4)
        self.classifier = nn.Linear(4, 3)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.GroupNorm(2, 4)
        )
        self.heads = Head()
        self.loss_set = nn.ModuleDict({"center": Centers()})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.backbone(x).mean(dim=(2, 3))
        return (
            self.heads.classifier(self.heads.bnneck(f)).sum()
            + self.loss_set["center"].centers.sum()
        )


# The groups' LRs and weight decays of most tests.
GROUPS = dict(
    base_lr=0.1,
    bias_lr_factor=2.0,
    heads_lr_factor=10.0,
    weight_decay=1e-3,
    weight_decay_norm=0.0,
    weight_decay_bias=5e-4,
)


def _group_of(opt: torch.optim.Optimizer) -> dict[int, dict]:
    out: dict[int, dict] = {}
    for group in opt.param_groups:
        for p in group["params"]:
            assert id(p) not in out, "a parameter sits in two groups"
            out[id(p)] = group
    return out


def test_group_membership_lr_and_decay() -> None:
    model = Net()
    opt = make_optimizer(model, "SGD", **GROUPS)
    groups = _group_of(opt)
    assert set(groups) == {id(p) for p in model.parameters()}
    conv, bn, gn = model.backbone[0], model.backbone[1], model.backbone[3]
    # as in fastreid, a normalisation layer's bias has the bias decay, its weight the norm decay
    expected = {
        conv.weight: ("body/weight", 0.1, 1e-3),
        conv.bias: ("body/bias", 0.2, 5e-4),
        bn.weight: ("body/norm_weight", 0.1, 0.0),
        bn.bias: ("body/norm_bias", 0.2, 5e-4),
        gn.weight: ("body/norm_weight", 0.1, 0.0),
        gn.bias: ("body/norm_bias", 0.2, 5e-4),
        model.heads.classifier.weight: ("heads/weight", 1.0, 1e-3),
        model.heads.classifier.bias: ("heads/bias", 2.0, 5e-4),
        model.heads.bnneck.weight: ("heads/norm_weight", 1.0, 0.0),
        model.heads.bnneck.bias: ("heads/norm_bias", 2.0, 5e-4),
        model.loss_set["center"].centers: ("centers", 0.5, 0.0),
    }
    for param, (name, lr, wd) in expected.items():
        group = groups[id(param)]
        assert group["name"] == name
        assert group["lr"] == pytest.approx(lr, rel=1e-12)
        assert group["weight_decay"] == wd
    assert sorted(group_names(opt)) == sorted(
        [
            "centers",
            "body/weight",
            "body/bias",
            "body/norm_weight",
            "body/norm_bias",
            "heads/weight",
            "heads/bias",
            "heads/norm_weight",
            "heads/norm_bias",
        ]
    )


def test_custom_group_takes_optimizer_defaults_and_gets_a_name() -> None:
    class Loose(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.ones(2))

        def param_groups(self) -> list[dict]:
            return [{"params": self.w}]

    model = nn.Module()
    model.loss = Loose()
    model.fc = nn.Linear(2, 2)
    opt = make_optimizer(model, "SGD", **GROUPS)
    group = _group_of(opt)[id(model.loss.w)]
    assert group["lr"] == 0.1 and group["weight_decay"] == 1e-3
    assert group["name"] == "loss/param_groups[0]"
    assert len(group["params"]) == 1


def test_shared_parameter_is_added_once() -> None:
    model = nn.Module()
    model.a = nn.Linear(3, 3)
    model.b = nn.Linear(3, 3)
    model.b.weight = model.a.weight
    opt = make_optimizer(model, "SGD", **GROUPS)
    assert sum(len(g["params"]) for g in opt.param_groups) == 3


def test_ddp_prefix_still_finds_heads() -> None:
    wrapper = nn.Module()
    wrapper.module = Net()
    opt = make_optimizer(wrapper, "SGD", **GROUPS)
    assert _group_of(opt)[id(wrapper.module.heads.classifier.weight)]["name"] == "heads/weight"


def test_param_groups_errors() -> None:
    class Foreign(nn.Module):
        def param_groups(self) -> list[dict]:
            return [{"params": [nn.Parameter(torch.ones(1))]}]

    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.ones(1))

        def param_groups(self) -> list[dict]:
            return [{"params": [self.w]}, {"params": [self.w]}]

    class NoParams(nn.Module):
        def param_groups(self) -> list[dict]:
            return [{"lr": 1.0}]

    for cls, match in [
        (Foreign, "not a parameter of the model"),
        (Twice, "already claimed"),
        (NoParams, "'params' entry"),
    ]:
        model = nn.Module()
        model.loss = cls()
        with pytest.raises((ValueError, TypeError), match=match) as info:
            make_optimizer(model, "SGD", **GROUPS)
        assert "module 'loss'" in str(info.value)


def test_optimizer_types_and_options() -> None:
    opt = make_optimizer(Net(), "SGD", **GROUPS, momentum=0.9, nesterov=True)
    assert isinstance(opt, torch.optim.SGD)
    assert opt.defaults["momentum"] == 0.9 and opt.defaults["nesterov"] is True
    assert all(g["momentum"] == 0.9 and g["nesterov"] for g in opt.param_groups)
    assert type(make_optimizer(Net(), "Adam", **GROUPS)) is torch.optim.Adam
    assert type(make_optimizer(Net(), "AdamW", **GROUPS)) is torch.optim.AdamW


def test_sgd_nesterov_steps_match_hand_computation() -> None:
    model = nn.Module()
    model.w = nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    opt = make_optimizer(model, "SGD", **{**GROUPS, "weight_decay": 0.01}, nesterov=True)
    lr, mom, wd = 0.1, 0.9, 0.01
    p, buf = 1.0, None
    for grad in (0.5, -0.25):
        model.w.grad = torch.tensor([grad], dtype=torch.float64)
        opt.step()
        d = grad + wd * p
        buf = d if buf is None else mom * buf + d
        p -= lr * (d + mom * buf)
        assert model.w.item() == pytest.approx(p, abs=1e-14)


def test_adamw_decay_is_decoupled_and_per_group() -> None:
    model = Net()
    opt = make_optimizer(model, "AdamW", **GROUPS)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    w = "heads.classifier.weight"
    assert torch.allclose(model.get_parameter(w), before[w] * (1 - 1.0 * 1e-3), rtol=0, atol=1e-7)
    assert torch.equal(model.heads.bnneck.weight, before["heads.bnneck.weight"])


def test_frozen_parameters_are_in_the_optimizer_and_do_not_move() -> None:
    model = Net()
    for p in model.backbone.parameters():
        p.requires_grad_(False)
    opt = make_optimizer(model, "SGD", **GROUPS)
    assert set(_group_of(opt)) == {id(p) for p in model.parameters()}
    frozen = [p.detach().clone() for p in model.backbone.parameters()]
    head_before = model.heads.classifier.weight.detach().clone()
    x = torch.randn(2, 3, 6, 6)
    for _ in range(3):
        opt.zero_grad()
        model(x).backward()
        opt.step()
    assert all(torch.equal(a, b) for a, b in zip(frozen, model.backbone.parameters()))
    assert not torch.equal(head_before, model.heads.classifier.weight)

    for p in model.backbone.parameters():
        p.requires_grad_(True)
    opt.zero_grad()
    model(x).backward()
    opt.step()
    assert not torch.equal(frozen[0], model.backbone[0].weight)


def test_bad_arguments() -> None:
    with pytest.raises(
        InvalidArgument, match=r"opt must name .* \(Adam, AdamW, SGD\), got 'Adamax'"
    ):
        make_optimizer(Net(), "Adamax", **GROUPS)
    with pytest.raises(InvalidArgument, match="nesterov True needs a momentum > 0"):
        make_optimizer(Net(), "SGD", **GROUPS, momentum=0.0, nesterov=True)
    with pytest.raises(ValueError, match="no parameters"):
        make_optimizer(nn.ReLU(), "SGD", **GROUPS)


def test_config_maps_every_key() -> None:
    cfg = get_cfg()
    s = cfg.SOLVER
    s.OPT, s.BASE_LR, s.BIAS_LR_FACTOR, s.HEADS_LR_FACTOR = "SGD", 0.1, 2.0, 10.0
    s.WEIGHT_DECAY, s.WEIGHT_DECAY_NORM, s.WEIGHT_DECAY_BIAS = 1e-3, 0.0, 5e-4
    s.MOMENTUM, s.NESTEROV = 0.8, True
    torch.manual_seed(0)
    from_config = build_optimizer(cfg, Net())
    torch.manual_seed(0)
    plain = make_optimizer(Net(), "SGD", **GROUPS, momentum=0.8, nesterov=True)
    assert type(from_config) is torch.optim.SGD
    assert from_config.defaults == plain.defaults
    strip = [{k: v for k, v in g.items() if k != "params"} for g in plain.param_groups]
    assert [
        {k: v for k, v in g.items() if k != "params"} for g in from_config.param_groups
    ] == strip


def test_config_errors_name_the_key() -> None:
    cfg = get_cfg()
    cfg.SOLVER.OPT = "Adamax"
    with pytest.raises(ConfigError, match=r"SOLVER.OPT must name .*Adam, AdamW, SGD.*'Adamax'"):
        build_optimizer(cfg, Net())
    cfg = get_cfg()
    cfg.SOLVER.OPT, cfg.SOLVER.NESTEROV, cfg.SOLVER.MOMENTUM = "SGD", True, 0.0
    with pytest.raises(ConfigError, match="SOLVER.NESTEROV True needs a momentum > 0"):
        build_optimizer(cfg, Net())
    cfg.SOLVER.NESTEROV, cfg.SOLVER.MOMENTUM = False, -0.5
    with pytest.raises(ConfigError, match="SOLVER.MOMENTUM must be >= 0, got -0.5"):
        build_optimizer(cfg, Net())


@pytest.mark.parametrize("key", ["WEIGHT_DECAY", "WEIGHT_DECAY_NORM", "WEIGHT_DECAY_BIAS"])
def test_a_negative_weight_decay_is_an_error_naming_its_key(key: str) -> None:
    cfg = get_cfg()
    cfg.SOLVER[key] = -1.0
    with pytest.raises(ConfigError) as info:
        build_optimizer(cfg, Net())
    assert str(info.value) == f"SOLVER.{key} must be >= 0, got -1.0"


@pytest.mark.parametrize("opt", ["Adam", "AdamW", "SGD"])
def test_each_implementation_takes_the_same_step(opt: str) -> None:
    def stepped(impl: str) -> tuple[torch.optim.Optimizer, list[torch.Tensor]]:
        torch.manual_seed(0)
        net = Net()
        optimizer = make_optimizer(net, opt, base_lr=0.1, opt_impl=impl)
        for _ in range(3):
            optimizer.zero_grad()
            net(torch.randn(4, 3, 5, 5)).pow(2).backward()
            optimizer.step()
        return optimizer, [p.detach().clone() for p in net.parameters()]

    reference, weights = stepped("for_loop")
    assert reference.defaults["foreach"] is False
    for impl, flags in (("foreach", (None, True)), ("fused", (True, None)), ("auto", (None, None))):
        optimizer, other = stepped(impl)
        assert (optimizer.defaults["fused"], optimizer.defaults["foreach"]) == flags, impl
        for a, b in zip(weights, other):
            # Steps of 0.1; Adam's near-zero moments make the last digits order-dependent.
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_an_unknown_or_unavailable_implementation_is_an_error() -> None:
    cfg = get_cfg()
    cfg.SOLVER.OPT_IMPL = "fastest"
    with pytest.raises(ConfigError, match=r"SOLVER.OPT_IMPL must be one of \['auto', 'fused'"):
        build_optimizer(cfg, Net())

    from reid.solver.optim import OPTIMIZER_REGISTRY

    @OPTIMIZER_REGISTRY.register(name="PlainSGD")
    def plain_sgd(param_groups, lr, weight_decay, momentum=0.9, nesterov=False):
        return torch.optim.SGD(param_groups, lr=lr)

    try:
        assert make_optimizer(Net(), "PlainSGD", opt_impl="auto").defaults["fused"] is None
        with pytest.raises(InvalidArgument, match="'fused' is not available for optimizer"):
            make_optimizer(Net(), "PlainSGD", opt_impl="fused")
    finally:
        OPTIMIZER_REGISTRY._obj_map.pop("PlainSGD")
