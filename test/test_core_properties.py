"""Property-based tests of the pure core against hostile input (issue 8).

Complements the per-module property tests: here every input is drawn to be wrong in some way
(wrong step, truncated or padded payloads, odd sizes, shuffled / duplicated / out-of-order stamps,
NaN / inf / huge chunk values, reordered chunk deliveries) and the property is always the same: a
clear ``ValueError`` naming the problem, or a correct result; never another exception, never a
non-finite, out-of-limit or time-reversed command.
"""

import array

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from faster_ros.control import Chunk, ChunkExecutor, SafetyGate, anchor, blend_seam
from faster_ros.data.images import (
    SUPPORTED_ENCODINGS,
    ImageDecodeError,
    compressed_to_rgb,
    image_to_rgb,
)
from faster_ros.embodiment import load_embodiment
from faster_ros.observation import ObservationAssembler

EMBODIMENTS = {n: load_embodiment(n) for n in ("single_arm", "r1lite_wbc", "g1_inspire")}
ARM = EMBODIMENTS["single_arm"]
FAST = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# ------------------------------------------------------------------------------------- images

# bytes per pixel and rows of the payload per image row (planar 4:2:0 has 1.5)
_BPP = {e: 1 for e in SUPPORTED_ENCODINGS}
_BPP.update({e: 2 for e in ("mono16", "16uc1", "yuv422", "uyvy", "yuyv", "yuv422_yuy2")})
_BPP.update({e: 3 for e in ("rgb8", "bgr8", "8uc3")})
_BPP.update({e: 4 for e in ("rgba8", "bgra8", "8uc4")})
_BPP.update({e: 6 for e in ("rgb16", "bgr16")})
_BPP.update({e: 8 for e in ("rgba16", "bgra16")})
_BPP.update({e: 2 for e in SUPPORTED_ENCODINGS if e.startswith("bayer") and e.endswith("16")})
_EVEN = {"yuv422", "uyvy", "yuyv", "yuv422_yuy2", "nv12", "nv21"}


def _layout(encoding: str, h: int, w: int) -> tuple[int, int]:
    """(row_bytes, rows) of a valid payload."""
    rows = h + h // 2 if encoding in ("nv12", "nv21") else h
    return w * _BPP[encoding], rows


@FAST
@given(
    encoding=st.sampled_from(SUPPORTED_ENCODINGS),
    h=st.integers(1, 12),
    w=st.integers(1, 12),
    step_kind=st.sampled_from(["zero", "exact", "padded", "short"]),
    pad=st.integers(1, 7),
    size_delta=st.sampled_from([0, 0, 0, -1, 1, "no_last_pad", "half", "empty", "double"]),
    upper=st.booleans(),
    big=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_raw_image_decodes_correctly_or_raises_a_clear_error(
    encoding, h, w, step_kind, pad, size_delta, upper, big, seed
):
    row_bytes, rows = _layout(encoding, h, w)
    step = {
        "zero": 0,
        "exact": row_bytes,
        "padded": row_bytes + pad,
        "short": max(row_bytes - pad, 0),
    }[step_kind]
    eff_step = step or row_bytes
    full = eff_step * rows
    n = {
        "no_last_pad": full - (eff_step - row_bytes),
        "half": full // 2,
        "empty": 0,
        "double": 2 * full,
    }.get(size_delta, full + (size_delta if isinstance(size_delta, int) else 0))
    n = max(n, 0)
    data = np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()
    valid = (
        (step == 0 or step >= row_bytes)
        and (full - (eff_step - row_bytes) <= n <= full)
        and not (encoding in _EVEN and (w % 2 or (encoding in ("nv12", "nv21") and h % 2)))
    )
    name = encoding.upper() if upper else encoding
    try:
        out = image_to_rgb(name, h, w, step, data, is_bigendian=big)
    except ImageDecodeError as exc:
        message = str(exc)
        assert repr(name) in message, message  # the error names the encoding
        if encoding.startswith("bayer") and (h < 2 or w < 2):
            return  # OpenCV cannot demosaic a single row/column: a clear error is fine
        assert not valid, f"valid payload refused: {message}"
        return
    assert valid, f"invalid payload accepted ({encoding} {w}x{h} step {step}, {n} bytes)"
    assert out.shape == (h, w, 3) and out.dtype == np.uint8


@FAST
@given(
    encoding=st.sampled_from(["rgb8", "bgr8", "mono8", "mono16", "bgra8", "yuv422", "nv12"]),
    h=st.integers(1, 8).map(lambda v: 2 * v),
    w=st.integers(1, 8).map(lambda v: 2 * v),
    pad=st.integers(0, 5),
    container=st.sampled_from(["bytes", "array", "ndarray", "list"]),
    seed=st.integers(0, 2**16),
)
def test_ros_image_message_conversion(encoding, h, w, pad, container, seed):
    """The node-side conversion from a sensor_msgs/Image (rclpy gives array.array('B'))."""
    from sensor_msgs.msg import Image

    from faster_ros.ros.conversions import image_to_rgb as msg_to_rgb

    row_bytes, rows = _layout(encoding, h, w)
    step = row_bytes + pad
    raw = np.random.default_rng(seed).integers(0, 256, step * rows, dtype=np.uint8)
    msg = Image(height=h, width=w, encoding=encoding, step=step)
    msg.data = {
        "bytes": raw.tobytes(),
        "array": array.array("B", raw.tobytes()),
        "ndarray": raw,
        "list": raw.tolist(),
    }[container]
    out = msg_to_rgb(msg)
    assert out.shape == (h, w, 3) and out.dtype == np.uint8
    # the same payload through the pure function gives the same pixels
    np.testing.assert_array_equal(out, image_to_rgb(encoding, h, w, step, raw.tobytes()))
    msg.step = row_bytes - 1
    with pytest.raises(ImageDecodeError, match="step"):
        msg_to_rgb(msg)


def _encoded(kind: str, h: int, w: int, seed: int) -> bytes:
    rgb = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    return cv2.imencode(".png" if kind == "png" else ".jpg", rgb)[1].tobytes()


@FAST
@given(
    kind=st.sampled_from(["png", "jpeg"]),
    h=st.integers(1, 20),
    w=st.integers(1, 20),
    seed=st.integers(0, 2**16),
    cut=st.floats(0.0, 1.0),
    flips=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), max_size=4),
)
def test_compressed_image_truncated_or_corrupt(kind, h, w, seed, cut, flips):
    data = bytearray(_encoded(kind, h, w, seed))
    data = data[: int(len(data) * cut)]
    for where, value in flips:
        if data:
            data[int(where * (len(data) - 1))] = value
    try:
        out = compressed_to_rgb(kind, bytes(data))
    except ImageDecodeError as exc:
        assert kind in str(exc)
        return
    assert out.ndim == 3 and out.shape[2] == 3 and out.dtype == np.uint8


# --------------------------------------------------------------------------- chunk messages


@FAST
@given(
    horizon=st.integers(0, 6),
    dims=st.integers(0, 9),
    extra=st.integers(-3, 3),
    step_dt=st.sampled_from([0.05, 0.0, -0.05, float("nan"), float("inf"), 1e-12]),
    names_ok=st.booleans(),
    fill=st.sampled_from([0.0, float("nan"), float("inf"), 3e38, 1e39]),
)
def test_action_chunk_message_to_chunk(horizon, dims, extra, step_dt, names_ok, fill):
    """Malformed ActionChunks become a ValueError naming the problem (the executor drops them
    with that reason), never another exception or a Chunk with a broken time grid."""
    from faster_msgs.msg import ActionChunk
    from faster_ros.ros.conversions import msg_to_chunk

    names = list(ARM.dim_names)
    msg = ActionChunk()
    msg.dimension_names = names if names_ok else names[:-1]
    msg.horizon, msg.dims = horizon, dims
    msg.step_dt = step_dt
    msg.chunk_start.sec = 100
    size = max(horizon * dims + extra, 0)
    with np.errstate(over="ignore"):  # 1e39 does not fit a float32: it arrives as inf
        values = np.full(size, fill).astype(np.float32)
    msg.positions = array.array("f", values.tobytes())
    try:
        chunk = msg_to_chunk(msg, names)
    except ValueError as exc:
        assert str(exc)
        return
    assert names_ok and dims == len(names) and size == horizon * dims
    assert np.isfinite(chunk.dt) and chunk.dt > 0 and np.isfinite(chunk.start_time)
    assert chunk.positions.shape == (horizon, dims)
    gate = SafetyGate(ARM)
    verdict = gate.check(chunk)
    assert verdict.accepted == bool(
        np.all(np.isfinite(chunk.positions))
        and np.all(chunk.positions <= ARM.upper + gate.reject_margin)
        and np.all(chunk.positions >= ARM.lower - gate.reject_margin)
    )


# ------------------------------------------------------------------------ observation assembly

JOINTS = ARM.joint_inputs[0].joints


@st.composite
def _deliveries(draw):
    """A camera/joint sample stream on a 10 ms grid, then delivered shuffled and duplicated."""
    n_frames = draw(st.integers(1, 8))
    n_joints = draw(st.integers(1, 25))
    jitter = draw(st.lists(st.integers(-2, 2), min_size=n_frames, max_size=n_frames))
    events = []
    for k in range(n_frames):
        t = 10.0 + 0.033 * k
        events.append(("scene", round(t, 6), k))
        events.append(("wrist", round(t + 0.001 * jitter[k], 6), k))
    for k in range(n_joints):
        events.append(("joints", round(9.98 + 0.01 * k, 6), k))
    order = draw(st.permutations(range(len(events))))
    dups = draw(st.lists(st.integers(0, len(events) - 1), max_size=6))
    shuffled = [events[i] for i in order] + [events[i] for i in dups]
    now = 10.0 + 0.033 * (n_frames - 1) + draw(st.sampled_from([0.0, 0.02, 0.1, 0.3]))
    return events, shuffled, now


def _assembled(events, now):
    asm = ObservationAssembler(ARM)
    for kind, stamp, k in events:
        if kind == "joints":
            asm.add_joints(
                "/joint_states", stamp, JOINTS, [0.01 * k + 0.001 * j for j in range(len(JOINTS))]
            )
        else:
            asm.add_image(kind, stamp, np.full((2, 3, 3), k, np.uint8))
    return asm.assemble(now)


@FAST
@given(case=_deliveries())
def test_assembly_does_not_depend_on_arrival_order_or_duplicates(case):
    """Reordered, duplicated and out-of-order deliveries of the same samples build the same
    observation (or fail for the same reason) as in-order delivery."""
    events, shuffled, now = case
    a, b = _assembled(events, now), _assembled(shuffled, now)
    assert a.ok == b.ok and a.reason == b.reason
    if a.ok:
        oa, ob = a.observation, b.observation
        assert oa.stamp == ob.stamp and oa.input_stamps == ob.input_stamps
        np.testing.assert_array_equal(oa.state, ob.state)
        for cam in oa.images:
            np.testing.assert_array_equal(oa.images[cam], ob.images[cam])
        assert np.all(np.isfinite(oa.state))
        for used in oa.input_stamps.values():
            assert abs(used - oa.stamp) <= ARM.control.slop_s + 1e-9
    if len(shuffled) > len(events):
        assert any("duplicate" in note for note in b.notes)


@FAST
@given(
    stamps=st.lists(
        st.sampled_from(
            [
                9.9,
                9.95,
                10.0,
                10.0,
                10.01,
                10.02,
                11.0,
                5.0,
                float("nan"),
                float("inf"),
                -float("inf"),
                0.0,
            ]
        ),
        min_size=1,
        max_size=30,
    ),
    now=st.sampled_from([10.03, 10.1, 10.5, 2.0]),
)
def test_assembly_with_garbage_stamps_never_builds_a_stale_or_future_observation(stamps, now):
    asm = ObservationAssembler(ARM)
    for t in stamps:
        asm.add_image("scene", t, np.zeros((2, 2, 3), np.uint8))
        asm.add_image("wrist", t, np.zeros((2, 2, 3), np.uint8))
        asm.add_joints("/joint_states", t, JOINTS, [0.5] * len(JOINTS))
    r = asm.assemble(now)
    assert r.ok == (r.reason == "")
    if r.ok:
        obs = r.observation
        assert np.isfinite(obs.stamp) and obs.stamp <= now + asm.future_tolerance_s
        assert now - obs.stamp <= 0.2 + 1e-9  # the camera budget
        assert all(np.isfinite(list(obs.input_stamps.values())))
    else:
        assert len(r.reason) > 10


# --------------------------------------------------------------------- timing, blending, gate

_values = st.one_of(
    st.floats(-10, 10), st.sampled_from([np.nan, np.inf, -np.inf, 1e300, -1e300, 5e-324])
)


@st.composite
def _chunks(draw, emb):
    h = draw(st.integers(1, 12))
    base = (emb.lower + emb.upper) / 2
    kind = draw(st.sampled_from(["near", "near", "random", "poison"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    if kind == "near":
        p = base + np.cumsum(rng.normal(0, 0.02, (h, emb.action_dim)), axis=0) * emb.max_rate
    elif kind == "random":
        p = emb.lower + (emb.upper - emb.lower) * rng.uniform(-0.5, 1.5, (h, emb.action_dim))
    else:
        p = np.tile(base, (h, 1))
        for _ in range(draw(st.integers(1, 3))):
            p[rng.integers(h), rng.integers(emb.action_dim)] = draw(_values)
    start = draw(st.floats(0.0, 1e6))
    dt = draw(st.sampled_from([emb.control.dt, emb.control.dt / 3, 1e-3, 0.5]))
    return Chunk(p, start_time=start, dt=dt)


@FAST
@given(
    data=st.data(),
    name=st.sampled_from(sorted(EMBODIMENTS)),
    lag=st.floats(-0.5, 3.0),
    lead=st.floats(0.0, 0.1),
    blend=st.floats(0.0, 0.5),
)
def test_anchor_blend_gate_pipeline_never_yields_an_unsafe_chunk(data, name, lag, lead, blend):
    emb = EMBODIMENTS[name]
    gate = SafetyGate(emb)
    chunk = data.draw(_chunks(emb))
    current = np.clip(np.nan_to_num(chunk.positions[0], posinf=0, neginf=0), emb.lower, emb.upper)
    now = chunk.start_time + lag
    anchored = anchor(chunk, now, lead)
    if anchored is None:
        assert chunk.end_time < now + lead
        return
    assert anchored.start_time >= now + lead - 1e-6 * max(1.0, abs(now))
    assert np.array_equal(
        anchored.positions, chunk.positions[anchored.first_step :], equal_nan=True
    )
    blended = blend_seam(anchored, lambda t: np.tile(current, (len(t), 1)), blend)
    if blend > 0 and np.all(np.isfinite(anchored.positions[0])):
        np.testing.assert_allclose(blended.positions[0], current, atol=1e-9)
    # blending never hides garbage: non-finite stays non-finite
    assert np.array_equal(~np.isfinite(blended.positions), ~np.isfinite(anchored.positions))
    r = gate.check(blended, current)
    if not r.accepted:
        assert r.reasons and all(r.reasons)
        return
    p = r.chunk.positions
    assert np.all(np.isfinite(p)) and np.all(p >= emb.lower) and np.all(p <= emb.upper)
    assert np.all(np.diff(r.chunk.times()) > 0)
    assert np.all(np.abs(p[0] - current) <= gate.seam_limit + 1e-12)
    if r.chunk.horizon > 1:
        assert np.all(np.abs(np.diff(p, axis=0)) / r.chunk.dt <= emb.max_rate * (1 + 1e-5))


def _wave_chunk(emb, obs_t, center, sequence, offset=0.0):
    h, dt = emb.tokenizer.chunk_size, emb.control.dt
    t = obs_t + dt * np.arange(h)
    amp = np.minimum(0.02 * (emb.upper - emb.lower), 0.2 * emb.max_rate)
    p = center + amp * (np.sin(t)[:, None] - np.sin(obs_t)) + offset
    p[:, emb.is_velocity] = 0.0
    return Chunk(np.clip(p, emb.lower, emb.upper), start_time=obs_t, dt=dt, sequence=sequence)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(["single_arm", "r1lite_wbc"]),
    order=st.permutations(range(6)),
    dup=st.lists(st.integers(0, 5), max_size=3),
    latency=st.floats(0.0, 0.3),
)
def test_reordered_and_duplicate_chunk_deliveries(name, order, dup, latency):
    """Chunks delivered out of order or twice: never a command that goes back to an older plan
    than one already executing, and every command stays finite and within limits."""
    emb = EMBODIMENTS[name]
    dt = emb.control.dt
    center = np.where(emb.is_velocity, 0.0, (emb.lower + emb.upper) / 2)
    ex = ChunkExecutor(emb)
    ex.set_measured(center, 100.0)
    chunks = [_wave_chunk(emb, 100.0 + k * 2 * dt, center, k + 1) for k in range(6)]
    now = 100.0 + 12 * dt + latency
    newest_accepted = -np.inf
    for k in [*order, *dup]:
        chunk = chunks[k]
        r = ex.submit(chunk, now)
        if r.accepted:
            assert chunk.start_time > newest_accepted, (
                f"chunk {chunk.sequence} (obs {chunk.start_time:.3f}) accepted after a newer "
                f"one (obs {newest_accepted:.3f})"
            )
            newest_accepted = chunk.start_time
        else:
            assert r.reasons
        cmd = ex.command(now)
        assert np.all(np.isfinite(cmd.positions))
        assert np.all(cmd.positions >= emb.lower) and np.all(cmd.positions <= emb.upper)
        now += dt / 4
