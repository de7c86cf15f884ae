"""Training samples from recorded runs and sharegpt JSON: the messages the model saw, the
reply (and only the reply) as the target, skipped steps, coordinates re-expressed in the
base's dialect, and clear errors naming the file."""

from __future__ import annotations

import json
import re

import pytest

from agent.memenv import MemoryEnv
from agent.settings import Settings
from tests.tiny_checkpoints import tiny_checkpoint, tiny_family_checkpoint
from tests.trajectory_runs import record_run
from train.data import IGNORE, DataError, ImageCache, base_speaks, load_samples, step_messages
from vlm.weights import read_config

SETTINGS = Settings(max_pixels=100352)  # 640x360 -> 420x224 (uitars-1.5), 416x224 (qwen3-vl)
CLICK = "Thought: Click the centre.\nAction: click(start_box='(210,112)')"
BAD = "Thought: hmm\nAction: clack()"
TYPE = "Thought: Type.\nAction: type(content='hi')"
DONE = "Thought: Done.\nAction: finished(content='ok')"


def speaks_for(family: str):
    folder, _ = tiny_checkpoint() if family == "qwen3_vl_moe" else tiny_family_checkpoint(family)
    return base_speaks(folder, read_config(folder), SETTINGS)


def record(tmp_path, replies, name="runs", **kw):
    return record_run(tmp_path / name, replies, env=MemoryEnv(640, 360), **kw)


def target_text(sample, processor) -> str:
    return processor.decode([t for t in sample.labels if t != IGNORE])


def uitars_run(tmp_path, replies, **kw):
    from agent.dialects import get_dialect
    from tests import trajectory_runs

    original = trajectory_runs.dialect
    trajectory_runs.dialect = lambda h=5, n="uitars-1.5": get_dialect(n, history_n=h,
                                                                     max_pixels=100352)
    try:
        return record(tmp_path, replies, **kw)
    finally:
        trajectory_runs.dialect = original


def test_same_dialect_keeps_the_recorded_prompt_and_trains_only_the_reply(tmp_path):
    speaks = speaks_for("qwen2_5_vl")  # speaks uitars-1.5, as the run was recorded
    run_dir = uitars_run(tmp_path, [CLICK, TYPE, DONE])
    samples = load_samples([str(run_dir)], speaks)
    assert len(samples) == 3
    p = speaks.processor
    for sample, reply in zip(samples, [CLICK, TYPE, DONE]):
        assert target_text(sample, p) == reply + "<|im_end|>"
        first = next(i for i, t in enumerate(sample.labels) if t != IGNORE)
        assert all(t != IGNORE for t in sample.labels[first:])  # one contiguous target
    # the prompt is the recorded messages rendered by the checkpoint's own template
    from agent.trajectory import load_run

    run = load_run(run_dir)
    messages = step_messages(run, run.steps[2], ImageCache())
    assert messages[-1] == {"role": "assistant", "content": [{"type": "text", "text": DONE}]}
    prompt = p(messages[:-1])
    assert samples[2].input_ids[: len(prompt.input_ids)] == prompt.input_ids
    assert len(samples[2].images) == 3  # the history screenshots and the new one
    assert "Click the centre." in p.decode(samples[2].input_ids)  # earlier replies: context


def test_steps_that_failed_to_parse_are_skipped_and_only_success_skips_runs(tmp_path):
    speaks = speaks_for("qwen2_5_vl")
    run_dir = uitars_run(tmp_path, [BAD, CLICK, DONE])
    samples = load_samples([str(run_dir)], speaks)
    assert [target_text(s, speaks.processor) for s in samples] == [
        CLICK + "<|im_end|>", DONE + "<|im_end|>"]
    unfinished = uitars_run(tmp_path, [CLICK, TYPE], name="other")
    with pytest.raises(DataError, match="every input was skipped"):
        load_samples([str(unfinished)], speaks, only_success=True)
    assert len(load_samples([str(tmp_path / "runs"), str(unfinished)], speaks,
                            only_success=True)) == 2


def test_other_dialect_is_rebuilt_with_coordinates_moved_through_the_frame(tmp_path):
    speaks = speaks_for("qwen3_vl_moe")  # speaks qwen3-vl: 0..1000 at factor 32
    run_dir = uitars_run(tmp_path, [CLICK, DONE])  # uitars-1.5: centre of 420x224 is (210,112)
    samples = load_samples([str(run_dir)], speaks)
    text = target_text(samples[0], speaks.processor)
    call = json.loads(re.search(r"<tool_call>\n(.*)\n</tool_call>", text).group(1))
    assert call["arguments"]["coordinate"] == [500, 500]  # the same place on the screen
    assert samples[0].images[0].size == (416, 224)  # resized as qwen3-vl resizes it
    assert "computer_use" in speaks.processor.decode(samples[0].input_ids)  # its own prompt
    history = speaks.processor.decode(samples[1].input_ids)
    assert '"coordinate": [500, 500]' in history and "start_box" not in history


def test_a_history_reply_that_never_parsed_is_refused_with_how_to_convert(tmp_path):
    speaks = speaks_for("qwen3_vl_moe")
    run_dir = uitars_run(tmp_path, [BAD, CLICK, DONE])
    with pytest.raises(DataError, match=r"step 0.*uitars-1\.5.*qwen3-vl.*deskpilot export"):
        load_samples([str(run_dir)], speaks)
    # a failed last reply is in no later prompt: the steps before it still train
    last_bad = uitars_run(tmp_path, [CLICK, BAD], name="last-bad")
    assert len(load_samples([str(last_bad)], speaks)) == 1


def test_bad_inputs_name_the_file(tmp_path):
    speaks = speaks_for("qwen2_5_vl")
    run_dir = uitars_run(tmp_path, [CLICK, DONE])
    (run_dir / "step_0000_model.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="step_0000_model.png: cannot read the image"):
        load_samples([str(run_dir)], speaks)
    only_bad = uitars_run(tmp_path, [BAD, BAD], name="bad")
    with pytest.raises(DataError, match=r"steps\.jsonl: no usable steps"):
        load_samples([str(only_bad)], speaks)
    with pytest.raises(DataError, match="neither a run folder nor a folder of runs"):
        load_samples([str(tmp_path)], speaks)


def test_sharegpt_json_with_its_images(tmp_path):
    from tests.vlm_parity_checks import noise_image

    speaks = speaks_for("qwen3_vl_moe")
    (tmp_path / "img").mkdir()
    noise_image(96, 64, 1).save(tmp_path / "img" / "a.png")
    noise_image(64, 64, 2).save(tmp_path / "img" / "b.png")
    records = [{"messages": [
        {"role": "system", "content": "You are a GUI agent."},
        {"role": "user", "content": "<image>open the menu"},
        {"role": "assistant", "content": "click menu"},
        {"role": "user", "content": "<image>"},
        {"role": "assistant", "content": "Thought: ok\nAction: wait()"}],
        "images": ["img/a.png", "img/b.png"]}]
    path = tmp_path / "data.json"
    path.write_text(json.dumps(records))
    (sample,) = load_samples([str(path)], speaks)
    assert [img.size for img in sample.images] == [(96, 64), (64, 64)]
    assert target_text(sample, speaks.processor) == "Thought: ok\nAction: wait()<|im_end|>"
    assert "click menu" in speaks.processor.decode(sample.input_ids)
    records[0]["images"] = ["img/a.png"]
    path.write_text(json.dumps(records))
    with pytest.raises(DataError, match=r"data\.json record 0: 2 <image> placeholders but 1"):
        load_samples([str(path)], speaks)


