"""LR values at given iterations (hand-computed), the description, errors, the config and resume."""

import io
import math

import pytest
import torch
from torch import nn

from reid.config import ConfigError, InvalidArgument, get_cfg
from reid.solver import (
    CosineSchedule,
    LRSchedule,
    MultiStepSchedule,
    WarmupLRScheduler,
    describe_schedule,
    make_optimizer,
    schedule_table,
)


def _multistep(warmup_iters: int = 5, method: str = "linear", max_epoch: int = 10) -> LRSchedule:
    """x0.1 after epochs 3 and 6 at 10 iterations per epoch, under a warm-up from 0.1."""
    return LRSchedule(
        MultiStepSchedule([3, 6], gamma=0.1, iters_per_epoch=10),
        iters_per_epoch=10,
        max_iters=max_epoch * 10,
        warmup_method=method,
        warmup_factor=0.1,
        warmup_iters=warmup_iters,
    )


def _lrs(
    schedule: LRSchedule,
    n: int = 100,
    base_lr: float = 1.0,
    bias_lr_factor: float = 1.0,
    model: nn.Module = None,
) -> list[list[float]]:
    """The LR of every group in effect during iterations 0..n-1 (stepping once per iteration)."""
    model = model if model is not None else nn.Linear(2, 1, bias=False)
    opt = make_optimizer(model, "SGD", base_lr=base_lr, bias_lr_factor=bias_lr_factor)
    sched = WarmupLRScheduler(opt, schedule)
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
    lrs = _first(_lrs(_multistep(method=method)))
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
    lrs = _first(_lrs(_multistep(warmup_iters=0)))
    assert lrs[0] == 1.0 and lrs[29] == 1.0 and lrs[30] == pytest.approx(0.1)


def test_warmup_multiplies_a_step_inside_it() -> None:
    lrs = _first(_lrs(_multistep(warmup_iters=40)))
    assert lrs[35] == pytest.approx((0.1 + 0.9 * 35 / 40) * 0.1, rel=1e-12)
    assert lrs[40] == pytest.approx(0.1, rel=1e-12)


def _ratio_paper_config():
    """1e-5 -> 1e-3 linearly over 20 epochs, x0.1 at epochs 90 and 130 (counted from epoch 0),
    150 epochs."""
    cfg = get_cfg()
    s = cfg.SOLVER
    s.BASE_LR, s.MAX_EPOCH, s.SCHED, s.STEPS, s.GAMMA = 1e-3, 150, "MultiStepLR", [90, 130], 0.1
    s.WARMUP_METHOD, s.WARMUP_FACTOR, s.WARMUP_EPOCHS = "linear", 0.01, 20
    s.WARMUP_ITERS, s.SCHED_CLOCK = 0, "from_start"
    return cfg


def test_config_maps_the_schedule_keys_ratio_paper_in_epochs() -> None:
    cfg = _ratio_paper_config()
    schedule = LRSchedule(cfg, iters_per_epoch=5)
    assert (schedule.warmup_method, schedule.warmup_factor) == ("linear", 0.01)
    assert (schedule.warmup_iters, schedule.max_iters, schedule.iters_per_epoch) == (100, 750, 5)
    assert isinstance(schedule.main, MultiStepSchedule)
    assert (schedule.main.milestones, schedule.main.gamma) == ([450, 650], 0.1)
    lrs = _first(_lrs(schedule, n=750, base_lr=cfg.SOLVER.BASE_LR))
    assert lrs[0] == pytest.approx(1e-5, rel=1e-12)
    assert lrs[50] == pytest.approx(1e-3 * (0.01 + 0.99 * 0.5), rel=1e-12)
    assert lrs[99] == pytest.approx(1e-3 * (0.01 + 0.99 * 99 / 100), rel=1e-12)
    assert lrs[100] == pytest.approx(1e-3, rel=1e-12) and lrs[449] == pytest.approx(1e-3, rel=1e-12)
    assert lrs[450] == pytest.approx(1e-4, rel=1e-12) and lrs[650] == pytest.approx(1e-5, rel=1e-12)


def test_config_maps_the_cosine_keys() -> None:
    cfg = get_cfg()
    s = cfg.SOLVER
    s.SCHED, s.BASE_LR, s.ETA_MIN_LR, s.DELAY_EPOCHS, s.MAX_EPOCH = (
        "CosineAnnealingLR",
        0.1,
        0.01,
        2,
        6,
    )
    s.WARMUP_ITERS, s.WARMUP_FACTOR, s.WARMUP_METHOD = 3, 0.5, "exp"
    s.SCHED_CLOCK = "from_start"
    schedule = LRSchedule(cfg, iters_per_epoch=10)
    assert isinstance(schedule.main, CosineSchedule)
    assert (schedule.main.delay_iters, schedule.main.max_iters) == (20, 60)
    assert schedule.main.update_period == 1
    assert schedule.main.min_factor == pytest.approx(0.1, rel=1e-12)
    assert (schedule.warmup_iters, schedule.warmup_factor, schedule.warmup_method) == (
        3,
        0.5,
        "exp",
    )


def test_cosine_with_delay() -> None:
    # D = 20, M = 60, ETA_MIN = 0.001 for BASE_LR 0.01
    schedule = LRSchedule(CosineSchedule(20, 60, 0.1), iters_per_epoch=10, max_iters=60)
    lrs = _first(_lrs(schedule, n=61, base_lr=0.01))
    # D = 20, M = 60, ETA_MIN = 0.001
    assert lrs[0] == 0.01 and lrs[19] == 0.01 and lrs[20] == pytest.approx(0.01, rel=1e-12)
    assert lrs[30] == pytest.approx(0.001 + 0.009 * (1 + math.sqrt(0.5)) / 2, rel=1e-12)
    assert lrs[40] == pytest.approx(0.0055, rel=1e-12)
    assert lrs[59] == pytest.approx(
        0.001 + 0.009 * (1 + math.cos(math.pi * 39 / 40)) / 2, rel=1e-12
    )
    assert lrs[60] == pytest.approx(0.001, rel=1e-12)


def test_cosine_under_warmup() -> None:
    schedule = LRSchedule(
        CosineSchedule(0, 20, 0.0), 10, max_iters=20, warmup_factor=0.1, warmup_iters=5
    )
    lrs = _first(_lrs(schedule, n=20))
    assert lrs[2] == pytest.approx(0.46 * (1 + math.cos(math.pi * 2 / 20)) / 2, rel=1e-12)
    assert lrs[10] == pytest.approx(0.5, rel=1e-12)


def test_groups_keep_their_lr_ratio_including_eta_min() -> None:
    schedule = LRSchedule(
        CosineSchedule(0, 20, 0.1), 10, max_iters=20, warmup_factor=0.1, warmup_iters=4
    )
    lrs = _lrs(schedule, n=21, base_lr=0.1, bias_lr_factor=10.0, model=nn.Linear(2, 1))
    for weight_lr, bias_lr in lrs:
        assert bias_lr == pytest.approx(10 * weight_lr, rel=1e-12)
    assert lrs[0][0] == pytest.approx(0.01, rel=1e-12)
    assert lrs[20] == pytest.approx([0.01, 0.1], rel=1e-12)


def test_describe_schedule_lists_milestones() -> None:
    cfg = _ratio_paper_config()
    cfg.SOLVER.STEPS = [90, 130, 200]
    text = describe_schedule(cfg, iters_per_epoch=5)
    schedule = LRSchedule(
        MultiStepSchedule([90, 130, 200], 0.1, iters_per_epoch=5),
        iters_per_epoch=5,
        max_iters=750,
        warmup_factor=0.01,
        warmup_iters=100,
    )
    assert schedule_table(schedule, base_lr=1e-3) == text
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

    text = schedule_table(Halves(), base_lr=2.0)
    cfg = get_cfg()
    cfg.SOLVER.BASE_LR = 2.0
    assert describe_schedule(cfg, 4, Halves()) == text
    assert "LR schedule: halves every epoch." in text
    lrs = [float(line.split()[3]) for line in text.splitlines()[3:]]
    assert lrs == [2.0, 1.0, 1.0]


def test_plain_arguments_are_checked() -> None:
    with pytest.raises(InvalidArgument, match=r"step_epochs must be increasing .*, got \[6, 3\]"):
        MultiStepSchedule([6, 3], 0.1, iters_per_epoch=10)
    with pytest.raises(InvalidArgument, match="gamma must be > 0, got 0"):
        MultiStepSchedule([3], 0, iters_per_epoch=10)
    with pytest.raises(InvalidArgument, match=r"delay_iters must lie in \[0, max_iters = 10\)"):
        CosineSchedule(10, 10, 0.0)
    with pytest.raises(InvalidArgument, match=r"min_factor must lie in \[0, 1\], got 2"):
        CosineSchedule(0, 10, 2.0)
    main = MultiStepSchedule([3], 0.1, iters_per_epoch=10)
    with pytest.raises(InvalidArgument, match="warmup_method must be a registered warm-up"):
        LRSchedule(main, 10, 100, warmup_method="cosine")
    with pytest.raises(InvalidArgument, match=r"warmup_factor must be >= 0 \(> 0 for the exp"):
        LRSchedule(main, 10, 100, warmup_method="exp", warmup_factor=0.0)
    with pytest.raises(InvalidArgument, match="iters_per_epoch must be a positive int, got 0"):
        LRSchedule(main, 0, 100)


def _valid_config():
    cfg = get_cfg()
    s = cfg.SOLVER
    s.SCHED, s.MAX_EPOCH, s.STEPS, s.WARMUP_ITERS, s.WARMUP_FACTOR = (
        "MultiStepLR",
        10,
        [3, 6],
        5,
        0.1,
    )
    return cfg


def test_config_errors_name_the_keys() -> None:
    cfg = _valid_config()
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
            r"SOLVER.WARMUP_METHOD must be a registered warm-up \(constant, exp, linear\), "
            r"got 'cosine'",
        ),
        ("WARMUP_FACTOR", -1.0, r"SOLVER.WARMUP_FACTOR must be >= 0"),
        ("GAMMA", 0.0, "SOLVER.GAMMA must be > 0"),
        ("STEPS", [6, 3], r"SOLVER.STEPS must be increasing"),
        ("MAX_EPOCH", 0, r"SOLVER.MAX_EPOCH must be >= 1, got 0"),
    ]:
        cfg = _valid_config()
        cfg.SOLVER[key] = value
        with pytest.raises(ConfigError, match=match):
            describe_schedule(cfg, 10)
    cfg = _valid_config()
    cfg.SOLVER.SCHED, cfg.SOLVER.DELAY_EPOCHS = "CosineAnnealingLR", 10
    cfg.SOLVER.SCHED_CLOCK = "from_start"
    with pytest.raises(ConfigError, match=r"SOLVER.DELAY_EPOCHS \(10\) .* SOLVER.MAX_EPOCH \(10\)"):
        describe_schedule(cfg, 10)
    cfg.SOLVER.SCHED_CLOCK = "after_warmup"
    with pytest.raises(
        ConfigError,
        match=r"^SOLVER.MAX_EPOCH \(10\) leaves no epoch for the cosine decay after the warm-up "
        r"\(1 epochs\) and SOLVER.DELAY_EPOCHS \(10\)",
    ):
        describe_schedule(cfg, 10)
    cfg.SOLVER.SCHED_CLOCK = "fastreid"
    with pytest.raises(
        ConfigError,
        match=r"^SOLVER.SCHED_CLOCK must be one of \['after_warmup', 'from_start'\], "
        r"got 'fastreid'",
    ):
        describe_schedule(cfg, 10)
    cfg = _valid_config()
    cfg.SOLVER.STEPS = [0, 3]
    with pytest.raises(
        ConfigError, match=r"^SOLVER.STEPS \[0, 3\]: on the 'after_warmup' clock .* must be >= 1"
    ):
        describe_schedule(cfg, 10)
    cfg.SOLVER.SCHED_CLOCK = "from_start"  # counted from epoch 0, a step at 0 is allowed
    assert "step x0.1 (epoch 0)" in describe_schedule(cfg, 10)
    cfg = _valid_config()
    cfg.SOLVER.SCHED, cfg.SOLVER.ETA_MIN_LR = "CosineAnnealingLR", 2.0
    with pytest.raises(ConfigError, match="SOLVER.ETA_MIN_LR"):
        describe_schedule(cfg, 10)
    with pytest.raises(ValueError, match="iters_per_epoch must be a positive int, got 0"):
        describe_schedule(_valid_config(), 0)


def _run(n_iters: int, resume_at: int = -1):
    """Train a tiny model for n_iters; optionally save and rebuild everything at resume_at."""
    schedule = LRSchedule(
        CosineSchedule(delay_iters=5, max_iters=20, min_factor=1e-3 / 0.05),
        iters_per_epoch=5,
        max_iters=20,
        warmup_factor=0.1,
        warmup_iters=6,
    )

    def build():
        torch.manual_seed(0)
        model = nn.Linear(3, 1)
        opt = make_optimizer(model, "SGD", base_lr=0.05, bias_lr_factor=2.0)
        return model, opt, WarmupLRScheduler(opt, schedule)

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
    opt = make_optimizer(nn.Linear(2, 1, bias=False), "SGD", base_lr=1.0)
    sched = WarmupLRScheduler(opt, _multistep())
    state = dict(sched.state_dict(), last_epoch=30)
    sched.load_state_dict(state)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1) and sched.get_last_lr() == [
        pytest.approx(0.1)
    ]
    with pytest.raises(ValueError, match="2 param groups, the optimizer has 1"):
        sched.load_state_dict(dict(state, base_lrs=[1.0, 1.0]))
    with pytest.raises(KeyError, match="missing"):
        sched.load_state_dict({"last_epoch": 3})
