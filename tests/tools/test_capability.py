"""`trtkit inspect --capability`: TensorRT's parser partition of real models (TensorRT-RTX, CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_reduce import DATA, PPOCR, with_unsupported_op

from trtkit.backend import Backend
from trtkit.cli import main
from trtkit.tools.capability import check_capability


@pytest.mark.parametrize("name", ["silero_vad_16k_op15", "ch_ppocr_mobile_v2.0_cls_infer", "silero_vad_16k_sequence"])
def test_supported_models(rtx: Backend, name: str) -> None:
    report = check_capability(DATA / f"{name}.onnx", backend=rtx)
    assert report.supported
    assert report.supported_nodes == report.nodes
    assert not report.unsupported_groups


def test_ml_ops_unsupported_with_reasons(rtx: Backend) -> None:
    report = check_capability(DATA / "logreg_iris.onnx", backend=rtx)
    assert not report.supported and report.supported_nodes == 0
    (group,) = report.unsupported_groups
    assert group.nodes == (0, 1, 2)
    assert len(group.reasons) == 3 and all("no importer" in r for r in group.reasons)


def test_unsupported_op_splits_the_model(rtx: Backend) -> None:
    model, at = with_unsupported_op(PPOCR)
    report = check_capability(model, backend=rtx)
    assert [g.supported for g in report.groups] == [True, False, True]
    assert report.unsupported_groups[0].nodes == (at,)
    assert report.supported_nodes == report.nodes - 1
    assert "MysteryOp" in report.unsupported_groups[0].reasons[0]
    assert "UNSUPPORTED node" in report.format()


def test_cli_text_and_json(rtx: Backend, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(DATA / "logreg_iris.onnx")
    assert main(["inspect", "--capability", path, "--backend", "rtx"]) == 0
    assert "UNSUPPORTED nodes 0-2" in capsys.readouterr().out
    assert main(["inspect", "--capability", path, "--json", "--backend", "rtx"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["supported_nodes"] == 0 and data["subgraphs"][0]["ops"]["ZipMap"] == 1


def test_cli_refuses_an_engine(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"ftrt")
    assert main(["inspect", "--capability", str(engine)]) == 2
    assert "ONNX model" in capsys.readouterr().err
