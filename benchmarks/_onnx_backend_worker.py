"""The worker of ``onnx_backend_models.py``: one model, one job, in its own subprocess.

    python benchmarks/_onnx_backend_worker.py raw|trtkit|ort|timing MODEL [ARG]

Prints one line ``@@RESULT@@{json}``. ``raw [OPSET]``: the raw TensorRT-RTX API (after an opset upgrade);
``trtkit [SANITIZE]``: ``build_engine``; ``ort``: prepared vs original outputs; ``timing ROUNDS``: never vs auto.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path
from typing import Any

RTOL, ATOL = 1e-3, 1e-4
# (op type, input index) pairs that TensorRT reads as shape tensors
_SHAPE_USES = {("Reshape", 1), ("Expand", 1), ("ConstantOfShape", 0), ("Tile", 1), ("Range", 0), ("Range", 1),
               ("Range", 2), ("Slice", 1), ("Slice", 2), ("Slice", 3), ("Slice", 4), ("Resize", 3),
               ("Upsample", 1), ("OneHot", 1), ("TopK", 1), ("Pad", 1), ("Squeeze", 1), ("Unsqueeze", 1)}
_NAMES_NODE = re.compile(r"\bnode\b", re.IGNORECASE)  # does an error line point at a node?




def _graph_inputs(path: Path) -> list[Any]:
    """The model's inputs that are not initializers (old IR versions list initializers as inputs too)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in inits]


def _test_inputs(path: Path) -> dict[str, Any]:
    """name -> numpy array (or list, for sequences) from ``test_data_set_0``, matched by name or by order."""
    import onnx
    from onnx import numpy_helper

    graph_inputs = _graph_inputs(path)
    folder = path.parent / "test_data_set_0"
    out: dict[str, Any] = {}
    if path.name != "model.onnx" or not folder.is_dir():
        return out
    files = sorted(folder.glob("input_*.pb"), key=lambda p: int(p.stem.split("_")[1]))
    for index, file in enumerate(files):
        if index >= len(graph_inputs):
            break
        vi = graph_inputs[index]
        kind = vi.type.WhichOneof("value")
        raw = file.read_bytes()
        if kind == "sequence_type":
            seq = onnx.SequenceProto()
            seq.ParseFromString(raw)
            out[vi.name] = numpy_helper.to_list(seq)
        elif kind == "optional_type":
            opt = onnx.OptionalProto()
            opt.ParseFromString(raw)
            out[vi.name] = numpy_helper.to_optional(opt)
        else:
            tensor = onnx.TensorProto()
            tensor.ParseFromString(raw)
            out[tensor.name if tensor.name in {g.name for g in graph_inputs} else vi.name] = \
                numpy_helper.to_array(tensor)
    return out


def _random_inputs(path: Path) -> dict[str, Any]:
    """Random inputs for a model without test data (static shapes, float or int)."""
    import numpy as np
    from onnx import helper

    rng = np.random.default_rng(0)
    out: dict[str, Any] = {}
    for vi in _graph_inputs(path):
        t = vi.type.tensor_type
        shape = [d.dim_value if d.dim_value > 0 else 1 for d in t.shape.dim]
        dtype = helper.tensor_dtype_to_np_dtype(t.elem_type)
        out[vi.name] = (rng.standard_normal(shape) if dtype.kind == "f" else rng.integers(0, 4, shape)).astype(dtype)
    return out


def _shape_tensor_inputs(path: Path) -> set[str]:
    """Inputs TensorRT would take as shape tensors: by a raw parse when it succeeds, else by their consumers."""
    try:
        import tensorrt_rtx as trt

        logger = trt.Logger(trt.Logger.INTERNAL_ERROR)
        builder = trt.Builder(logger)
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, logger)
        if parser.parse_from_file(str(path)):
            return {network.get_input(i).name for i in range(network.num_inputs)
                    if network.get_input(i).is_shape_tensor}
    except Exception:
        pass
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    names = {i.name for i in model.graph.input}
    return {name for node in model.graph.node for index, name in enumerate(node.input)
            if name in names and (node.op_type, index) in _SHAPE_USES}


def _profile(path: Path) -> dict[str, tuple[int, ...]]:
    """name -> shape (values, for a shape tensor) for each dynamic or shape-tensor input with test data."""
    declared = {i.name: i for i in _graph_inputs(path)}
    shape_tensors = _shape_tensor_inputs(path)
    profile: dict[str, tuple[int, ...]] = {}
    for name, value in _test_inputs(path).items():
        vi = declared.get(name)
        if vi is None or not hasattr(value, "shape"):
            continue
        dims = vi.type.tensor_type.shape.dim
        dynamic = not vi.type.tensor_type.HasField("shape") or any(d.dim_value <= 0 for d in dims)
        if name in shape_tensors:
            profile[name] = tuple(int(v) for v in value.reshape(-1))
        elif dynamic:
            profile[name] = tuple(int(d) for d in value.shape)
    return profile


def _one_line(text: str) -> str:
    return " ".join(text.split())


def work_raw(path: Path, upgrade: int | None) -> dict[str, Any]:
    """Parse and build with the raw TensorRT-RTX API (after an opset upgrade to ``upgrade`` if given)."""
    import tensorrt_rtx as trt

    class Collect(trt.ILogger):  # type: ignore[misc]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            if severity <= trt.ILogger.ERROR:
                self.errors.append(msg)

    start = time.perf_counter()
    logger = Collect()
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if upgrade is not None:
        import onnx
        from onnx import version_converter

        ok = parser.parse(version_converter.convert_version(onnx.load(str(path)), upgrade).SerializeToString(),
                          str(path))
    else:
        ok = parser.parse_from_file(str(path))
    if not ok:
        errors = [parser.get_error(i) for i in range(parser.num_errors)]
        lines = [f"node {e.node_name() or e.node()} ({e.node_operator()}): {_one_line(e.desc())}" for e in errors]
        return {"built": False, "stage": "parse", "error": lines[0] if lines else "parse failed",
                "errors": lines, "seconds": time.perf_counter() - start}
    profile = _profile(path)
    config = builder.create_builder_config()
    if profile:
        p = builder.create_optimization_profile()
        for i in range(network.num_inputs):
            t = network.get_input(i)
            if t.name not in profile:
                continue
            if t.is_shape_tensor:
                p.set_shape_input(t.name, profile[t.name], profile[t.name], profile[t.name])
            else:
                p.set_shape(t.name, profile[t.name], profile[t.name], profile[t.name])
        config.add_optimization_profile(p)
    plan = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - start
    if plan is None:
        return {"built": False, "stage": "build", "error": _one_line(logger.errors[-1]) if logger.errors
                else "build_serialized_network returned None", "errors": logger.errors[-5:], "seconds": seconds}
    return {"built": True, "seconds": seconds, "plan_bytes": plan.nbytes}


def _build_config(sanitize: str | None) -> Any:
    from dataclasses import fields

    from trtkit.builder import BuildConfig

    if sanitize is None:
        return BuildConfig()
    if "sanitize" not in {f.name for f in fields(BuildConfig)}:
        return None
    return BuildConfig(sanitize=sanitize)  # type: ignore[arg-type,call-arg,unused-ignore]


def work_trtkit(path: Path, sanitize: str | None) -> dict[str, Any]:
    """``build_engine`` with trtkit; the error is the exception's text, whole (is it one line?)."""
    from trtkit.builder import build_engine

    config = _build_config(sanitize)
    if config is None:
        return {"built": False, "error": "BuildConfig has no 'sanitize' field yet", "skipped": True}
    profile = _profile(path)
    start = time.perf_counter()
    try:
        built = build_engine(path, shapes=profile or None, config=config, backend="tensorrt_rtx", progress=False)
    except Exception as exc:
        text = str(exc)
        first = text.splitlines()[0] if text else ""
        return {"built": False, "error_type": type(exc).__name__, "error": text, "one_line": "\n" not in text,
                "first_line": first, "first_line_names_node": bool(_NAMES_NODE.search(first)),
                "seconds": time.perf_counter() - start}
    extra = dict(built.manifest.extra)
    return {"built": True, "seconds": time.perf_counter() - start, "build_seconds": extra.get("build_seconds"),
            "preparation": extra.get("preparation")}


def _run_model(proto: Any, feeds: dict[str, Any]) -> tuple[str, list[Any]]:
    """Outputs of ``proto`` on ONNX Runtime, or on the reference evaluator where ONNX Runtime fails."""
    import onnxruntime as ort

    names = [o.name for o in proto.graph.output]
    try:
        session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        wanted = {i.name for i in session.get_inputs()}
        return "onnxruntime", session.run(names, {k: v for k, v in feeds.items() if k in wanted})
    except Exception as ort_error:
        from onnx.reference import ReferenceEvaluator

        try:
            return "reference", list(ReferenceEvaluator(proto).run(names, feeds))
        except Exception as ref_error:
            raise RuntimeError(f"onnxruntime: {_one_line(str(ort_error))[:200]}; "
                               f"reference: {_one_line(str(ref_error))[:200]}") from None


def _compare(a: list[Any], b: list[Any]) -> tuple[bool, float]:
    import numpy as np

    worst = 0.0
    ok = len(a) == len(b)
    for x, y in zip(a, b, strict=False):
        x, y = np.asarray(x), np.asarray(y)
        if x.shape != y.shape:
            return False, float("inf")
        if x.size == 0:
            continue
        if x.dtype.kind in "fc" or y.dtype.kind in "fc":
            xf, yf = x.astype(np.float64), y.astype(np.float64)
            ok = ok and bool(np.allclose(xf, yf, rtol=RTOL, atol=ATOL, equal_nan=True))
            diff = np.abs(xf - yf)
            worst = max(worst, float(np.nanmax(diff)) if np.isfinite(diff).any() else 0.0)
        else:
            ok = ok and bool(np.array_equal(x, y))
    return ok, worst


def work_ort(path: Path) -> dict[str, Any]:
    """Prepare with default options and compare prepared vs original outputs for the test inputs."""
    try:
        from trtkit.builder.prepare import PrepareOptions, prepare
    except ImportError as exc:
        return {"status": "no prepare", "error": str(exc)}
    import onnx

    from trtkit.builder.model import load_onnx
    from trtkit.profiles import normalize_profiles

    feeds = _test_inputs(path) or _random_inputs(path)
    profile = _profile(path)
    original = onnx.load(str(path))
    try:
        runner, want = _run_model(original, feeds)
    except Exception as exc:
        return {"status": "original does not run", "error": _one_line(str(exc))[:400]}
    start = time.perf_counter()
    try:
        prepared = prepare(load_onnx(path), PrepareOptions(), normalize_profiles(profile or None))
    except Exception as exc:
        return {"status": "prepare failed", "error_type": type(exc).__name__, "error": _one_line(str(exc))[:400]}
    seconds = time.perf_counter() - start
    record: dict[str, Any] = {"steps": list(prepared.steps), "prepare_seconds": seconds, "original_on": runner}
    try:
        prepared_on, got = _run_model(prepared.model.proto, feeds)
    except Exception as exc:
        return {**record, "status": "prepared does not run", "error": _one_line(str(exc))[:400]}
    ok, worst = _compare(want, got)
    expected = _expected_outputs(path)
    if expected:
        record["matches_shipped_outputs"] = _compare(expected, got)[0]
    return {**record, "status": "agree" if ok else "DISAGREE", "prepared_on": prepared_on, "max_abs_diff": worst,
            "bytes": {"before": path.stat().st_size, "after": prepared.model.proto.ByteSize()}}


def _expected_outputs(path: Path) -> list[Any]:
    """The outputs shipped in ``test_data_set_0`` (plain tensors only; [] where there are none or others)."""
    import onnx
    from onnx import numpy_helper

    folder = path.parent / "test_data_set_0"
    files = sorted(folder.glob("output_*.pb"), key=lambda p: int(p.stem.split("_")[1])) \
        if path.name == "model.onnx" else []
    model = onnx.load(str(path), load_external_data=False)
    if not files or any(o.type.WhichOneof("value") != "tensor_type" for o in model.graph.output):
        return []
    out = []
    for file in files:
        tensor = onnx.TensorProto()
        tensor.ParseFromString(file.read_bytes())
        out.append(numpy_helper.to_array(tensor))
    return out


def work_timing(path: Path, rounds: int) -> dict[str, Any]:
    """Alternate ``sanitize="never"`` and ``"auto"`` builds of one model; best wall time of each."""
    times: dict[str, list[float]] = {"never": [], "auto": []}
    for _ in range(rounds):
        for mode in ("never", "auto"):
            result = work_trtkit(path, mode)
            if not result["built"]:
                return {"error": result["error"]}
            times[mode].append(result["seconds"])
    return {mode: min(values) for mode, values in times.items()}


def worker(argv: list[str]) -> None:
    kind, path = argv[0], Path(argv[1])
    arg = argv[2] if len(argv) > 2 else ""
    if kind == "raw":
        result = work_raw(path, int(arg) if arg else None)
    elif kind == "trtkit":
        result = work_trtkit(path, arg or None)
    elif kind == "ort":
        result = work_ort(path)
    else:
        result = work_timing(path, int(arg))
    print("@@RESULT@@" + json.dumps(result, default=str), flush=True)


if __name__ == "__main__":
    worker(sys.argv[1:])
