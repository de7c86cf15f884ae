"""Export: each training format loads back with matching images, placeholders and targets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from agent.dialects.uitars import with_box_tokens
from agent.memenv import MemoryEnv
from agent.trajectory import Recorder, export_runs, load_run
from agent.trajectory.export import IMAGE_PLACEHOLDER, UITARS_IMAGE
from tests.trajectory_runs import REPLIES, make_step, record_run

SYSTEM = "You are a helpful assistant."


def _hand_run(tmp_path, n=3, outcome="finished", task="t"):
    rec = Recorder(tmp_path / "runs", task=task, dialect="uitars-1.5", model="m",
                   backend="script", monitors=[])
    env, history = MemoryEnv(320, 200), []
    for i in range(n):
        rec.write_step(make_step(i, env, history))
    if outcome:
        rec.finish(outcome)
    return rec.run_dir


def _load(out: Path, fmt: str) -> list[dict]:
    """Read an export back the way its trainer would, as (turns, images) per sample."""
    if fmt in ("llamafactory", "qwenvl"):
        return json.loads((out / "deskpilot.json").read_text(encoding="utf-8"))
    lines = (out / "deskpilot.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def _normalized(record: dict, fmt: str) -> tuple[list[tuple[str, str]], list[str]]:
    """(role, text) turns and image paths of one sample, in a common shape."""
    if fmt == "qwenvl":
        images = record.get("image", [])
        images = [images] if isinstance(images, str) else images
        roles = {"human": "user", "gpt": "assistant"}
        return [(roles[t["from"]], t["value"]) for t in record["conversations"]], images
    return [(m["role"], m["content"]) for m in record["messages"]], record["images"]


@pytest.mark.parametrize("fmt", ["llamafactory", "swift", "qwenvl", "uitars"])
def test_one_sample_per_step_with_the_images_the_model_saw(tmp_path, fmt):
    path = _hand_run(tmp_path)
    run = load_run(path)
    out = tmp_path / "out"
    result = export_runs([path], fmt, out)
    samples = _load(out, fmt)
    assert result.samples == len(samples) == 3
    token = UITARS_IMAGE if fmt == "uitars" else IMAGE_PLACEHOLDER
    for k, (record, step) in enumerate(zip(samples, run.steps)):
        turns, images = _normalized(record, fmt)
        assert len(images) == k + 1 == sum(text.count(token) for _, text in turns)
        # The last image is this step's model image, byte for byte, and exists under OUT.
        for name in images:
            assert (out / name).is_file() and name.startswith("images/")
        last = Image.open(out / images[-1])
        assert list(last.getdata()) == list(run.model_image(step).getdata())
        # The target is the reply as UI-TARS-1.5 shows it to the model (box tokens), and
        # so are the earlier replies before it, in order: one convention for every turn.
        assert turns[-1] == ("assistant", with_box_tokens(step["reply"]))
        assistant = [text for role, text in turns if role == "assistant"]
        assert assistant == [with_box_tokens(s["reply"]) for s in run.steps[: k + 1]]
        roles = [role for role, _ in turns]
        if fmt == "qwenvl":  # no system turn: the prompt opens the first human turn
            assert "system" not in roles and turns[0][1].startswith(SYSTEM + "\n")
        else:
            assert roles[0] == "system" and turns[0][1] == SYSTEM
        if fmt != "uitars":  # alternating turns after the optional system prompt
            body = [r for r in roles if r != "system"]
            assert body == ["user", "assistant"] * (len(body) // 2)


def test_loss_flags_train_only_the_target_per_step(tmp_path):
    path = _hand_run(tmp_path)
    export_runs([path], "swift", tmp_path / "swift")
    export_runs([path], "uitars", tmp_path / "uitars")
    swift = _load(tmp_path / "swift", "swift")[2]
    assert [m["loss"] for m in swift["messages"] if m["role"] == "assistant"] == [
        False, False, True]
    assert all("loss" not in m for m in swift["messages"] if m["role"] != "assistant")
    uitars = _load(tmp_path / "uitars", "uitars")[2]
    assert [m["loss_mask"] for m in uitars["messages"]][-1] == 1
    assert sum(m["loss_mask"] for m in uitars["messages"]) == 1


def test_per_run_trains_every_reply(tmp_path):
    path = _hand_run(tmp_path)
    export_runs([path], "swift", tmp_path / "out", per_run=True)
    (sample,) = _load(tmp_path / "out", "swift")
    assert [m["loss"] for m in sample["messages"] if m["role"] == "assistant"] == [True] * 3
    assert len(sample["images"]) == 3


def test_llamafactory_dataset_info_registers_the_file(tmp_path):
    out = tmp_path / "out"
    export_runs([_hand_run(tmp_path)], "llamafactory", out, dataset_name="mine")
    info = json.loads((out / "dataset_info.json").read_text())
    entry = info["mine"]
    assert (out / entry["file_name"]).is_file()
    assert entry["formatting"] == "sharegpt"
    assert entry["columns"] == {"messages": "messages", "images": "images"}
    assert entry["tags"]["system_tag"] == "system" and entry["tags"]["user_tag"] == "user"


def test_only_success_skips_runs_that_did_not_finish(tmp_path):
    good = _hand_run(tmp_path, n=2, task="good")
    stopped = _hand_run(tmp_path, n=2, outcome="stopped", task="stopped")
    crashed = _hand_run(tmp_path, n=2, outcome=None, task="crashed")
    result = export_runs([good, stopped, crashed], "llamafactory", tmp_path / "out",
                         only_success=True)
    assert result.samples == 2 and result.runs == 1
    assert len(result.skipped_runs) == 2 and "'running'" in " ".join(result.skipped_runs)
    everything = export_runs([good, stopped, crashed], "llamafactory", tmp_path / "all")
    assert everything.samples == 6


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="unknown export format 'alpaca'"):
        export_runs([], "alpaca", tmp_path)
    with pytest.raises(ValueError, match="unknown coordinate convention"):
        export_runs([], "swift", tmp_path, coords="relative1")


# --- real runs through the loop and the UI-TARS-1.5 dialect ------------------------------


def test_coordinates_rewritten_into_the_target_convention(tmp_path):
    path = record_run(tmp_path / "runs")
    run = load_run(path)
    kept = export_runs([path], "llamafactory", tmp_path / "keep")
    rel = export_runs([path], "llamafactory", tmp_path / "rel", coords="relative1000")
    assert kept.samples == rel.samples == len(REPLIES)
    keep_samples = _load(tmp_path / "keep", "llamafactory")
    rel_samples = _load(tmp_path / "rel", "llamafactory")
    assert keep_samples[0]["messages"][-1]["content"] == with_box_tokens(REPLIES[0])
    # click(100, 200) on the 1932x1092 model image -> 0..1000 of the same image.
    target = rel_samples[0]["messages"][-1]["content"]
    assert "(52,183)" in target.replace(" ", "") and "(100,200)" not in target
    drag = rel_samples[2]["messages"][-1]["content"].replace(" ", "")
    assert "(207,458)" in drag and "(414,458)" in drag
    # Earlier replies in later prompts are rewritten the same way.
    history = [m["content"] for m in rel_samples[3]["messages"] if m["role"] == "assistant"]
    assert "(52,183)" in history[0].replace(" ", "")
    # Actions without coordinates are untouched; the parsed actions still agree.
    from tests.trajectory_runs import dialect

    d = dialect()
    for step, sample in zip(run.steps, rel_samples):
        ours = d.parse(sample["messages"][-1]["content"], (1000, 1000)).actions
        theirs = d.parse(step["reply"], (1932, 1092)).actions
        assert [a.name for a in ours] == [a.name for a in theirs]
    same = export_runs([path], "llamafactory", tmp_path / "abs", coords="absolute")
    assert _load(tmp_path / "abs", "llamafactory") == keep_samples and same.samples == 6


def test_steps_with_unparseable_replies_are_not_targets(tmp_path):
    replies = [REPLIES[0], "Thought: hmm\nAction: clik(start_box='(1,2)')", *REPLIES[1:3],
               REPLIES[-1]]
    path = record_run(tmp_path / "runs", replies)
    run = load_run(path)
    assert run.steps[1]["parse_error"]
    result = export_runs([path], "swift", tmp_path / "out")
    samples = _load(tmp_path / "out", "swift")
    assert result.samples == 4 and result.skipped_steps == 1
    targets = [s["messages"][-1]["content"] for s in samples]
    assert replies[1] not in targets
    # Per run, the run is split at the bad step: the stretch before it, then the stretch
    # after it, whose context (the bad reply included, as the model saw it) is not trained.
    export_runs([path], "swift", tmp_path / "whole", per_run=True)
    before, after = _load(tmp_path / "whole", "swift")
    assert [m["loss"] for m in before["messages"] if m["role"] == "assistant"] == [True]
    losses = [m["loss"] for m in after["messages"] if m["role"] == "assistant"]
    assert losses == [False, False, True, True, True]
    bad = [m for m in after["messages"] if with_box_tokens(replies[1]) in m["content"]]
    assert len(bad) == 1 and bad[0]["loss"] is False


def test_export_command_takes_a_folder_of_runs(tmp_path, monkeypatch, capsys):
    from app.cli import main

    monkeypatch.setenv("DESKPILOT_CONFIG_DIR", str(tmp_path / "config"))
    _hand_run(tmp_path, n=2, task="one")
    _hand_run(tmp_path, n=3, task="two", outcome="stopped")
    out = tmp_path / "out"
    assert main(["export", str(tmp_path / "runs"), "--format", "qwenvl", "--out", str(out)]) == 0
    assert "5 samples from 2 runs" in capsys.readouterr().out
    assert len(_load(out, "qwenvl")) == 5
    args = ["export", str(tmp_path / "runs"), "--format", "qwenvl", "--out", str(tmp_path / "o2")]
    assert main([*args, "--only-success", "--per-run"]) == 0
    assert len(_load(tmp_path / "o2", "qwenvl")) == 1
    assert main(["export", str(tmp_path / "nope"), "--format", "swift", "--out", str(out)]) == 2
    assert "no such run" in capsys.readouterr().err


def test_qwen3_vl_run_exports_to_absolute_pixels(tmp_path):
    from agent import actions as A
    from tests.trajectory_runs import dialect

    d = dialect(name="qwen3-vl")
    replies = [
        d.format_reply("Click it.", [A.Click(A.Point(500, 250))]),
        d.format_reply("Done.", [A.Finished("ok")]),
    ]
    path = record_run(tmp_path / "runs", replies, dialect_name="qwen3-vl")
    assert load_run(path).meta["dialect"] == "qwen3-vl"
    export_runs([path], "qwenvl", tmp_path / "keep")
    export_runs([path], "qwenvl", tmp_path / "abs", coords="absolute")
    keep = _load(tmp_path / "keep", "qwenvl")[0]["conversations"][-1]["value"]
    absolute = _load(tmp_path / "abs", "qwenvl")[0]["conversations"][-1]["value"]
    assert keep == replies[0]
    # 0..1000 of a 1920x1080 screen resized to 1920x1088 (factor 32) -> model pixels.
    (click,) = d.parse(absolute, (1000, 1000)).actions
    assert (click.point.x, click.point.y) == (960, 272)


def test_runs_with_the_same_folder_name_keep_their_own_images(tmp_path):
    a = _hand_run(tmp_path / "a", n=1)
    b = _hand_run(tmp_path / "b", n=2)
    b = b.rename(b.parent / a.name)
    out = tmp_path / "out"
    result = export_runs([a, b], "llamafactory", out)
    samples = _load(out, "llamafactory")
    assert result.samples == 3
    dirs = {Path(name).parent for s in samples for name in s["images"]}
    assert dirs == {Path("images") / a.name, Path("images") / f"{a.name}-2"}
    for sample, (run, step) in zip(samples, [(a, 0), (b, 0), (b, 1)]):
        loaded = load_run(run)
        expected = loaded.model_image(loaded.steps[step])
        assert list(Image.open(out / sample["images"][-1]).getdata()) == list(expected.getdata())
