"""sim-eval's summary and side-by-side table: interval, tokenisation and training cost columns."""

import json
from pathlib import Path

import numpy as np
import pytest
from policy_helpers import tiny_policy

from faster_ros.policy.action_codecs import BinningCodec
from faster_ros.ros.sim_eval import load_row, main, paired, plot, policy_facts, summarize, table
from faster_ros.stats import wilson_interval


def test_wilson_interval_known_values():
    lo, hi = wilson_interval(0, 50)
    assert lo == 0.0 and hi == pytest.approx(0.0713, abs=1e-4)
    lo, hi = wilson_interval(30, 50)
    assert (lo, hi) == (pytest.approx(0.4618, abs=1e-4), pytest.approx(0.7239, abs=1e-4))


def test_table_names_tokenisation_tokens_and_training_cost(tmp_path):
    model = tiny_policy()
    cfg = model.config
    codec = BinningCodec(cfg.chunk_size, cfg.action_dim, bins=cfg.codebook_size)
    codec.fit(np.random.default_rng(0).uniform(0, 1, (20, cfg.chunk_size, cfg.action_dim)))
    codec.save(tmp_path / "vla" / "action_tokenizer")
    model.tokenizer_ref = "action_tokenizer"
    model.provenance = {"steps": 3000, "wall_time_s": 612.0}
    model.save_pretrained(tmp_path / "vla")
    facts = policy_facts(str(tmp_path / "vla"))
    assert facts == {"action_tokens": "bins", "tokens_per_chunk": cfg.tokens_per_chunk,
                     "train_steps": 3000, "train_wall_s": 612.0, "train_runs": 1}
    assert policy_facts("builtin:wave") == {}
    results = [dict(seed=s, strict_success=s < 3, builtin_success=s < 4, steps_per_s=20.0,
                    max_reward=4 if s < 4 else (2 if s < 6 else (1 if s < 7 else 0)))
               for s in range(10)]
    summary = summarize(results, [50.0, 60.0, 70.0], "bins", 100.0)
    summary["policy"] = facts
    path = tmp_path / "results.json"
    path.write_text(json.dumps(summary))
    row = table([str(path)]).splitlines()[-1]
    assert row.startswith(f"| bins | bins | {cfg.tokens_per_chunk} | 3000, 10.2 | 10 | 30% [")
    assert summary["stage_rates"] == {"touched": 0.7, "lifted": 0.6, "left_touch": 0.4}
    assert "| 40% | 70% / 60% | 60.0 / 69.0 | 100.0 |" in row
    png = plot([str(path), str(path)], tmp_path / "success.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    # continued twice: the table counts the whole lineage, not the last run
    model.provenance = {"steps": 2000, "wall_time_s": 300.0,
                        "init_from": {"path": str(tmp_path / "vla"), "steps": 3000,
                                      "wall_time_s": 612.0}}
    model.save_pretrained(tmp_path / "vla2")
    model.provenance = {"steps": 1000, "wall_time_s": 150.0,
                        "init_from": {"path": str(tmp_path / "vla2"), "steps": 2000,
                                      "wall_time_s": 300.0}}
    model.save_pretrained(tmp_path / "vla3")
    summary["policy"] = policy_facts(str(tmp_path / "vla3"))
    assert summary["policy"]["train_runs"] == 3 and summary["policy"]["train_steps"] == 6000
    path.write_text(json.dumps(summary))
    assert "| 6000 (3 runs), 17.7 |" in table([str(path)])


def test_lineage_follows_init_from_and_keeps_a_recorded_chain(tmp_path):
    from faster_ros.policy.lineage import POLICY_FILE, totals, training_runs

    def save(name, prov):
        (tmp_path / name).mkdir()
        (tmp_path / name / POLICY_FILE).write_text(json.dumps({"provenance": prov}))
        return str(tmp_path / name)

    a = save("a", {"steps": 100, "wall_time_s": 10.0})
    b = save("b", {"steps": 200, "wall_time_s": 20.0,
                   "init_from": {"path": a, "steps": 100, "wall_time_s": 10.0}})
    runs = training_runs(b)
    assert [r["path"] for r in runs] == [b, a]
    assert totals(runs) == {"runs": 2, "steps": 300, "wall_time_s": 30.0}
    c = save("c", {"steps": 300, "wall_time_s": 30.0,
                   "init_from": {"path": b, "steps": 200, "wall_time_s": 20.0,
                                 "chain": training_runs(b)}})
    import shutil

    shutil.rmtree(tmp_path / "a")
    shutil.rmtree(tmp_path / "b")  # the runs are gone; the recorded chain is not
    assert totals(training_runs(c)) == {"runs": 3, "steps": 600, "wall_time_s": 60.0}
    d = save("d", {"steps": 50, "wall_time_s": 5.0,
                   "init_from": {"path": b, "steps": 200, "wall_time_s": 20.0}})
    assert totals(training_runs(d)) == {"runs": 2, "steps": 250, "wall_time_s": 25.0}  # b gone
    assert training_runs(tmp_path / "nothing") == []
    assert totals([]) == {"runs": 0, "steps": None, "wall_time_s": None}


@pytest.mark.parametrize("no_stack", [False, True])
def test_a_missing_model_is_refused_before_any_episode(tmp_path, capsys, no_stack):
    missing = tmp_path / "no_such_model"
    with pytest.raises(SystemExit) as stop:
        main(["--model", str(missing), "--episodes", "1", "--out", str(tmp_path / "out")]
             + (["--no-stack"] if no_stack else []))
    assert stop.value.code == 2
    assert f"model directory not found: {missing}" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def _episodes(seeds, solved):
    return [dict(seed=s, strict_success=s in solved, builtin_success=s in solved,
                 steps_per_s=20.0, max_reward=4 if s in solved else 1) for s in seeds]


def test_table_pools_seed_ranges_and_pairs_rows_on_shared_seeds(tmp_path, capsys):
    def write(name, seeds, solved, lat, policy):
        summary = summarize(_episodes(seeds, solved), lat, name, 10.0)
        summary["policy"] = policy
        (tmp_path / f"{name}.json").write_text(json.dumps(summary))
        return str(tmp_path / f"{name}.json")

    a1 = write("a", range(0, 10), {0, 1, 2, 3, 4, 5, 6, 7}, [40.0, 50.0], {"action_tokens": "x"})
    a2 = write("a2", range(10, 20), {10, 11, 12, 13, 14, 15}, [60.0, 90.0],
               {"action_tokens": "x"})
    b1 = write("b", range(0, 10), {0, 1}, [80.0], {"action_tokens": "y"})
    b2 = write("b2", range(10, 20), {10, 19}, [80.0], {"action_tokens": "y"})
    pooled = load_row(f"{a1}+{a2}")
    assert pooled["episodes"] == 20 and pooled["strict_successes"] == 14
    assert pooled["strict_success_ci95"] == [round(v, 4) for v in wilson_interval(14, 20)]
    assert pooled["latency_ms"]["chunks"] == 4 and pooled["latency_ms"]["mean"] == 60.0
    assert pooled["latency_ms"]["p95"] == max(json.loads(Path(p).read_text())["latency_ms"]["p95"]
                                              for p in (a1, a2))
    # a pooled A (14/20) against a pooled B (4/20): 3 seeds both, 11 only A, 1 only B
    c = paired(pooled, load_row(f"{b1}+{b2}"))
    assert (c["seeds"], c["both"], c["only_a"], c["only_b"]) == (20, 3, 11, 1)
    assert c["p"] == pytest.approx(2 * 13 / 2 ** 12)  # P(X <= 1 or X >= 11), X ~ B(12, 1/2)
    text = table([f"{a1}+{a2}", f"{b1}+{b2}", b1])
    assert "| 20 | 70% [" in text and "only the first on 11, only this one on 1" in text
    assert "on their 10 shared seeds: both succeed on 2, only the first on 6" in text
    with pytest.raises(ValueError, match="different policies"):
        load_row(f"{a1}+{b2}")
    with pytest.raises(ValueError, match=r"seeds \[0, 1"):
        load_row(f"{a1}+{a1}")
    for bad, message in ((str(tmp_path / "none.json"), "No such file"),
                         (f"{a1}+{b2}", "different policies")):
        with pytest.raises(SystemExit) as stop:
            main(["--table", bad])
        assert stop.value.code == 2 and message in capsys.readouterr().err
    (tmp_path / "other.json").write_text(json.dumps({"label": "x"}))
    with pytest.raises(SystemExit):
        main(["--table", str(tmp_path / "other.json")])
    assert "not a sim-eval results.json" in capsys.readouterr().err
