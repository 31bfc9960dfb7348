"""Two CPU processes with gloo: a non-finite loss on one process stops both (none is left waiting
for the other in a collective) before any later checkpoint."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.slow  # end-to-end trainings

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    sys.path.insert(0, {root!r})
    from reid.config import load_config
    from reid.engine import DefaultTrainer, default_setup, launch
    from reid.engine.train_loop import HookBase
    from reid.utils import comm

    class PoisonRank1(HookBase):
        def before_step(self):
            if comm.get_rank() == 1 and self.trainer.iter == 2:
                model = self.trainer.model
                original = model.losses

                def poisoned(outputs, targets, weights=None):
                    # A NaN value with finite gradients: the other process's losses stay
                    # finite, only the agreement between the processes stops it.
                    values = original(outputs, targets, weights)
                    values["loss_cls"] = values["loss_cls"] + float("nan")
                    return values

                model.losses = poisoned

    def main(opts, out):
        cfg = default_setup(load_config(None, opts))
        trainer = DefaultTrainer(cfg)
        trainer.register_hooks([PoisonRank1()])
        try:
            trainer.train()
        except FloatingPointError as e:
            with open(os.path.join(out, "error_rank%d.txt" % comm.get_rank()), "w") as f:
                f.write(str(e))
            return

    if __name__ == "__main__":
        opts, out, url = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
        launch(main, 2, dist_url=url, args=(opts, out))
    """
)


def test_a_non_finite_loss_on_one_process_stops_both(tmp_path, tiny_opts, free_port):
    out = tmp_path / "ddp"
    out.mkdir()
    script = tmp_path / "run_ddp.py"
    script.write_text(SCRIPT.format(root=ROOT))
    opts = [
        *tiny_opts,
        "OUTPUT_DIR",
        str(out),
        "SOLVER.IMS_PER_BATCH",
        "16",
        "SOLVER.MAX_EPOCH",
        "3",
        "LOG_PERIOD",
        "2",
        "SOLVER.CHECKPOINT_PERIOD",
        "1",
        "TEST.EVAL_PERIOD",
        "0",
    ]
    url = f"tcp://127.0.0.1:{free_port()}"
    proc = subprocess.run(
        [sys.executable, str(script), json.dumps(opts), str(out), url],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    errors = [(out / f"error_rank{r}.txt").read_text() for r in (0, 1)]
    # 2 iterations per epoch (8 images per process): the third is epoch 2's first.
    assert errors[1] == (
        "Loss term 'loss_cls' became nan at epoch 2, iteration 3; training stopped. The "
        "checkpoints of the main process are intact"
    )
    assert errors[0].startswith("the loss guard of process(es) [1] stopped training")
    # Fetched after iteration 4, before epoch 2's checkpoint: only epoch 1's is there.
    assert sorted(f for f in os.listdir(out) if f.endswith(".pth")) == ["model_0001.pth"]
