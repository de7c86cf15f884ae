"""Exports train exactly what the model saw (issue 11), checked against the formats' rules.

Runs are recorded through the real loop with history_n=2 (screenshots dropped, replies back
to back), a reply that fails to parse, and odd text (quotes, newlines, non-ASCII, a literal
<image>). Each record is rendered the way its trainer documents (LLaMA-Factory's qwen2_vl
template and ms-swift's qwen template are ChatML: system, then user turns ending in
"<|im_start|>assistant\\n", assistant turns ending in "<|im_end|>\\n") and compared with the
chat template's rendering of the messages the model really saw (turns.step_messages).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest
import yaml
from PIL import Image

from agent.dialects.uitars import with_box_tokens
from agent.memenv import MemoryEnv
from agent.trajectory import export_runs, load_run
from agent.trajectory.turns import chatml_boundary, step_messages
from tests.trajectory_runs import dialect, record_run

BAD = "Thought: hmm\nAction: clik(start_box='(1,2)')"
ODD = ("Thought: Type it, \"quoted\" — naïve 世界\nsecond line.\n"
       "Action: type(content='héllo \"世界\" 🙂')")
REPLIES = [
    "Thought: Open the menu.\nAction: click(start_box='(100,50)')",
    BAD,
    ODD,
    "Thought: Drag it.\nAction: drag(start_box='(100,100)', end_box='(300,120)')",
    "Thought: Scroll.\nAction: scroll(start_box='(322,182)', direction='down')",
    "Thought: Done.\nAction: finished(content='ok')",
]
WITH_IMAGE_TEXT = [
    REPLIES[0], REPLIES[2],
    "Thought: The page shows an <image> tag.\nAction: click(start_box='(100,50)')",
    REPLIES[3], REPLIES[5],
]
VISION = "<|vision_start|><|image_pad|><|vision_end|>"


def _record(runs: Path, replies: list[str]) -> Path:
    return record_run(runs, replies, env=MemoryEnv(640, 360), history_n=2)


@pytest.fixture(scope="module")
def long_run(tmp_path_factory) -> Path:
    return _record(tmp_path_factory.mktemp("runs"), REPLIES)


@pytest.fixture(scope="module")
def image_text_run(tmp_path_factory) -> Path:
    return _record(tmp_path_factory.mktemp("runs"), WITH_IMAGE_TEXT)


@pytest.fixture(scope="module")
def tokenizer_dir():
    from vlm.synthetic import build_tokenizer

    with tempfile.TemporaryDirectory() as folder:
        tok = build_tokenizer(Path(folder))
        yield Path(folder), tok


def _load(out: Path, fmt: str) -> list[dict]:
    if fmt in ("llamafactory", "qwenvl"):
        return json.loads((out / "deskpilot.json").read_text(encoding="utf-8"))
    return [json.loads(line) for line in (out / "deskpilot.jsonl").read_text().splitlines()]


def _render_chatml_pairs(record: dict) -> tuple[str, list[str]]:
    """A LLaMA-Factory / ms-swift record rendered by their Qwen templates' documented
    rules, and the texts that get labels (all assistant turns, or those with loss)."""
    messages = record["messages"]
    text, trained = "", []
    if messages[0]["role"] == "system":
        text += f"<|im_start|>system\n{messages[0]['content']}<|im_end|>\n"
        messages = messages[1:]
    # The formats' own rules: user/assistant pairs strictly alternating, one placeholder
    # per image.
    assert [m["role"] for m in messages] == ["user", "assistant"] * (len(messages) // 2)
    n_images = sum(m["content"].count("<image>") for m in messages)
    assert n_images == len(record["images"])
    for user, assistant in zip(messages[::2], messages[1::2]):
        text += f"<|im_start|>user\n{user['content']}<|im_end|>\n<|im_start|>assistant\n"
        text += f"{assistant['content']}<|im_end|>\n"
        if assistant.get("loss", True):
            trained.append(assistant["content"])
    return text.replace("<image>", VISION), trained


def _as_seen(run, step) -> list[dict]:
    """What the model saw at `step`, its reply written as the dialect shows replies."""
    messages = step_messages(run, step)
    last = messages[-1]["content"][0]
    last["text"] = with_box_tokens(last["text"])
    return messages


@pytest.mark.parametrize("fmt", ["llamafactory", "swift"])
def test_turns_render_exactly_like_what_the_model_saw(long_run, tokenizer_dir, tmp_path, fmt):
    _, tok = tokenizer_dir
    run = load_run(long_run)
    result = export_runs([long_run], fmt, tmp_path / "out")
    records = _load(tmp_path / "out", fmt)
    good = [s for s in run.steps if not s["parse_error"]]
    assert result.samples == len(records) == len(good) == 5
    for record, step in zip(records, good):
        rendered, trained = _render_chatml_pairs(record)
        assert rendered == tok.apply_chat_template(_as_seen(run, step), tokenize=False)
        # No reply glued to the next: every "Thought:" starts a turn of its own.
        assert "<|box_end|>')Thought:" not in rendered and "')Thought:" not in rendered
        if fmt == "swift":  # only the step's own reply carries loss
            assert trained == [with_box_tokens(step["reply"])]
    # The last step saw replies back to back (their screenshots dropped) and the bad one.
    last = records[-1]["messages"]
    assert len(records[-1]["images"]) == 2
    merged = [m["content"] for m in last if m["role"] == "assistant"][0]
    assert chatml_boundary("assistant", "assistant") in merged
    assert with_box_tokens(BAD) in merged


def test_per_run_never_trains_a_failed_reply(long_run, tokenizer_dir, tmp_path):
    _, tok = tokenizer_dir
    run = load_run(long_run)
    result = export_runs([long_run], "llamafactory", tmp_path / "out", per_run=True)
    records = _load(tmp_path / "out", "llamafactory")
    # Split at the failed step 1: steps [0] and [2..5], each from its last step.
    assert result.samples == 2 and result.skipped_steps == 1
    expected_targets = [[0], [2, 3, 4, 5]]
    for record, targets in zip(records, expected_targets):
        rendered, trained = _render_chatml_pairs(record)  # sharegpt trains every reply
        step = run.steps[targets[-1]]
        assert rendered == tok.apply_chat_template(_as_seen(run, step), tokenize=False)
        sep = chatml_boundary("assistant", "assistant")
        replies = [reply for text in trained for reply in text.split(sep)]
        assert replies == [with_box_tokens(run.steps[i]["reply"]) for i in targets]
        assert all(with_box_tokens(BAD) not in t for t in trained)
    # The failed reply is context of the second sample: inside its first user turn.
    assert with_box_tokens(BAD) in records[1]["messages"][1]["content"]
    config = yaml.safe_load((tmp_path / "out" / "llamafactory_sft.yaml").read_text())
    assert config["mask_history"] is False
    for fmt in ("swift", "uitars"):
        export_runs([long_run], fmt, tmp_path / fmt, per_run=True)
        records = _load(tmp_path / fmt, fmt)
        assert len(records) == 2
        key = "loss" if fmt == "swift" else "loss_mask"
        for record in records:
            for m in record["messages"]:
                if with_box_tokens(BAD) in m["content"]:
                    assert not m[key]


@pytest.mark.parametrize("coords", ["keep", "relative1000"])
def test_one_coordinate_convention_for_every_turn(long_run, tmp_path, coords):
    """A reply reads the same as a target and in every later prompt, in every format."""
    run = load_run(long_run)
    export_runs([long_run], "uitars", tmp_path / "u", coords=coords)
    export_runs([long_run], "swift", tmp_path / "s", coords=coords)
    uitars, swift = _load(tmp_path / "u", "uitars"), _load(tmp_path / "s", "swift")
    good = [s["index"] for s in run.steps if not s["parse_error"]]
    target = {i: r["messages"][-1]["content"] for i, r in zip(good, uitars)}
    d = dialect()
    for record in uitars:
        replies = [m["content"] for m in record["messages"] if m["role"] == "assistant"]
        for earlier, text in enumerate(replies):
            if earlier in target:
                assert text == target[earlier]
            assert text == with_box_tokens(text)  # UI-TARS-1.5 notation everywhere
        space = (1000, 1000) if coords == "relative1000" else (644, 364)
        for action in d.parse(replies[-1], space).actions:
            point = getattr(action, "point", None) or getattr(action, "start", None)
            if point is not None:
                assert 0 <= point.x <= space[0] and 0 <= point.y <= space[1]
    # The joined formats carry the very same texts.
    sep = chatml_boundary("assistant", "assistant")
    for s_record, u_record in zip(swift, uitars):
        joined = [m["content"] for m in s_record["messages"] if m["role"] == "assistant"]
        assert sep.join(joined) == sep.join(
            m["content"] for m in u_record["messages"] if m["role"] == "assistant")
    if coords == "relative1000":
        # click(100, 50) on the 644x364 model image -> 0..1000
        assert "(155,137)" in target[0]


def test_odd_text_survives_every_format_byte_for_byte(image_text_run, tmp_path):
    shown = with_box_tokens(ODD)
    for fmt in ("llamafactory", "swift", "qwenvl", "uitars"):
        export_runs([image_text_run], fmt, tmp_path / fmt)
        records = _load(tmp_path / fmt, fmt)
        turns = [t.get("content", t.get("value")) for r in records
                 for t in r.get("messages", r.get("conversations", []))]
        assert shown in turns  # the step's own target, exactly
        data = next(p for p in (tmp_path / fmt).iterdir() if p.name.startswith("deskpilot."))
        assert "naïve 世界" in data.read_text(encoding="utf-8")  # UTF-8, not \u escapes


def test_a_literal_image_placeholder_skips_those_samples_in_every_format(
        image_text_run, tmp_path, monkeypatch, capsys):
    counts = {}
    for fmt in ("llamafactory", "swift", "qwenvl", "uitars"):
        result = export_runs([image_text_run], fmt, tmp_path / fmt)
        counts[fmt] = (result.samples, result.skipped_samples)
        # Step 2 wrote "<image>"; step 3 and 4 carry it in their history.
        assert len(result.warnings) == 3
        assert all(str(image_text_run) in w for w in result.warnings)
        assert "step 2" in result.warnings[0] and "'<image>'" in result.warnings[0]
        for record in _load(tmp_path / fmt, fmt):
            text = json.dumps(record, ensure_ascii=False)
            assert "an <image> tag" not in text
    assert set(counts.values()) == {(2, 3)}
    from app.cli import main

    monkeypatch.setenv("DESKPILOT_CONFIG_DIR", str(tmp_path / "config"))
    args = ["export", str(image_text_run), "--format", "llamafactory", "--out", str(tmp_path / "c")]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "3 bad samples skipped" in captured.out
    assert "step 2" in captured.err and "'<image>'" in captured.err


def _exact_tokens(record: dict, tok, out: Path) -> int:
    """Tokens of a LLaMA-Factory sample as its qwen2_vl template and plugin build it:
    each <image> becomes <|vision_start|>, (w/28)*(h/28) image tokens, <|vision_end|>."""
    rendered, _ = _render_chatml_pairs(record)
    pads = 0
    for name in record["images"]:
        width, height = Image.open(out / name).size
        pads += (width // 28) * (height // 28) - 1  # the rendered text holds one already
    return len(tok(rendered, add_special_tokens=False)["input_ids"]) + pads


def test_trainer_configs_carry_values_computed_from_the_data(
        long_run, tokenizer_dir, tmp_path, monkeypatch, capsys):
    folder, tok = tokenizer_dir
    out = tmp_path / "lf"
    result = export_runs([long_run], "llamafactory", out, tokenizer=folder)
    records = _load(out, "llamafactory")
    config = yaml.safe_load((out / "llamafactory_sft.yaml").read_text())
    longest = max(_exact_tokens(r, tok, out) for r in records)
    sizes = [Image.open(out / n).size for r in records for n in r["images"]]
    assert config["cutoff_len"] == longest == result.longest_tokens
    assert config["image_max_pixels"] == max(w * h for w, h in sizes) == 644 * 364
    assert config["image_min_pixels"] == min(w * h for w, h in sizes)
    assert config["template"] == "qwen2_vl" and config["mask_history"] is True
    assert Path(config["dataset_dir"]) == out.resolve()
    info = json.loads((Path(config["dataset_dir"]) / "dataset_info.json").read_text())
    assert config["dataset"] in info
    for record in records:
        assert all((Path(config["media_dir"]) / n).is_file() for n in record["images"])
    # Without a tokenizer the count is an upper bound, never short of the real one...
    bound = export_runs([long_run], "llamafactory", tmp_path / "bound")
    assert bound.longest_tokens >= longest
    # ... unless the runs were recorded with a local checkpoint: its tokenizer counts.
    own = tmp_path / "own" / long_run.name
    shutil.copytree(long_run, own)
    meta = json.loads((own / "meta.json").read_text())
    (own / "meta.json").write_text(json.dumps({**meta, "model": str(folder)}))
    assert export_runs([own], "llamafactory", tmp_path / "own-out").longest_tokens == longest

    out = tmp_path / "swift"
    export_runs([long_run], "swift", out, tokenizer=folder)
    swift = yaml.safe_load((out / "swift_sft.yaml").read_text())
    assert swift["template"] == "qwen2_5_vl"
    assert swift["max_length"] == longest and swift["truncation_strategy"] == "delete"
    assert swift["max_pixels"] == 644 * 364 and swift["ENV"]["MAX_PIXELS"] == str(644 * 364)
    (dataset,) = swift["dataset"]
    assert Path(dataset).is_absolute() and Path(dataset).is_file()
    root = Path(swift["ENV"]["ROOT_IMAGE_DIR"])
    assert root.is_absolute()
    for record in _load(out, "swift"):
        assert all((root / n).is_file() for n in record["images"])

    from app.cli import main

    monkeypatch.setenv("DESKPILOT_CONFIG_DIR", str(tmp_path / "config"))
    assert main(["export", str(long_run), "--format", "llamafactory", "--out",
                 str(tmp_path / "cli"), "--tokenizer", str(folder)]) == 0
    printed = capsys.readouterr().out
    for line in (f"cutoff_len: {longest}", f"image_max_pixels: {644 * 364}",
                 "mask_history: true", "template: qwen2_vl"):
        assert line in printed


def test_the_export_docs_live_in_the_project():
    import agent.trajectory.export as export

    assert "REFERENCE.md" not in export.__doc__
    assert "dataset_info.json" in export.__doc__ and "loss_mask" in export.__doc__
