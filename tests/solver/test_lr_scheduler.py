"""LR values at given iterations (hand-computed), the description, errors and resume."""

import io
import math

import pytest
import torch
from torch import nn

from reid.config import ConfigError, get_cfg
from reid.solver import build_lr_scheduler, build_optimizer, describe_schedule


def _cfg(
    base_lr=1.0,
    sched="MultiStepLR",
    method="linear",
    factor=0.1,
    warmup_iters=5,
    max_epoch=10,
    steps=(3, 6),
):
    cfg = get_cfg()
    s = cfg.SOLVER
    s.OPT, s.BASE_LR, s.SCHED = "SGD", base_lr, sched
    s.WARMUP_METHOD, s.WARMUP_FACTOR, s.WARMUP_ITERS = method, factor, warmup_iters
    s.MAX_EPOCH, s.STEPS, s.GAMMA = max_epoch, list(steps), 0.1
    s.BIAS_LR_FACTOR, s.HEADS_LR_FACTOR = 1.0, 1.0
    return cfg


def _lrs(
    cfg, iters_per_epoch: int = 10, n: int = 100, model: nn.Module = None
) -> list[list[float]]:
    """The LR of every group in effect during iterations 0..n-1 (stepping once per iteration)."""
    model = model if model is not None else nn.Linear(2, 1, bias=False)
    opt = build_optimizer(cfg, model)
    sched = build_lr_scheduler(cfg, opt, iters_per_epoch)
    out = []
    for _ in range(n):
        out.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    return out


def _first(lrs: list[list[float]]) -> list[float]:
    return [row[0] for row in lrs]


@pytest.mark.parametrize(
    "method, expected",
    [
        # f + (1 - f) * i / W, with f = 0.1, W = 5
        ("linear", {0: 0.1, 1: 0.28, 2: 0.46, 4: 0.82, 5: 1.0}),
        ("constant", {0: 0.1, 2: 0.1, 4: 0.1, 5: 1.0}),
        # f ** (1 - i / W)
        ("exp", {0: 0.1, 2: 10**-0.6, 4: 10**-0.2, 5: 1.0}),
    ],
)
def test_warmup_methods_then_multistep(method, expected) -> None:
    lrs = _first(_lrs(_cfg(method=method)))
    for i, value in expected.items():
        assert lrs[i] == pytest.approx(value, rel=1e-12), i
    # steps at epochs 3 and 6 with 10 iterations per epoch: iterations 30 and 60
    assert lrs[29] == pytest.approx(1.0) and lrs[30] == pytest.approx(0.1)
    assert (
        lrs[59] == pytest.approx(0.1)
        and lrs[60] == pytest.approx(0.01)
        and lrs[99] == pytest.approx(0.01)
    )


def test_no_warmup_starts_at_base() -> None:
    lrs = _first(_lrs(_cfg(warmup_iters=0)))
    assert lrs[0] == 1.0 and lrs[29] == 1.0 and lrs[30] == pytest.approx(0.1)


def test_warmup_multiplies_a_step_inside_it() -> None:
    lrs = _first(_lrs(_cfg(warmup_iters=40)))
    assert lrs[35] == pytest.approx((0.1 + 0.9 * 35 / 40) * 0.1, rel=1e-12)
    assert lrs[40] == pytest.approx(0.1, rel=1e-12)


def test_ratio_paper_schedule_in_epochs() -> None:
    """1e-5 -> 1e-3 linearly over 20 epochs, x0.1 at epochs 90 and 130, 150 epochs."""
    cfg = _cfg(base_lr=1e-3, factor=0.01, warmup_iters=0, max_epoch=150, steps=(90, 130))
    cfg.SOLVER.WARMUP_EPOCHS = 20
    lrs = _first(_lrs(cfg, iters_per_epoch=5, n=750))
    assert lrs[0] == pytest.approx(1e-5, rel=1e-12)
    assert lrs[50] == pytest.approx(1e-3 * (0.01 + 0.99 * 0.5), rel=1e-12)
    assert lrs[99] == pytest.approx(1e-3 * (0.01 + 0.99 * 99 / 100), rel=1e-12)
    assert lrs[100] == pytest.approx(1e-3, rel=1e-12) and lrs[449] == pytest.approx(1e-3, rel=1e-12)
    assert lrs[450] == pytest.approx(1e-4, rel=1e-12) and lrs[650] == pytest.approx(1e-5, rel=1e-12)


def test_cosine_with_delay() -> None:
    cfg = _cfg(base_lr=0.01, sched="CosineAnnealingLR", warmup_iters=0, max_epoch=6)
    cfg.SOLVER.DELAY_EPOCHS, cfg.SOLVER.ETA_MIN_LR = 2, 0.001
    lrs = _first(_lrs(cfg, iters_per_epoch=10, n=61))
    # D = 20, M = 60, ETA_MIN = 0.001
    assert lrs[0] == 0.01 and lrs[19] == 0.01 and lrs[20] == pytest.approx(0.01, rel=1e-12)
    assert lrs[30] == pytest.approx(0.001 + 0.009 * (1 + math.sqrt(0.5)) / 2, rel=1e-12)
    assert lrs[40] == pytest.approx(0.0055, rel=1e-12)
    assert lrs[59] == pytest.approx(
        0.001 + 0.009 * (1 + math.cos(math.pi * 39 / 40)) / 2, rel=1e-12
    )
    assert lrs[60] == pytest.approx(0.001, rel=1e-12)


def test_cosine_under_warmup() -> None:
    cfg = _cfg(base_lr=1.0, sched="CosineAnnealingLR", warmup_iters=5, max_epoch=2)
    cfg.SOLVER.DELAY_EPOCHS, cfg.SOLVER.ETA_MIN_LR = 0, 0.0
    lrs = _first(_lrs(cfg, iters_per_epoch=10, n=20))
    assert lrs[2] == pytest.approx(0.46 * (1 + math.cos(math.pi * 2 / 20)) / 2, rel=1e-12)
    assert lrs[10] == pytest.approx(0.5, rel=1e-12)


def test_groups_keep_their_lr_ratio_including_eta_min() -> None:
    cfg = _cfg(base_lr=0.1, sched="CosineAnnealingLR", warmup_iters=4, max_epoch=2)
    cfg.SOLVER.BIAS_LR_FACTOR, cfg.SOLVER.ETA_MIN_LR = 10.0, 0.01
    lrs = _lrs(cfg, iters_per_epoch=10, n=21, model=nn.Linear(2, 1))
    for weight_lr, bias_lr in lrs:
        assert bias_lr == pytest.approx(10 * weight_lr, rel=1e-12)
    assert lrs[0][0] == pytest.approx(0.01, rel=1e-12)
    assert lrs[20] == pytest.approx([0.01, 0.1], rel=1e-12)


def test_describe_schedule_lists_milestones() -> None:
    cfg = _cfg(base_lr=1e-3, factor=0.01, warmup_iters=0, max_epoch=150, steps=(90, 130, 200))
    cfg.SOLVER.WARMUP_EPOCHS = 20
    text = describe_schedule(cfg, iters_per_epoch=5)
    rows = {}
    for line in text.splitlines()[3:]:
        it, epoch, factor, lr, event = line.split(None, 4)
        rows[int(it)] = (float(lr), event)
    assert sorted(rows) == [0, 100, 450, 650, 749, 1000]
    assert rows[0][0] == pytest.approx(1e-5) and rows[100] == (pytest.approx(1e-3), "warm-up done")
    assert rows[450][0] == pytest.approx(1e-4) and rows[650][0] == pytest.approx(1e-5)
    assert rows[749] == (pytest.approx(1e-5), "last iteration")
    assert "never reached" in rows[1000][1]
    assert "linear warm-up from 0.01 x base over 100 iterations (20 epochs)" in text


def test_describe_schedule_takes_another_schedule_object() -> None:
    class Halves:
        iters_per_epoch, max_iters = 4, 8

        def factor(self, i: int) -> float:
            return 0.5 ** (i // 4)

        def events(self):
            return [(0, "start"), (4, "halved"), (7, "last iteration")]

        def summary(self) -> str:
            return "halves every epoch"

    text = describe_schedule(_cfg(base_lr=2.0), 4, Halves())
    assert "LR schedule: halves every epoch." in text
    lrs = [float(line.split()[3]) for line in text.splitlines()[3:]]
    assert lrs == [2.0, 1.0, 1.0]


def test_config_errors() -> None:
    cfg = _cfg()
    cfg.SOLVER.WARMUP_EPOCHS = 2
    with pytest.raises(
        ConfigError, match="SOLVER.WARMUP_ITERS .* or SOLVER.WARMUP_EPOCHS .* not both"
    ):
        describe_schedule(cfg, 10)
    for key, value, match in [
        ("SCHED", "StepLR", r"SOLVER.SCHED: .*'StepLR'.*CosineAnnealingLR, MultiStepLR"),
        (
            "WARMUP_METHOD",
            "cosine",
            r"SOLVER.WARMUP_METHOD: unknown 'cosine'; registered: constant, exp, linear",
        ),
        ("GAMMA", 0.0, "SOLVER.GAMMA must be > 0"),
        ("STEPS", [6, 3], r"SOLVER.STEPS must be increasing"),
    ]:
        cfg = _cfg()
        cfg.SOLVER[key] = value
        with pytest.raises(ConfigError, match=match):
            describe_schedule(cfg, 10)
    cfg = _cfg(sched="CosineAnnealingLR")
    cfg.SOLVER.DELAY_EPOCHS = 10
    with pytest.raises(ConfigError, match=r"SOLVER.DELAY_EPOCHS \(10\) .* SOLVER.MAX_EPOCH \(10\)"):
        describe_schedule(cfg, 10)
    cfg = _cfg(sched="CosineAnnealingLR")
    cfg.SOLVER.ETA_MIN_LR = 2.0
    with pytest.raises(ConfigError, match="SOLVER.ETA_MIN_LR"):
        describe_schedule(cfg, 10)
    with pytest.raises(ValueError, match="iters_per_epoch must be a positive int, got 0"):
        describe_schedule(_cfg(), 0)


def _run(n_iters: int, resume_at: int = -1):
    """Train a tiny model for n_iters; optionally save and rebuild everything at resume_at."""
    cfg = _cfg(base_lr=0.05, sched="CosineAnnealingLR", warmup_iters=6, max_epoch=4)
    cfg.SOLVER.DELAY_EPOCHS, cfg.SOLVER.ETA_MIN_LR, cfg.SOLVER.BIAS_LR_FACTOR = 1, 1e-3, 2.0

    def build():
        torch.manual_seed(0)
        model = nn.Linear(3, 1)
        opt = build_optimizer(cfg, model)
        return model, opt, build_lr_scheduler(cfg, opt, iters_per_epoch=5)

    model, opt, sched = build()
    data = torch.Generator().manual_seed(1)
    xs = [torch.randn(4, 3, generator=data) for _ in range(n_iters)]
    lrs = []
    for i in range(n_iters):
        if i == resume_at:
            buf = io.BytesIO()
            torch.save(
                {"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict()},
                buf,
            )
            buf.seek(0)
            state = torch.load(buf, weights_only=True)
            model, opt, sched = build()
            model.load_state_dict(state["model"])
            sched.load_state_dict(state["sched"])
            opt.load_state_dict(state["opt"])
        lrs.append([g["lr"] for g in opt.param_groups])
        opt.zero_grad()
        model(xs[i]).pow(2).mean().backward()
        opt.step()
        sched.step()
    return model, lrs, sched


def test_state_dict_round_trip_mid_schedule_equals_uninterrupted() -> None:
    ref_model, ref_lrs, ref_sched = _run(20)
    model, lrs, sched = _run(20, resume_at=8)
    assert lrs == ref_lrs
    assert sched.state_dict() == ref_sched.state_dict()
    for a, b in zip(ref_model.parameters(), model.parameters()):
        assert torch.equal(a, b)


def test_load_state_dict_sets_optimizer_lrs_and_checks_groups() -> None:
    cfg = _cfg()
    opt = build_optimizer(cfg, nn.Linear(2, 1, bias=False))
    sched = build_lr_scheduler(cfg, opt, 10)
    state = dict(sched.state_dict(), last_epoch=30)
    sched.load_state_dict(state)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1) and sched.get_last_lr() == [
        pytest.approx(0.1)
    ]
    with pytest.raises(ValueError, match="2 param groups, the optimizer has 1"):
        sched.load_state_dict(dict(state, base_lrs=[1.0, 1.0]))
    with pytest.raises(KeyError, match="missing"):
        sched.load_state_dict({"last_epoch": 3})
