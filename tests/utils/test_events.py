import json

from reid.utils.events import EventStorage, JSONWriter


def test_storage_smooths_with_median_and_keeps_unsmoothed_latest():
    storage = EventStorage(window=3)
    for it, (loss, lr) in enumerate([(1.0, 0.1), (5.0, 0.2), (3.0, 0.3), (4.0, 0.4)]):
        storage.iter = it
        storage.put_scalar("loss", loss)
        storage.put_scalar("lr", lr, smoothing=False)
    smoothed = storage.smoothed()
    assert smoothed["loss"] == (4.0, 3)  # median of the last 3: 5, 3, 4
    assert smoothed["lr"] == (0.4, 3)


def test_json_writer_writes_each_iteration_once(tmp_path):
    storage = EventStorage()
    writer = JSONWriter(str(tmp_path / "metrics.json"))
    storage.put_scalar("loss", 2.0)
    writer.write(storage)
    writer.write(storage)
    storage.iter = 1
    storage.put_scalar("loss", 1.0, smoothing=False)
    writer.write(storage)
    writer.close()
    lines = [json.loads(text) for text in (tmp_path / "metrics.json").read_text().splitlines()]
    assert lines == [
        {"iteration": 0, "epoch": 0, "loss": 2.0},
        {"iteration": 1, "epoch": 0, "loss": 1.0},
    ]
