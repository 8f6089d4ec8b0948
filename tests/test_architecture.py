"""The package's shape, checked: the layers contract, methods asked instead of compared, every method
wired to a fitting plan and a saver, and a README key table that lists exactly the recipe's keys."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from textxfer.config import valid_keys
from textxfer.methods import METHODS


def test_the_layers_contract_holds():
    lint = Path(sys.executable).with_name("lint-imports")
    if not lint.exists():
        pytest.fail("lint-imports (import-linter) is not installed: `pip install -e '.[test]'`")
    done = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "1 kept, 0 broken" in done.stdout


def test_no_module_compares_method_names():
    pattern = re.compile(r"method\s*(==|!=|in \(|not in \()")
    found = [f"{path.relative_to(ROOT)}:{n}: {line.strip()}" for path in (ROOT / "textxfer").rglob("*.py")
             for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if pattern.search(line)]
    assert not found, "ask the method (textxfer.methods) instead:\n" + "\n".join(found)


def test_every_method_has_a_plan_a_saver_and_defaults():
    from textxfer.inference.classifier import _WEIGHTS
    from textxfer.training.plans import PLANS

    for method in METHODS.values():
        assert method.fit in PLANS, method.name
        assert method.saves in _WEIGHTS, method.name
        assert method.summary and method.trains, method.name
        assert (method.epochs is None) == (method.lr is None), method.name


def _readme_keys() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Recipes", 1)[1].split("\n## ", 1)[0]
    keys = []
    for line in section.splitlines():
        match = re.match(r"\| (`[^|]+`) \|", line)
        if not match:
            continue
        parts = [p.strip().strip("`") for p in match.group(1).split(" / ")]
        prefix = parts[0].rsplit(".", 1)[0] + "." if "." in parts[0] else ""
        keys += [p if "." in p or not prefix else prefix + p for p in parts]
    return keys


def test_the_readme_key_table_lists_exactly_the_recipe_keys():
    listed = _readme_keys()
    assert len(listed) == len(set(listed)), "a key is listed twice"
    assert sorted(listed) == sorted(valid_keys()), (f"missing from README: {sorted(set(valid_keys()) - set(listed))}; "
                                                    f"not recipe keys: {sorted(set(listed) - set(valid_keys()))}")


def test_library_messages_go_through_the_textxfer_logger_and_can_be_silenced(tmp_path, tiny_bert, caplog):
    import logging

    from conftest import train_tiny

    with caplog.at_level(logging.INFO, logger="textxfer"):
        train_tiny(tmp_path / "a", tiny_bert, epochs=1)
    said = [r for r in caplog.records if r.name.startswith("textxfer")]
    assert any("parameters train" in r.getMessage() for r in said) and all(r.levelno >= logging.INFO for r in said)
    caplog.clear()
    logger = logging.getLogger("textxfer")
    logger.setLevel(logging.ERROR)  # what a Python user does to silence it
    try:
        train_tiny(tmp_path / "b", tiny_bert, epochs=1)
    finally:
        logger.setLevel(logging.INFO)
    assert not [r for r in caplog.records if r.name.startswith("textxfer")]
