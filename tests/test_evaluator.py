import pytest
import torch

from fastddpm.errors import UsageError
from fastddpm.evaluator.network import Evaluator, micro_topk_accuracy


def test_formula_on_hand_computed_cases():
    targets = torch.zeros(3, 24)
    targets[0, [1, 5]] = 1  # k = 2
    targets[1, [7]] = 1  # k = 1
    targets[2, [2, 3, 4]] = 1  # k = 3
    scores = torch.zeros(3, 24)
    scores[0, [1, 9]] = torch.tensor([0.9, 0.8])  # top-2 = {1, 9}: 1 hit
    scores[1, [7]] = 0.99  # top-1 = {7}: 1 hit
    scores[2, [2, 3, 10]] = torch.tensor([0.7, 0.6, 0.95])  # top-3 = {10, 2, 3}: 2 hits
    assert micro_topk_accuracy(scores, targets) == pytest.approx(4 / 6)
    assert micro_topk_accuracy(targets * 0.5 + 0.1, targets) == 1.0


def test_extra_objects_are_not_penalised_unless_they_push_out_a_true_label():
    targets = torch.zeros(1, 24)
    targets[0, 3] = 1
    scores = torch.full((1, 24), 0.9)
    scores[0, 3] = 0.95  # every class is "present", the true one highest
    assert micro_topk_accuracy(scores, targets) == 1.0
    scores[0, 4] = 0.99
    assert micro_topk_accuracy(scores, targets) == 0.0


def test_loads_course_format_on_cpu(tiny_evaluator, tmp_path):
    evaluator = Evaluator(tiny_evaluator, "cpu")
    images = torch.rand(5, 3, 64, 64) * 2 - 1
    scores = evaluator.scores(images)
    assert scores.shape == (5, 24) and ((scores >= 0) & (scores <= 1)).all()
    # fp16 weights (how the shipped stand-in is stored) load to the same network
    state = torch.load(tiny_evaluator, weights_only=True)["model"]
    torch.save(
        {"model": {k: v.half() if v.is_floating_point() else v for k, v in state.items()}},
        tmp_path / "half.pth",
    )
    half = Evaluator(tmp_path / "half.pth", "cpu").scores(images)
    assert torch.allclose(half, scores, atol=2e-2)


def test_bad_checkpoints_are_clear_errors(tmp_path):
    with pytest.raises(UsageError, match="not found"):
        Evaluator(tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(UsageError, match="not a course evaluator checkpoint"):
        Evaluator(tmp_path / "junk.pth")
    torch.save({"model": {"conv1.weight": torch.zeros(1)}}, tmp_path / "wrong.pth")
    with pytest.raises(UsageError, match="ResNet-18"):
        Evaluator(tmp_path / "wrong.pth")


def test_misses_and_their_kinds():
    from fastddpm.conditions import CLASS_INDEX
    from fastddpm.evaluator.report import error_kind, misses

    scores = torch.zeros(2, 24)
    scores[0, CLASS_INDEX["gray cylinder"]] = 0.9  # the gray cube is taken for a gray cylinder
    scores[0, CLASS_INDEX["red sphere"]] = 0.8
    scores[1, CLASS_INDEX["cyan cube"]] = 0.7
    labels = {"a.png": ["gray cube", "red sphere"], "b.png": ["cyan cube"]}
    missed = misses(scores, ["a.png", "b.png"], labels)
    assert missed == [{"image": "a.png", "class": "gray cube", "index": 0, "instead": ["gray cylinder"]}]
    assert error_kind("gray cube", ["gray cylinder"]) == "shape"
    assert error_kind("gray cube", ["red cube"]) == "color"
    assert error_kind("gray cube", ["red sphere"]) == "both"


def test_report_counts_agree_with_the_accuracy(tiny_data, tiny_evaluator, tmp_path):
    import json

    from typer.testing import CliRunner

    from fastddpm.cli import app

    out = tmp_path / "report.json"
    args = ["evaluator", "report", "--data", tiny_data, "--evaluator", tiny_evaluator, "--out", out]
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    [folder] = json.loads(out.read_text())["folders"]
    assert set(folder["accuracy"]) == {"all", "1_objects", "2_objects", "3_objects"}
    assert folder["missed_objects"] == round(folder["objects"] * (1 - folder["accuracy"]["all"]))
    assert all(m["visible_pixels"] > 0 for m in folder["missed"])


def test_train_with_init_starts_from_the_given_weights(tiny_data, tiny_evaluator, tmp_path):
    from fastddpm.evaluator.config import EvaluatorTrainConfig
    from fastddpm.evaluator.train import train_evaluator

    def first_conv(path):
        return Evaluator(path).model.conv1.weight

    # a vanishing learning rate: the weights end where they started, so the start is what --init named
    common = dict(data=(str(tiny_data),), epochs=1, batch_size=4, lr=1e-12, seed=3, half=False)
    train_evaluator(EvaluatorTrainConfig(init=str(tiny_evaluator), **common), tmp_path / "tuned")
    train_evaluator(EvaluatorTrainConfig(**common), tmp_path / "fresh")
    given = first_conv(tiny_evaluator)
    torch.testing.assert_close(first_conv(tmp_path / "tuned" / "evaluator.pth"), given)
    assert (first_conv(tmp_path / "fresh" / "evaluator.pth") - given).abs().max() > 1e-2
