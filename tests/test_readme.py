"""The README's commands run as written, in order, after `make demo`: each one is run in a fresh working
folder with the repository's recipes and samples, on tiny models (an override appended to the command)
so the suite stays quick; what differs from the README is only that override."""
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


def _block(section: str, language: str) -> list[str]:
    """The fenced `language` blocks of a README section."""
    body = README.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"```{language}\n(.*?)```", body, flags=re.S)


def _commands() -> list[str]:
    lines = []
    for block in _block("Use", "bash"):
        for line in block.splitlines():
            command = line.split("  #", 1)[0].strip()
            if command:
                lines.append(command)
    return lines


def _tiny(words: list[str], tiny_bert: str, tiny_llama: str) -> list[str]:
    """The command with the tiny model and short training appended where it trains."""
    trains = (words[0] == "textxfer" and words[1] in ("train", "adapt", "compare", "tune", "audit")) or "textxfer.train" in words
    if not trains:
        return words
    model = tiny_llama if any("smollm2" in w for w in words) else tiny_bert
    tiny = [f"model.name={model}", "data.max_length=32", "train.epochs=1", "train.min_steps=0"]
    more = {"compare": ["--per-class", "2", "--seeds", "1"], "tune": ["--trials", "2"]}.get(words[1], [])
    return [*words, *tiny, *more]


def _executable(word: str) -> list[str]:
    bin_dir = Path(sys.executable).parent
    if word in ("textxfer", "accelerate") and (bin_dir / word).exists():
        return [str(bin_dir / word)]
    if word == "python":
        return [sys.executable]
    return [word]


def test_the_readme_lists_runnable_commands_only():
    commands = _commands()
    assert len(commands) >= 15
    for missing in ("my.yaml", "tickets.csv", "new_tickets.csv", "tickets.txt"):
        assert not any(missing in c.split() or f"={missing}" in c for c in commands), missing


def test_the_readme_commands_run_as_written_after_make_demo(tmp_path, tiny_bert, tiny_llama):
    (tmp_path / "recipes").symlink_to(ROOT / "recipes")
    (tmp_path / "data_samples").symlink_to(ROOT / "data_samples")
    env = {**__import__("os").environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}

    def run(words: list[str]):
        done = subprocess.run(words, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"{' '.join(words)}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        assert "Traceback" not in done.stderr, done.stderr[-3000:]
        return done

    demo = _tiny(shlex.split("textxfer train recipes/tickets_minilm.yaml"), tiny_bert, tiny_llama)  # `make demo`
    run(_executable("textxfer") + demo[1:])
    for command in _commands():
        words = shlex.split(command)
        words = _tiny(words, tiny_bert, tiny_llama)
        run(_executable(words[0]) + words[1:])
    assert (tmp_path / "predictions.csv").is_file() and (tmp_path / "push-preview" / "README.md").is_file()
    assert (tmp_path / "onnx" / "tickets" / "model.onnx").is_file()
    assert (tmp_path / "runs" / "banking77-compare" / "comparison.md").is_file()

    # The Python snippets, with the same tiny override.
    for snippet in _block("Use", "python"):
        code = snippet.replace('"train.epochs=2"', f'"train.epochs=1", "model.name={tiny_bert}", "data.max_length=32"')
        done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, f"{code}\n{done.stderr[-3000:]}"
