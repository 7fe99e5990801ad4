"""cvnet-summary: parameter and MAC counts per block."""

import json

import pytest

torch = pytest.importorskip("torch")

from cvnet.models.summary import count_macs, summarize  # noqa: E402
from cvnet.models.summary_cli import main  # noqa: E402


def test_macs_are_counted_as_multiply_accumulates():
    conv = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False)
    assert count_macs(conv, (3, 16, 16))[""] == 8 * 3 * 9 * 16 * 16


def test_paper_model_summary_adds_up():
    summary = summarize("cvnet")
    blocks = {row.block: row for row in summary.rows}
    assert list(blocks) == ["stem", "stage 1", "transition 1", "stage 2", "transition 2",
                            "stage 3", "head"]
    assert sum(row.params for row in summary.rows) == summary.params
    assert 4.18e6 <= summary.params <= 4.62e6 and 0.08e6 <= blocks["stem"].params <= 0.11e6
    assert summary.gmacs == pytest.approx(sum(row.gmacs for row in summary.rows), rel=1e-6)
    assert 1.0 < summary.gmacs < 10.0
    assert summary.classifier_params == 0 and summary.embedding_dim == 1024
    # The BNNeck (linears 768^2 + 256^2, BN weight and bias) is train-only: not in the ONNX graph.
    assert summary.params - summary.eval_params == 768 * 768 + 256 * 256 + 2 * (768 + 256)


def test_classifiers_are_reported_separately():
    summary = summarize("cvnet_tiny", num_classes=10)
    assert summary.rows[-1].block == "classifiers"
    assert summary.classifier_params == summary.rows[-1].params == 10 * (64 + 32)
    assert summary.params == summarize("cvnet_tiny").params


def test_macs_grow_with_the_input():
    small = summarize("cvnet_tiny", input_size=(3, 128, 128)).gmacs
    assert summarize("cvnet_tiny", input_size=(3, 256, 256)).gmacs == pytest.approx(4 * small,
                                                                                     rel=0.05)


def test_command_prints_table_and_json(capsys):
    assert main(["cvnet"]) == 0
    table = capsys.readouterr().out
    assert "| stem | 0.102 |" in table and "(paper: 4.4M)" in table and "GMACs per image" in table
    assert main(["cvnet_tiny", "--json", "--input-size", "128"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["input_size"] == [3, 128, 128] and data["embedding_dim"] == 96


def test_command_rejects_unknown_model(capsys, caplog):
    assert main(["cvnet_huge"]) == 1
    assert "known models: bot, cvnet," in caplog.text
    assert capsys.readouterr().out == ""


def test_a_baseline_is_summarised_by_its_top_level_blocks(capsys):
    summary = summarize("starnet_s1")
    assert [row.block for row in summary.rows] == ["stem", "stage 1", "stage 2", "stage 3",
                                                   "stage 4", "norm", "head", "classifiers"]
    assert summary.classifier_params == 1000 * 391  # CVPair's training IDs by default
    assert summary.eval_params == summary.params  # the FC and the BN of the head are used
    assert summary.gmacs == pytest.approx(sum(row.gmacs for row in summary.rows), rel=1e-6)
    assert summary.embedding_dim == 1000 and summary.paper_params_m == 3.2
    assert main(["starnet_s1", "--num-classes", "0"]) == 0
    assert "(paper, Table 2, counting the classifiers: 3.2M;" in capsys.readouterr().out


def test_blocks_held_in_module_lists_get_their_macs():
    # TransReID's blocks sit in a ModuleList that is never called itself; its BNNecks are
    # unused in eval (features before the BN) and its SIE without side ids.
    summary = summarize("transreid", input_size=(3, 64, 64), img_size=64, embed_dim=32, depth=3,
                        num_heads=2, num_classes=3)
    blocks = {row.block: row for row in summary.rows}
    assert blocks["blocks"].gmacs > 0
    assert summary.gmacs == pytest.approx(sum(row.gmacs for row in summary.rows), rel=1e-6)
    unused = blocks["neck"].params + blocks["local_necks"].params + blocks["sie_embed"].params
    assert summary.params - summary.eval_params == unused == 5 * 2 * 32 + 2 * 32
