"""Export a :class:`~reid.inference.FeatureModel` for deployment, and check the exported file.

Formats (``EXPORT_FORMATS``):

- ``onnx``: ``torch.onnx.export`` (the dynamo exporter; one self-contained file), run with
  onnxruntime for the parity check. TensorRT (``trtexec --onnx=model.onnx``) and OpenVINO
  (``ovc model.onnx``) take this file.
- ``torchscript``: ``torch.jit.trace``, for libtorch (C++) and ``torch.jit.load``.
- ``export``: ``torch.export`` (an ExportedProgram ``.pt2``), for ``torch.export.load``,
  AOTInductor and ExecuTorch.

The exported module takes ``images``, a float32 B x 3 x H x W tensor (RGB, values 0..255,
resized to INPUT.SIZE_TEST as the test transform does), any batch size B, and returns
``features`` (B x D float32): the pixel normalisation, the flip averaging (TEST.FLIP.ENABLED)
and the metric's preparation (L2 normalisation for TEST.METRIC "cosine") are inside.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from reid.inference import FeatureModel

__all__ = [
    "EXPORT_FORMATS",
    "Parity",
    "check_parity",
    "example_images",
    "export_feature_model",
    "load_exported",
    "model_card",
]

EXPORT_FORMATS: dict[str, str] = {"onnx": ".onnx", "torchscript": ".pt", "export": ".pt2"}
INPUT_NAME, OUTPUT_NAME = "images", "features"
PARITY_TOLERANCE = 1e-4  # relative: max |exported - PyTorch| / max |PyTorch|


def example_images(size: Sequence[int], batch_size: int, seed: int = 0) -> torch.Tensor:
    """Random whole-number images, B x 3 x H x W float32 in 0..255, from a seeded generator."""
    generator = torch.Generator().manual_seed(seed)
    shape = (batch_size, 3, int(size[0]), int(size[1]))
    return torch.randint(0, 256, shape, generator=generator).float()


def _check_format(fmt: str) -> None:
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"format must be one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}")


def _dynamic_batch() -> dict[str, dict[int, Any]]:
    return {INPUT_NAME: {0: torch.export.Dim("batch", min=1, max=4096)}}


def _write(
    fmt: str, model: FeatureModel, example: torch.Tensor, path: str, opset: int | None
) -> None:
    if fmt == "onnx":
        torch.onnx.export(
            model,
            (example,),
            path,
            dynamo=True,
            external_data=False,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=_dynamic_batch(),
            opset_version=opset,
            verbose=False,
        )
    elif fmt == "torchscript":
        with torch.no_grad(), warnings.catch_warnings():
            # torch.jit is deprecated upstream (the README says so); the input checks of
            # preprocess_image are constant for a fixed rank, which is all a trace needs.
            warnings.filterwarnings("ignore", category=FutureWarning, module="torch.jit")
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            traced = torch.jit.trace(model, example, check_trace=False)
            torch.jit.save(traced, path)
    else:
        program = torch.export.export(model, (example,), dynamic_shapes=_dynamic_batch())
        torch.export.save(program, path)


def export_feature_model(
    model: FeatureModel, fmt: str, path: str, opset: int | None = None
) -> None:
    """Export ``model`` (on the CPU, float32) to ``path``, atomically.

    Args:
        model: The feature model; moved to the CPU.
        fmt: "onnx", "torchscript" or "export".
        path: The file to write; a reader never sees half of it.
        opset: The ONNX opset (default: the exporter's).

    Raises:
        ValueError: An unknown format.
    """
    _check_format(fmt)
    if fmt == "export" and not path.endswith(".pt2"):
        raise ValueError(
            f"torch.export files must end in .pt2 (torch.export.load needs it): {path}"
        )
    model = model.cpu().float().eval()
    example = example_images(model.input_size, batch_size=2)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    suffix = EXPORT_FORMATS[fmt]
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=suffix, dir=folder)
    os.close(fd)
    try:
        _write(fmt, model, example, tmp, opset)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 is not meant for a shared artifact
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load_exported(fmt: str, path: str) -> Callable[[torch.Tensor], np.ndarray]:
    """A function running the exported file on a B x 3 x H x W batch (onnxruntime for ONNX)."""
    _check_format(fmt)
    if fmt == "onnx":
        import onnxruntime  # noqa: PLC0415  (optional dependency: the 'export' extra)

        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        return lambda images: session.run([OUTPUT_NAME], {INPUT_NAME: images.numpy()})[0]
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning, module="torch.jit")
            module = torch.jit.load(path, map_location="cpu")
    else:
        module = torch.export.load(path).module()

    def run(images: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return module(images).numpy()

    return run


@dataclass(frozen=True)
class Parity:
    """How far the exported file's features are from PyTorch's on the same random images.

    Attributes:
        max_abs: The largest absolute difference of any feature value.
        max_rel: ``max_abs`` over the largest absolute PyTorch feature value.
        batch_sizes: The batch sizes run (one of them differs from the export's example).
        runtime: What ran the file (onnxruntime, torch.jit, torch.export).
    """

    max_abs: float
    max_rel: float
    batch_sizes: tuple[int, ...]
    runtime: str

    @property
    def ok(self) -> bool:
        """Within PARITY_TOLERANCE (relative)."""
        return self.max_rel <= PARITY_TOLERANCE

    def describe(self) -> str:
        batches = " and ".join(str(b) for b in self.batch_sizes)
        verdict = "ok" if self.ok else f"ABOVE the tolerance {PARITY_TOLERANCE:g}"
        return (
            f"parity ({self.runtime} vs PyTorch, random batches of {batches} images): max abs "
            f"difference {self.max_abs:.3g}, relative {self.max_rel:.3g} ({verdict})"
        )


RUNTIMES = {"onnx": "onnxruntime", "torchscript": "torch.jit", "export": "torch.export"}


def check_parity(
    model: FeatureModel,
    fmt: str,
    path: str,
    batch_sizes: Sequence[int] = (1, 3),
    seed: int = 1,
) -> Parity:
    """Run the exported file and ``model`` on the same random images and compare the features.

    Args:
        model: The PyTorch feature model that was exported.
        fmt: The export format.
        path: The exported file.
        batch_sizes: Batches to run (the export traced a batch of 2, so these test the dynamic
            batch size).
        seed: Seed of the random images.
    """
    run = load_exported(fmt, path)
    model = model.cpu().float().eval()
    max_abs, scale = 0.0, 0.0
    for i, batch in enumerate(batch_sizes):
        images = example_images(model.input_size, batch, seed=seed + i)
        with torch.no_grad():
            reference = model(images).numpy()
        ours = run(images)
        if ours.shape != reference.shape:
            raise ValueError(
                f"{path}: the exported model gives {ours.shape} for a batch of {batch}, "
                f"PyTorch {reference.shape}"
            )
        max_abs = max(max_abs, float(np.abs(ours - reference).max()))
        scale = max(scale, float(np.abs(reference).max()))
    return Parity(max_abs, max_abs / max(scale, 1e-12), tuple(batch_sizes), RUNTIMES[fmt])


def model_card(
    model: FeatureModel,
    fmt: str,
    weights: str,
    feature_dim: int,
    parity: Parity,
    interpolation: str = "bicubic",
) -> dict[str, Any]:
    """What a deployment needs to know about the exported file (written next to it as JSON).

    Args:
        model: The exported feature model.
        fmt: The format.
        weights: The checkpoint the weights came from.
        feature_dim: D.
        parity: The parity check's result.
        interpolation: The test transform's resampling (INPUT.INTERPOLATION).
    """
    height, width = model.input_size
    return {
        "format": fmt,
        "weights": weights,
        "input": {
            "name": INPUT_NAME,
            "shape": ["batch", 3, height, width],
            "dtype": "float32",
            "channels": "RGB",
            "values": "0..255 (not normalised: the model normalises)",
            "resize": f"to {height}x{width} (INPUT.SIZE_TEST), {interpolation}, antialiased, "
            "as the test transform does",
        },
        "output": {
            "name": OUTPUT_NAME,
            "shape": ["batch", feature_dim],
            "dtype": "float32",
            "l2_normalized": model.normalized,
        },
        "metric": model.metric,
        "flip_averaged": model.flip,
        "parity": asdict(parity),
    }
