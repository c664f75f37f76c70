"""PyTorch module -> ONNX for Engine.from_torch: names, dynamic dims, numerics (checked with ONNX Runtime on the
CPU) and the export cache. Runs where PyTorch is installed (the GPU machine); the TensorRT build is not part
of it (``Engine.from_onnx`` is replaced), since that machine has no TensorRT."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from trtkit.cache import EngineCache  # noqa: E402
from trtkit.engine import Engine  # noqa: E402
from trtkit.tools import torch_export  # noqa: E402
from trtkit.tools.torch_export import cached_export, export_onnx  # noqa: E402

pytestmark = pytest.mark.gpu

HAVE_ONNXSCRIPT = importlib.util.find_spec("onnxscript") is not None


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.fc = torch.nn.Linear(4, 5)

    def forward(self, images: Any) -> Any:
        return self.fc(torch.relu(self.conv(images)).mean(dim=(2, 3)))


def _net() -> Net:
    torch.manual_seed(0)
    return Net()


def _dims(model: Any, index: int = 0) -> list[Any]:
    return [d.dim_param or d.dim_value for d in model.graph.input[index].type.tensor_type.shape.dim]


def _check_numerics(path: Path, net: Net, batch: int) -> None:
    x = torch.randn(batch, 3, 16, 16)
    with torch.no_grad():
        want = net(x).numpy()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = sess.run(None, {"images": x.numpy()})
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_export_names_inputs_declares_dynamic_dims_and_matches_the_module(exporter: str, tmp_path: Path) -> None:
    if exporter == "dynamo" and not HAVE_ONNXSCRIPT:
        pytest.skip("the dynamo exporter needs onnxscript, which is not installed here")
    net = _net()
    path = export_onnx(net, torch.randn(2, 3, 16, 16), tmp_path / "net.onnx",
                       dynamic_shapes={"images": {0: "batch"}}, exporter=exporter)
    assert path.is_file()
    model = onnx.load(str(path))
    assert [i.name for i in model.graph.input] == ["images"]  # forward's parameter name
    batch, *rest = _dims(model)
    assert isinstance(batch, str) and batch  # a dim_param: dynamic
    assert rest == [3, 16, 16]
    _check_numerics(path, net, batch=5)  # another batch than the example: the dim really is dynamic
    assert net.training  # the module's mode is restored


def test_dynamic_dims_follow_the_build_shapes(tmp_path: Path) -> None:
    net = _net()
    shapes = {"images": ((1, 3, 16, 16), (4, 3, 16, 16), (8, 3, 16, 16))}
    path = export_onnx(net, torch.randn(2, 3, 16, 16), tmp_path / "net.onnx", shapes=shapes)
    batch, *rest = _dims(onnx.load(str(path)))
    assert isinstance(batch, str) and batch and rest == [3, 16, 16]
    _check_numerics(path, net, batch=8)


def test_static_export_without_dynamic_dims(tmp_path: Path) -> None:
    path = export_onnx(_net(), (torch.randn(2, 3, 16, 16),), tmp_path / "net.onnx", input_names=["pixels"])
    model = onnx.load(str(path))
    assert [i.name for i in model.graph.input] == ["pixels"]
    assert _dims(model) == [2, 3, 16, 16]


def test_cached_export_is_reused_until_weights_or_inputs_change(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = torch_export.export_onnx

    def counting(*args: Any, **kwargs: Any) -> Path:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch_export, "export_onnx", counting)
    net = _net()
    x = torch.randn(2, 3, 16, 16)
    first, reused = cached_export(net, x, tmp_path, dynamic_shapes={"images": [0]})
    assert not reused and first.is_file() and first.is_relative_to(tmp_path)
    again, reused = cached_export(_net(), torch.randn(2, 3, 16, 16), tmp_path, dynamic_shapes={"images": [0]})
    assert reused and again == first and len(calls) == 1  # same weights, shapes and options: no export

    with torch.no_grad():
        net.fc.bias.add_(1.0)
    changed, reused = cached_export(net, x, tmp_path, dynamic_shapes={"images": [0]})
    assert not reused and changed != first and len(calls) == 2
    _check_numerics(changed, net, batch=3)  # the new file has the new weights

    other, reused = cached_export(net, torch.randn(2, 3, 32, 32), tmp_path, dynamic_shapes={"images": [0]})
    assert not reused and other not in (first, changed)
    static, reused = cached_export(net, x, tmp_path)
    assert not reused and static not in (first, changed, other)


def test_from_torch_builds_from_the_cached_export(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[dict[str, Any]] = []

    def fake_from_onnx(cls: type[Engine], model: Any, **kwargs: Any) -> Any:
        assert Path(model).is_file()  # the export exists while the engine is built
        seen.append({"model": Path(model), **kwargs})
        return "engine"

    monkeypatch.setattr(Engine, "from_onnx", classmethod(fake_from_onnx))
    shapes = {"images": ((1, 3, 16, 16), (4, 3, 16, 16), (8, 3, 16, 16))}
    net = _net()
    x = torch.randn(2, 3, 16, 16)
    assert Engine.from_torch(net, x, shapes=shapes, cache=tmp_path / "c", backend="tensorrt", device=1) == "engine"
    assert Engine.from_torch(net, x, shapes=shapes, cache=tmp_path / "c", backend="tensorrt", device=1) == "engine"
    first, second = seen
    assert first["model"] == second["model"]  # one export, reused
    assert first["model"].is_relative_to(tmp_path / "c")
    assert isinstance(first["cache"], EngineCache) and first["cache"].directory == tmp_path / "c"
    assert first["shapes"] == shapes and first["backend"] == "tensorrt" and first["device"] == 1
    assert isinstance(_dims(onnx.load(str(first["model"])))[0], str)  # dynamic batch, from the shapes

    seen.clear()
    assert Engine.from_torch(net, x, cache=False) == "engine"
    (call,) = seen
    assert call["cache"] is False
    assert not call["model"].exists()  # a temporary export, removed after the build
