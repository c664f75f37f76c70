"""Which of ONNX's own backend test models build: the raw TensorRT-RTX API against trtkit.

    python benchmarks/onnx_backend_models.py [--sanitize auto|always|never] [--out FILE] [--timing]
                                             [--jobs N] [--timeout S] [--only SUBSTR] [--no-ort] [--diagnose]

Every ``model.onnx`` under onnx's ``backend/test/data/{pytorch-converted,pytorch-operator,simple}`` and every
``.onnx`` file in ``light/`` (zoo architectures whose weights are ``ConstantOfShape`` nodes) is tried in its own
subprocess (``_onnx_backend_worker.py``) with a timeout (builds may hang or crash), ``--jobs`` at a time (default
``os.cpu_count()``):

- raw: ``OnnxParser.parse_from_file`` + ``build_serialized_network`` with a default builder config;
- trtkit: ``build_engine(..., backend="tensorrt_rtx")``, with ``BuildConfig(sanitize=...)`` when given.

Both get the same profile: each input that is dynamic (or a shape tensor) is fixed to the shape (the values)
of its tensor in ``test_data_set_0``. Unless ``--no-ort``, each model is also prepared with
``trtkit.builder.prepare.prepare`` (default options, the same profile) and the prepared model's outputs on ONNX
Runtime are compared with the original's (on ONNX Runtime, or ONNX's reference evaluator where ONNX Runtime
cannot run it) for the test inputs (random inputs for ``light/``), rtol 1e-3, atol 1e-4. ``--diagnose`` also
tries the raw API on each model that fails raw after ``onnx.version_converter.convert_version(model, 17)``.
``--timing`` then rebuilds, one at a time, each model that builds on the first try, alternating
``sanitize="never"`` and ``"auto"`` (3 rounds, best of each), and reports the medians over the set.

Prints the counts and writes JSON (default ``benchmarks/results/onnx-backend-models.json``).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

DIRS = ("light", "pytorch-converted", "pytorch-operator", "simple")
WORKER = Path(__file__).with_name("_onnx_backend_worker.py")
_DYNQUANT = {"DynamicQuantizeLinear", "ConvInteger", "MatMulInteger"}


def data_root() -> Path:
    import onnx

    return Path(onnx.__file__).parent / "backend" / "test" / "data"


def find_models(root: Path) -> list[Path]:
    """Every model of the four directories: ``*/model.onnx`` and, in ``light/``, each ``*.onnx``."""
    found: list[Path] = []
    for sub in DIRS:
        base = root / sub
        found += sorted(base.glob("*.onnx")) if sub == "light" else sorted(base.glob("*/model.onnx"))
    return found


def model_id(path: Path, root: Path) -> str:
    rel = path.relative_to(root)
    return str(rel.parent if rel.name == "model.onnx" else rel.with_suffix(""))


def _one_line(text: str) -> str:
    return " ".join(text.split())


def run_worker(args: list[str], timeout: float) -> dict[str, Any]:
    """One worker subprocess; a timeout or a crash becomes a result naming it."""
    start = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, str(WORKER), *args], capture_output=True, text=True,
                              timeout=timeout, env={**os.environ, "TRTKIT_LOG_LEVEL": "ERROR"})
    except subprocess.TimeoutExpired:
        return {"built": False, "error": f"timed out after {timeout:.0f} s", "status": "timeout",
                "seconds": time.perf_counter() - start}
    for line in proc.stdout.splitlines():
        if line.startswith("@@RESULT@@"):
            result: dict[str, Any] = json.loads(line[len("@@RESULT@@"):])
            return result
    tail = _one_line(proc.stderr[-600:])
    return {"built": False, "status": "crashed", "error": f"worker exited with {proc.returncode}: {tail}",
            "seconds": time.perf_counter() - start}


def facts(path: Path) -> dict[str, Any]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    ops = sorted({n.op_type for n in model.graph.node})
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    return {"opset": opset, "ir_version": model.ir_version, "ops": ops, "nodes": len(model.graph.node)}


def classify(entry: dict[str, Any], result: dict[str, Any]) -> str:
    """A failure's class, from the model's ops and opset and the error text."""
    upgraded = entry.get("raw_opset17", {})
    text = f"{result.get('error', '')} {upgraded.get('error', '')}"
    ops = set(entry["ops"])
    if result.get("status") in ("timeout", "crashed"):
        return str(result["status"])
    if ops & _DYNQUANT:
        return "dynamic quantization"
    if ops & {"SequenceConstruct", "SequenceInsert", "SequenceAt", "SequenceEmpty", "SplitToSequence",
              "ConcatFromSequence", "SequenceLength", "SequenceErase"}:
        return "sequence type (unsupported)"
    if "StringNormalizer" in ops:
        return "string type (unsupported)"
    if "Gradient" in ops:
        return "training op (unsupported)"
    if "PRelu" in ops and "PRelu" in text:
        return "PReLU broadcasting"
    if "If" in ops and "If" in text:
        return "If with data-dependent condition"
    if upgraded.get("built") or (not upgraded and (entry["opset"] or 99) < 7):
        return "opset too old (builds after upgrade to 17)" if upgraded else "opset too old"
    if "dilations" in text:
        return "op unsupported (MaxPool dilations other than 1)"
    if "No importer registered" in text or "no importer" in text or "not support" in text.lower():
        return "op unsupported"
    return "other"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sanitize", choices=("auto", "always", "never"), default=None,
                        help="pass BuildConfig(sanitize=...) to trtkit (skipped where BuildConfig lacks it)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "onnx-backend-models.json"))
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--only", default="", help="only models whose id contains this")
    parser.add_argument("--no-ort", action="store_true", help="skip the prepared-vs-original check")
    parser.add_argument("--diagnose", action="store_true", help="also try raw after an opset upgrade to 17")
    parser.add_argument("--timing", action="store_true", help="time never vs auto on first-try builds")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    import onnx
    import tensorrt_rtx

    from trtkit import __version__ as trtkit_version

    root = data_root()
    paths = [p for p in find_models(root) if args.only in model_id(p, root)]
    entries = [{"id": model_id(p, root), "dir": model_id(p, root).split("/")[0], **facts(p)} for p in paths]
    sanitize = [args.sanitize] if args.sanitize else []
    jobs: list[tuple[int, str, list[str]]] = []
    for index, p in enumerate(paths):
        jobs.append((index, "raw", ["raw", str(p)]))
        jobs.append((index, "trtkit", ["trtkit", str(p), *sanitize]))
        if not args.no_ort:
            jobs.append((index, "ort", ["ort", str(p)]))
    started = time.perf_counter()
    with cf.ThreadPoolExecutor(max_workers=args.jobs) as pool:  # each job is its own subprocess
        futures = {pool.submit(run_worker, a, args.timeout): (i, k) for i, k, a in jobs}
        for future in cf.as_completed(futures):
            i, k = futures[future]
            entries[i][k] = future.result()
        if args.diagnose:
            redo = {pool.submit(run_worker, ["raw", str(paths[i]), "17"], args.timeout): i
                    for i, e in enumerate(entries) if not e["raw"].get("built")}
            for future in cf.as_completed(redo):
                entries[redo[future]]["raw_opset17"] = future.result()
    wall = time.perf_counter() - started

    for e in entries:
        for k in ("raw", "trtkit"):
            if not e[k].get("built"):
                e[f"{k}_class"] = classify(e, e[k])
    summary = summarize(entries)
    timing: dict[str, Any] = {}
    if args.timing:
        timing = time_first_try(paths, entries, args)
    result = {
        "meta": {"date": dt.date.today().isoformat(), "onnx": onnx.__version__,
                 "tensorrt_rtx": tensorrt_rtx.__version__,
                 "trtkit": trtkit_version, "python": sys.version.split()[0], "sanitize": args.sanitize,
                 "jobs": args.jobs, "cpu_count": os.cpu_count(), "timeout_s": args.timeout, "wall_s": round(wall, 1),
                 "data": str(root), "models_per_dir": dict(Counter(e["dir"] for e in entries))},
        "summary": summary, "timing": timing, "models": entries,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1, default=str) + "\n")
    print_summary(result)
    print(f"wrote {args.out}")


def summarize(entries: list[dict[str, Any]]) -> dict[str, Any]:
    raw = {e["id"] for e in entries if e["raw"].get("built")}
    kit = {e["id"] for e in entries if e["trtkit"].get("built")}
    fails = [e for e in entries if not e["trtkit"].get("built")]
    ort = Counter(e["ort"]["status"] for e in entries if "ort" in e)
    return {
        "models": len(entries), "raw_built": len(raw), "trtkit_built": len(kit),
        "trtkit_only": sorted(kit - raw), "raw_only": sorted(raw - kit),
        "trtkit_prepared": sorted(e["id"] for e in entries if (e["trtkit"].get("preparation") or {}).get("steps")),
        "raw_failures_by_class": dict(Counter(e["raw_class"] for e in entries if "raw_class" in e).most_common()),
        "trtkit_failures_by_class": dict(Counter(e["trtkit_class"] for e in fails).most_common()),
        "trtkit_failures_multiline": sorted(e["id"] for e in fails if e["trtkit"].get("one_line") is False),
        "trtkit_failures_first_line_without_node": sorted(
            e["id"] for e in fails if e["trtkit"].get("first_line_names_node") is False),
        "raw_fixed_by_opset17": sorted(e["id"] for e in entries if e.get("raw_opset17", {}).get("built")),
        "ort_check": dict(ort.most_common()),
        "ort_disagree": sorted(e["id"] for e in entries if e.get("ort", {}).get("status") == "DISAGREE"),
        "prepared_differs_from_shipped_outputs": sorted(
            e["id"] for e in entries if e.get("ort", {}).get("matches_shipped_outputs") is False),
    }


def time_first_try(paths: list[Path], entries: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    """never vs auto on each model that trtkit builds without preparation, one model at a time."""
    from dataclasses import fields

    from trtkit.builder import BuildConfig

    if "sanitize" not in {f.name for f in fields(BuildConfig)}:
        return {"skipped": "BuildConfig has no 'sanitize' field yet"}
    chosen = [(p, e) for p, e in zip(paths, entries, strict=True)
              if e["raw"].get("built") and e["trtkit"].get("built")
              and not (e["trtkit"].get("preparation") or {}).get("steps")]
    per_model: dict[str, Any] = {}
    for p, e in chosen:
        per_model[e["id"]] = run_worker(["timing", str(p), str(args.rounds)], args.timeout * 2 * args.rounds)
    ok = [v for v in per_model.values() if "never" in v]
    never = [v["never"] for v in ok]
    auto = [v["auto"] for v in ok]
    return {
        "models": len(ok), "rounds": args.rounds,
        "median_never_s": statistics.median(never) if ok else None,
        "median_auto_s": statistics.median(auto) if ok else None,
        "median_ratio_auto_over_never": statistics.median(a / n for a, n in zip(auto, never, strict=True))
        if ok else None,
        "total_never_s": sum(never), "total_auto_s": sum(auto), "per_model": per_model,
    }


def print_summary(result: dict[str, Any]) -> None:
    s = result["summary"]
    print(f"models: {s['models']} {result['meta']['models_per_dir']}")
    print(f"raw TensorRT-RTX built {s['raw_built']}; trtkit (sanitize={result['meta']['sanitize']}) built "
          f"{s['trtkit_built']}; trtkit only: {len(s['trtkit_only'])}; raw only: {s['raw_only']}")
    print(f"trtkit failures by class: {s['trtkit_failures_by_class']}")
    print(f"trtkit failures with a multi-line error: {s['trtkit_failures_multiline']}")
    if s["raw_fixed_by_opset17"]:
        print(f"raw builds after convert_version(17): {len(s['raw_fixed_by_opset17'])}")
    if s["ort_check"]:
        print(f"prepared vs original: {s['ort_check']}; disagree: {s['ort_disagree']}")
    t = result["timing"]
    if t.get("models"):
        print(f"first-try builds ({t['models']}): median never {t['median_never_s']:.3f} s, auto "
              f"{t['median_auto_s']:.3f} s, median ratio auto/never {t['median_ratio_auto_over_never']:.3f}")


if __name__ == "__main__":
    main()
