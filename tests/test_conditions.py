import json

import pytest

from fastddpm import conditions as c
from conftest import COURSE


def test_vocabulary_is_the_course_order():
    assert c.CLASSES[0] == "gray cube" and c.CLASSES[7] == "yellow cube"
    assert (
        c.CLASSES[8] == "gray sphere"
        and c.CLASSES[22] == "cyan cylinder"
        and c.CLASSES[23] == "yellow cylinder"
    )
    assert json.loads((COURSE / "objects.json").read_text()) == c.CLASS_INDEX


def test_multi_hot_marks_exactly_the_named_classes():
    labels = [["red sphere", "cyan cube"], ["yellow cylinder"], ["gray cube", "gray sphere", "gray cylinder"]]
    vectors = c.multi_hot(labels)
    assert vectors.shape == (3, 24) and vectors.sum().item() == 6
    for row, names in zip(vectors, labels, strict=True):
        assert sorted(c.CLASSES[i] for i in row.nonzero().flatten().tolist()) == sorted(names)


@pytest.mark.parametrize(
    "labels, message",
    [
        (["red spere"], "did you mean 'red sphere'"),
        (["pink cube"], "valid names"),
        ([], "empty label list"),
        (["red cube", "red cube"], "repeated object 'red cube'"),
        ("red cube", "must be a list"),
        ([3], "must be strings"),
    ],
)
def test_bad_label_lists_are_named(labels, message):
    with pytest.raises(c.ConditionError) as err:
        c.validate_labels(labels)
    assert message.lower() in str(err.value).lower()


def test_label_files_check_their_json_shape(tmp_path):
    train, test = tmp_path / "train.json", tmp_path / "test.json"
    train.write_text(json.dumps({"a.png": ["red cube"]}, indent=4))  # pretty-printed is fine
    test.write_text(json.dumps([["red cube"], ["blue sphere", "cyan cube"]], indent=2))
    assert c.read_train_labels(train) == {"a.png": ["red cube"]}
    assert len(c.read_test_labels(test)) == 2
    with pytest.raises(c.ConditionError, match="list of label lists"):
        c.read_test_labels(train)
    with pytest.raises(c.ConditionError, match="dict from image name"):
        c.read_train_labels(test)
    (tmp_path / "bad.json").write_text("[[")
    with pytest.raises(c.ConditionError, match="not valid JSON"):
        c.read_test_labels(tmp_path / "bad.json")


def test_course_files_parse():
    assert len(c.read_train_labels(COURSE / "train.json")) == 18009
    assert len(c.read_test_labels(COURSE / "test.json")) == 32
    assert len(c.read_test_labels(COURSE / "new_test.json")) == 32
    c.check_objects_file(COURSE / "objects.json")


def test_label_string():
    assert c.parse_label_string(" Red  Sphere, cyan cube ") == ["red sphere", "cyan cube"]
    with pytest.raises(c.ConditionError):
        c.parse_label_string("red sphere, red sphere")
