"""`deskpilot bench step` end to end on the tiny architecture with a small screenshot."""

from __future__ import annotations

import json

import pytest

from app.cli import main as cli


def test_bench_step_compares_with_transformers_and_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    rc = cli(["bench", "step", "--config", "tiny", "--device", "cpu", "--screen", "256x160",
              "--decode-tokens", "3", "--warmup", "0", "--compare", "transformers",
              "--repeat", "3", "--decode", "eager", "--json", str(out)])
    assert rc == 0
    res = json.loads(out.read_text())
    assert res["config"] == "tiny" and res["weights"] == "random" and res["commit"]
    assert res["command"].startswith("deskpilot bench step --config tiny")
    assert res["repeat"] == 3 and res["decode_mode"] == "eager"
    first, cached, cold = res["steps"]
    assert [(s["step"], s["caches"]) for s in res["steps"]] == [
        (1, "n/a"), (2, "prefix+image"), (2, "off")]
    assert "same work as transformers" in cold["label"]
    assert first["reused_tokens"] == 0 and first["images_encoded"] == 1
    # step 2 reuses step 1's prompt and encodes only the new screenshot ...
    assert cached["reused_tokens"] >= first["prompt_tokens"]
    assert cached["images_encoded"] == 1
    # ... and with the caches off it recomputes everything, both screenshots included
    assert cold["reused_tokens"] == 0 and cold["images_encoded"] == 2
    assert cold["prompt_tokens"] == cached["prompt_tokens"]
    for step in res["steps"]:
        assert step["decode_tokens"] == 3
        for phase in ("preprocess", "vision", "prefill", "decode", "total"):
            e = step["phases"][phase]
            for who in ("ours", "transformers"):
                assert 0 < e[f"{who}_min_s"] <= e[f"{who}_s"] <= e[f"{who}_max_s"]
            ratio = e["transformers_s"] / e["ours_s"]  # medians, rounded to 0.1 ms
            assert e["speedup"] == pytest.approx(ratio, rel=0.1, abs=0.05)
        # a run's total is one run's sum of phases, so the fastest total is at least the sum
        # of each phase's fastest run (from possibly different runs)
        phases = step["phases"]
        fastest_parts = sum(phases[p]["ours_min_s"] for p in ("preprocess", "vision",
                                                              "prefill", "decode"))
        assert phases["total"]["ours_min_s"] >= fastest_parts - 1e-3
    assert "transformers" in capsys.readouterr().out


def test_bench_rejects_bad_screen_and_unknown_target(capsys):
    assert cli(["bench", "step", "--screen", "big"]) == 2
    assert "--screen" in capsys.readouterr().err
    assert cli(["bench", "nonsense"]) == 2
    assert "unknown benchmark" in capsys.readouterr().err
