"""Bad input: one clear paragraph naming file, row/line and column, exit status 2, no traceback."""
import subprocess
import sys

import pytest

from conftest import ROOT, SAMPLES, write, write_recipe
from textxfer.config import DataConfig
from textxfer.data.splits import load_splits
from textxfer.errors import TextxferError

GOOD = "text,label\n" + "".join(f"ticket number {i} about {'cards' if i % 2 else 'fees'},{'card' if i % 2 else 'fee'}\n" for i in range(20))


def all_texts(result) -> list:
    return list(result.train["text"]) + list(result.validation["text"])


def splits(**data):
    return load_splits(DataConfig(**data), seed=0)


def error_of(**data) -> str:
    with pytest.raises(TextxferError) as err:
        splits(**data)
    message = str(err.value)
    assert "\n" not in message, "errors are one paragraph"
    return message


# A bad file and what its one-paragraph error must say (file, line or row, column, and the fix).
BAD_FILES = [
    ("empty.csv", "", ["empty.csv", "is empty"]),
    ("head.csv", "text,label\n", ["head.csv", "no data rows"]),
    ("t.csv", "texts,label\nhello,a\nbye,b\n",
     ["no column `text`", "texts, label", "Did you mean `texts`", "data.text_column=texts"]),
    ("t.csv", "text,intent\nhello,a\nbye,b\n", ["no column `label`", "data.label_column", "intent"]),
    ("t.jsonl", '{"text": "a", "label": "x"}\n{"text": "b", "label": "y"}\n{"text": "c"}\n', ["line 3", "t.jsonl"]),
    ("q.csv", GOOD + '"an unclosed quote,fee\nmore text,card\n', ["q.csv", "line 22", "quote"]),
    ("f.csv", GOOD + "hello, world,fee\n", ["f.csv", "line 22", "3 fields"]),
    ("j.jsonl", '{"text": "a", "label": "x"}\n{"text": "b", "label": "y"\n{"text": "c", "label": "x"}\n',
     ["j.jsonl", "line 2"]),
]


@pytest.mark.parametrize("name,content,fragments", BAD_FILES, ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(BAD_FILES)])
def test_a_bad_file_gets_one_paragraph_naming_where_and_how_to_fix(tmp_path, name, content, fragments):
    msg = error_of(train=str(write(tmp_path, name, content)))
    for fragment in fragments:
        assert fragment in msg, (fragment, msg)


def test_missing_file(tmp_path):
    msg = error_of(train=str(tmp_path / "nope.csv"))
    assert "nope.csv" in msg and "does not exist" in msg and "data.train" in msg


def test_empty_text_and_missing_label_name_file_and_row(tmp_path):
    path = write(tmp_path, "t.csv", GOOD + "   ,fee\nsomething,\n")
    msg = error_of(train=str(path))
    assert "t.csv" in msg and "2 invalid row(s)" in msg
    assert "row 21" in msg and "text" in msg and "row 22" in msg and "label" in msg
    assert "data.drop_invalid_rows=true" in msg


def test_drop_invalid_rows_drops_and_says_how_many(tmp_path, caplog):
    path = write(tmp_path, "t.csv", GOOD + "   ,fee\nsomething,\n")
    result = splits(train=str(path), drop_invalid_rows=True)
    assert len(result.train) + len(result.validation) == 20
    assert "dropped 2 invalid row(s) of 22" in caplog.text and caplog.records[-1].levelname == "WARNING"


@pytest.mark.parametrize("value,kind", [('{"subject": "card", "body": "lost"}', "an object"),
                                        ('["my card", "is lost"]', "a list")])
def test_a_jsonl_text_that_is_an_object_or_a_list_is_refused_with_its_line(tmp_path, value, kind):
    lines = [f'{{"text": {value}, "label": "card"}}' for _ in range(6)]
    path = write(tmp_path, "t.jsonl", "\n".join(lines) + "\n")
    msg = error_of(train=str(path))
    assert f"{kind} instead of a text" in msg and "line 1" in msg and "`text`" in msg and "t.jsonl" in msg


def test_a_jsonl_text_of_mixed_types_names_the_line(tmp_path):
    lines = ['{"text": "my card is lost", "label": "card"}'] * 5 + ['{"text": {"body": "lost"}, "label": "card"}']
    path = write(tmp_path, "t.jsonl", "\n".join(lines) + "\n")
    msg = error_of(train=str(path))
    assert "line 6" in msg and "`text`" in msg and "t.jsonl" in msg


def test_nested_multi_label_values_are_refused(tmp_path):
    path = write(tmp_path, "t.jsonl", '{"text": "a", "label": ["x", "y"]}\n{"text": "b", "label": [["x"]]}\n')
    msg = error_of(train=str(path), multi_label=True)
    assert "line 2" in msg and "nested" in msg


def test_non_utf8_bytes_name_the_line_and_suggest_encoding(tmp_path):
    content = GOOD.encode() + "caf\xe9 au lait,fee\n".encode("latin-1")
    path = write(tmp_path, "l.csv", content)
    msg = error_of(train=str(path))
    assert "l.csv" in msg and "line 22" in msg and "data.encoding" in msg
    ok = splits(train=str(path), encoding="latin-1")
    assert "café au lait" in all_texts(ok)


def test_single_class(tmp_path):
    path = write(tmp_path, "one.csv", "text,label\na,x\nb,x\nc,x\n")
    msg = error_of(train=str(path))
    assert "single class" in msg and "'x'" in msg


def test_unseen_labels_in_test_are_listed(tmp_path):
    train = write(tmp_path, "train.csv", GOOD)
    test = write(tmp_path, "test.csv", "text,label\na,card\nb,refund\nc,refund\nd,chargeback\n")
    msg = error_of(train=str(train), test=str(test))
    assert "test.csv" in msg and "'refund' (2 rows)" in msg and "'chargeback' (1 row)" in msg


def test_unseen_labels_in_validation_are_listed(tmp_path):
    train = write(tmp_path, "train.csv", GOOD)
    val = write(tmp_path, "val.csv", "text,label\na,card\nb,refund\n")
    assert "val.csv" in error_of(train=str(train), validation=str(val))


def test_validation_file_is_used_as_given(tmp_path):
    train = write(tmp_path, "train.csv", GOOD)
    val = write(tmp_path, "val.jsonl", '{"text": "lost card", "label": "card"}\n{"text": "atm fee", "label": "fee"}\n')
    result = splits(train=str(train), validation=str(val))
    assert len(result.train) == 20 and list(result.validation["text"]) == ["lost card", "atm fee"]
    assert [result.labels.id2label[i] for i in result.validation["label"]] == ["card", "fee"]


def test_class_too_small_to_stratify_falls_back_with_a_note(tmp_path):
    path = write(tmp_path, "t.csv", GOOD + "a lonely example,rare\n")
    result = splits(train=str(path))
    assert "rare" in result.labels.labels
    assert any("rare" in note and "cannot be stratified" in note for note in result.notes)
    rare_id = result.labels.label2id["rare"]
    assert rare_id in list(result.train["label"]) and rare_id not in list(result.validation["label"])


def test_bom_quoted_newlines_and_crlf_simply_load(tmp_path):
    body = 'text,label\r\n"first line\r\nsecond line, with comma",a\r\n"say ""hi""",b\r\n' + \
           "".join(f"row {i},{'ab'[i % 2]}\r\n" for i in range(10))
    path = write(tmp_path, "excel.csv", b"\xef\xbb\xbf" + body.encode())
    result = splits(train=str(path))
    texts = all_texts(result)
    assert "first line\r\nsecond line, with comma" in texts or "first line\nsecond line, with comma" in texts
    assert 'say "hi"' in texts and result.labels.labels == ["a", "b"]


def test_texts_like_na_and_none_are_kept_as_text(tmp_path):
    path = write(tmp_path, "na.csv", "text,label\nNA,a\nNone,b\nnull,a\nn/a,b\n")
    result = splits(train=str(path))
    assert sorted(all_texts(result)) == ["NA", "None", "n/a", "null"]


def test_integer_labels_sort_numerically(tmp_path):
    path = write(tmp_path, "i.jsonl", "".join(f'{{"text": "t{i}", "label": {i % 11}}}\n' for i in range(44)))
    assert splits(train=str(path)).labels.labels == [str(i) for i in range(11)]


def test_stratified_split_is_seeded_and_keeps_every_class(tmp_path):
    a, b = splits(train=str(SAMPLES / "tickets_small.csv")), splits(train=str(SAMPLES / "tickets_small.csv"))
    assert list(a.validation["text"]) == list(b.validation["text"])
    assert set(list(a.validation["label"])) == set(range(10)) and len(a.train) + len(a.validation) == 60


def test_cli_exits_2_with_one_paragraph(tmp_path, cli):
    recipe = write_recipe(tmp_path, data={"train": str(tmp_path / "missing.csv")})
    code, out, err = cli("train", recipe)
    assert code == 2 and "missing.csv" in err and "Traceback" not in err
    assert err.startswith("textxfer: error:") and err.strip().count("\n") == 0


def test_no_traceback_from_the_real_command(tmp_path):
    bad = write(tmp_path, "bad.csv", 'text,label\n"never closed,a\nb,c\n')
    proc = subprocess.run([sys.executable, "-m", "textxfer", "train", str(ROOT / "recipes" / "tickets_minilm.yaml"),
                           f"data.train={bad}", f"output_dir={tmp_path / 'run'}"], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)  # its own output_dir: the checkout may hold the demo's run
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "bad.csv" in proc.stderr and "line 2" in proc.stderr


def test_a_test_file_with_other_columns_than_train_says_so_and_points_at_data_test(tmp_path):
    """Your own CSV (other column names) with a recipe's inherited test file: renaming the columns for
    the test file would break the train file, so the message says the files disagree."""
    own = write(tmp_path, "mine.csv", "ticket_body,queue\n" + "".join(
        f"ticket {i} about {'cards' if i % 2 else 'fees'},{'card' if i % 2 else 'fee'}\n" for i in range(20)))
    msg = error_of(train=str(own), test=str(SAMPLES / "tickets_test.csv"), text_column="ticket_body",
                   label_column="queue")
    assert "tickets_test.csv" in msg and "different columns" in msg and "mine.csv" in msg
    assert "data.test=null" in msg and "data.test=PATH" in msg and "data.text_column=text" not in msg
