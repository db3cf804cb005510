import pytest
import torch

from fastddpm.errors import UsageError
from fastddpm.evaluator import Evaluator, micro_topk_accuracy


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
