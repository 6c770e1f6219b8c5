"""Train / resume / evaluate commands end to end on a tiny synthetic npz (debug preset)."""

import json

import numpy as np
import pytest
import torch

from faster_ros.tokenizer import FASTerVQ, evaluate, train
from faster_ros.tokenizer.dataset import Source, apply_dim_map, load_split, make_chunks

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def npz(tmp_path_factory):
    """10 smooth 3-D episodes of 40..58 steps."""
    rng = np.random.default_rng(0)
    eps = []
    for e in range(10):
        t = np.arange(40 + 2 * e)[:, None] / 30.0
        eps.append(np.sin(t * rng.uniform(0.5, 2, 3) + rng.uniform(0, 6, 3)).astype(np.float32))
    path = tmp_path_factory.mktemp("data") / "toy.npz"
    np.savez(path, actions=np.concatenate(eps), episode_ends=np.cumsum([len(e) for e in eps]),
             fps=np.float32(30.0), names=np.array(["a", "b", "c"]))
    return path


@pytest.fixture(scope="module")
def npz_state(tmp_path_factory):
    """6 smooth 3-D episodes with a robot state that lags the action by one step."""
    rng = np.random.default_rng(1)
    acts, states = [], []
    for e in range(6):
        t = np.arange(40 + 3 * e)[:, None] / 30.0
        a = np.sin(t * rng.uniform(0.5, 2, 3) + rng.uniform(0, 6, 3)) + 2.0 * e
        a = a.astype(np.float32)
        acts.append(a)
        states.append(np.concatenate([a[:1], a[:-1]]))
    path = tmp_path_factory.mktemp("data_state") / "toy_state.npz"
    np.savez(path, actions=np.concatenate(acts), state=np.concatenate(states),
             episode_ends=np.cumsum([len(a) for a in acts]), fps=np.float32(30.0),
             names=np.array(["a", "b", "c"]))
    return path


def test_source_parsing_and_dim_map():
    s = Source.parse("x/y.npz:2.5@0,z,2")
    assert (str(s.path), s.ratio, s.dim_map) == ("x/y.npz", 2.5, (0, None, 2))
    assert Source.parse(s.spec_string()) == s
    out = apply_dim_map(np.arange(6.0).reshape(2, 3), (2, None, 0))
    assert out.tolist() == [[2.0, 0.0, 0.0], [5.0, 0.0, 3.0]]


def test_dim_map_affine_entries_bring_stand_in_data_into_target_units():
    # a 0..1 hand value as a 0..100 mm gripper, a [-1, 1] (closed = 1) command flipped to mm
    s = Source.parse("x.npz@1*100,0*-50+50,z,2+0.5,1*1e-3")
    assert s.dim_map == ((1, 100.0, 0.0), (0, -50.0, 50.0), None, (2, 1.0, 0.5),
                         (1, 1e-3, 0.0))
    assert Source.parse(s.spec_string()) == s  # recorded in provenance, re-read at evaluation
    out = apply_dim_map(np.array([[1.0, 0.25, 2.0]]), s.dim_map)
    np.testing.assert_allclose(out, [[25.0, 0.0, 0.0, 2.5, 0.00025]])
    for bad in ("1*", "1*a", "1-", "x", "1*2+"):
        with pytest.raises(ValueError, match="bad dimension map entry"):
            Source.parse(f"x.npz@{bad}")
    with pytest.raises(ValueError, match="refers to dim 7 of a 3-D source"):
        apply_dim_map(np.zeros((2, 3)), ((7, 2.0, 0.0),))


def test_split_by_episode_and_windows(npz):
    sp = load_split(Source(npz), 3, 0.2)
    assert len(sp.train) == 8 and len(sp.heldout) == 2
    assert sp.heldout_names[-1].endswith("episode_000009")
    chunks = make_chunks(sp.train[:1], 16, 4)  # 40 steps -> starts 0, 4, ..., 24
    assert chunks.shape == (7, 16, 3)
    assert np.array_equal(chunks[1], sp.train[0][4:20])


def test_state_relative_windows(npz, npz_state):
    sp = load_split(Source(npz_state), 3, 0.34, relative=True)
    assert len(sp.train_state) == len(sp.train) == 4 and len(sp.heldout_state) == 2
    ep, state = sp.train[1], sp.train_state[1]
    chunks = make_chunks([ep], 16, 5, anchors=[state])
    for k, t in enumerate(range(0, len(ep) - 15, 5)):  # a_{t+k} - s_t, the anchor of its start
        np.testing.assert_allclose(chunks[k], ep[t:t + 16] - state[t])
    # the episodes' offsets (2 per episode) are gone: what is left is the motion in the window
    assert np.abs(chunks).max() < 2.5 and np.abs(make_chunks([ep], 16, 5)).max() > 2.5
    with pytest.raises(ValueError, match="episode .* has no robot state"):
        load_split(Source(npz), 3, 0.2, relative=True)
    with pytest.raises(ValueError, match="2 anchor arrays for 1 episodes"):
        make_chunks([ep], 16, 5, anchors=[state, state])


def test_relative_train_and_evaluate_tokenise_the_same_relative_chunks(npz_state, tmp_path):
    """--relative-to-state is recorded in the model; evaluation then cuts relative chunks for
    FASTerVQ and for the FAST baseline alike (FAST is fitted on relative training chunks)."""
    _write_base_config(tmp_path / "cfg.json")
    run = tmp_path / "run"
    assert train.main(["--config", str(tmp_path / "cfg.json"), "--set", "codebook_size=16",
                       "--data", str(npz_state), "--out", str(run), "--steps", "3",
                       "--batch-size", "8", "--heldout-fraction", "0.34", "--init-chunks", "32",
                       "--relative-to-state", "--no-progress"]) == 0
    model = FASTerVQ.load(run / "model")
    assert model.config.provenance["relative_to_state"] is True
    rec = model.config.provenance["data"][0]
    src = Source(npz_state)
    held = evaluate.chunks_of(model, src, rec["heldout_episodes"], 4, align_end=True)
    acts, states = _episodes(npz_state)
    want = make_chunks(acts[4:], 16, 4, align_end=True, anchors=states[4:])
    np.testing.assert_allclose(held, want)
    np.testing.assert_allclose(evaluate.training_chunks(model, 2),
                               make_chunks(acts[:4], 16, 2, anchors=states[:4]))
    out = tmp_path / "eval"
    assert evaluate.main(["--model", str(run / "model"), "--data", str(npz_state), "--out",
                          str(out), "--fast-vocab", "256", "--fast-scale", "4", "--samples",
                          "1"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["relative_to_state"] is True and report["chunks"] == len(want)
    assert "relative" in report["table"]


def _episodes(path):
    d = np.load(path)
    starts = np.r_[0, d["episode_ends"][:-1]]
    return ([d["actions"][a:b] for a, b in zip(starts, d["episode_ends"])],
            [d["state"][a:b] for a, b in zip(starts, d["episode_ends"])])


def test_train_resume_evaluate(npz, tmp_path):
    cfg_args = ["--set", "action_dim=3", "--set", "chunk_size=16", "--set", "time_patch=4",
                "--set", "code_horizon=2", "--set", "code_dims=3",
                "--set", "patch_groups=[[0, 1], [2]]", "--set", "codebook_size=16"]
    base = [*cfg_args, "--preset", "debug", "--data", f"{npz}:1", "--out", str(tmp_path / "run"),
            "--batch-size", "8", "--heldout-fraction", "0.2", "--val-fraction", "0.2",
            "--checkpoint-every", "3", "--eval-every", "4", "--init-chunks", "64",
            "--no-progress", "--config", str(tmp_path / "cfg.json")]
    _write_base_config(tmp_path / "cfg.json")
    assert train.main([*base, "--steps", "4"]) == 0
    assert train.main([*base, "--steps", "6", "--resume"]) == 0
    summary = json.loads((tmp_path / "run" / "train_summary.json").read_text())
    assert summary["steps"] == 6
    model = FASTerVQ.load(tmp_path / "run" / "model")
    rec = model.config.provenance["data"][0]
    assert len(rec["heldout_episodes"]) == 2 and len(rec["val_episodes"]) == 2
    assert not set(rec["heldout_episodes"]) & set(rec["train_episodes"])
    out = tmp_path / "eval"
    assert evaluate.main(["--model", str(tmp_path / "run" / "model"), "--data", str(npz),
                          "--out", str(out), "--fast-vocab", "256", "--samples", "2"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["data"][str(npz)]["episodes"] == 2
    vq = report["fastervq"]
    assert 0.0 <= vq["vrr_element@0.01"] <= 1.0 and vq["tokens_per_chunk"] == 3 * 2 * 3
    fast = report["fast"]["FAST v256 s10"]
    assert fast["decode_failures"] >= 0 and fast["tokens_per_chunk"] > 0
    assert (out / "recon.png").stat().st_size > 1000


def _write_base_config(path):
    from faster_ros.tokenizer import VQConfig
    from faster_ros.tokenizer.configuration import preset_fields

    fields = preset_fields("debug") | dict(action_dim=3, chunk_size=16,
                                           patch_groups=((0, 1), (2,)), code_dims=3)
    VQConfig(**fields).save(path)


@pytest.mark.slow
def test_ddp_two_ranks(npz, tmp_path):
    """DDP on CPU (gloo), two ranks launched the way srun launches them (env:// rendezvous; the
    policy trainer's test covers torchrun): both train, only rank 0 writes the model."""
    import sys

    from process_helpers import run_ranks

    _write_base_config(tmp_path / "cfg.json")
    cmd = [sys.executable, "-m", "faster_ros.tokenizer.train",
           "--config", str(tmp_path / "cfg.json"), "--set", "codebook_size=16",
           "--data", str(npz), "--out", str(tmp_path / "run"),
           "--steps", "3", "--batch-size", "8", "--init-chunks", "32", "--no-progress",
           "--threads", "1"]
    rank0, rank1 = (log.read_text() for log in run_ranks(cmd, 2, tmp_path, timeout=240))
    assert "world 2" in rank0 and "saved" in rank0
    assert "saved" not in rank1
    summary = json.loads((tmp_path / "run" / "train_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 3
    FASTerVQ.load(tmp_path / "run" / "model")


def test_teardown_watchdog_ends_a_hung_destroy(tmp_path):
    """A rank whose destroy_process_group hangs after its work is written prints where its
    threads were and exits 0 instead of holding the launcher forever."""
    import sys

    from process_helpers import free_port, run_logged

    script = tmp_path / "hang.py"
    # a one-process gloo group that close() treats as two ranks (it skips world 1)
    script.write_text(
        "import time\n"
        "import torch.distributed as dist\n"
        "from faster_ros.distributed import Distributed\n"
        "env = Distributed('cpu')\n"
        "dist.init_process_group('gloo')\n"
        "env.world = 2\n"
        "dist.destroy_process_group = lambda: time.sleep(600)\n"
        "env.close(timeout_s=1)\n"
        "print('unreachable')\n")
    env = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(free_port())}
    log = tmp_path / "hang.log"
    with pytest.warns(UserWarning, match="teardown watchdog fired"):
        assert run_logged([[sys.executable, str(script)]], [log], 60, [env]) == [0]
    text = log.read_text()
    assert "destroy_process_group did not return in 1 s" in text
    assert "sleep" in text or "<lambda>" in text  # the stack of the hung call
    assert "unreachable" not in text
