"""``trtkit bench --json``'s document: one JSON object, as the other commands' ``--json`` print."""

from __future__ import annotations

import json

from trtkit.tools.bench import BenchResult, bench_report, summarize


def _result(batch: int, latencies: list[float]) -> BenchResult:
    stats = summarize(latencies)
    return BenchResult(shapes={"x": (batch, 4)}, iterations=len(latencies), total_seconds=0.5,
                       throughput_qps=len(latencies) / 0.5, latency=stats, enqueue=stats, h2d=stats,
                       gpu_compute=stats, d2h=stats, cuda_graph=True, include_transfers=False)


def test_one_object_with_the_kind_the_engine_and_every_result_in_order() -> None:
    sweep = [_result(1, [1.0, 2.0, 3.0]), _result(8, [4.0, 6.0])]
    data = json.loads(json.dumps(bench_report(sweep, engine="m.engine")))
    assert isinstance(data, dict) and data["kind"] == "bench" and data["engine"] == "m.engine"
    assert [r["shapes"] for r in data["results"]] == [{"x": [1, 4]}, {"x": [8, 4]}]
    assert data["results"][0]["latency_ms"]["median"] == 2.0 and data["results"][1]["iterations"] == 2


def test_a_single_run_is_the_same_form_with_one_result() -> None:
    data = bench_report(_result(2, [1.0]), engine="m.engine")
    assert isinstance(data["results"], list) and len(data["results"]) == 1
