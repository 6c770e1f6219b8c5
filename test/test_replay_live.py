"""Live replay on sim time: the G1 bag is played on /clock into the running stack (policy node +
executor as child processes, deterministic decoding), the recorder writes what the stack publishes
to a rosbag2, and the chunks read back from it must equal offline replay's predictions for the
same observations."""

import threading
import time

import numpy as np
import pytest
from _paths import G1_BAG_MCAP

from faster_ros import graph
from faster_ros.embodiment import load_embodiment

pytestmark = [pytest.mark.ros, pytest.mark.multiprocess, pytest.mark.slow]

BAG_SECONDS = 4.0
RATE = 0.5


def _read_chunks(path):
    from rosbags.highlevel import AnyReader

    from faster_ros.replay.bagwriter import typestore

    out, counts = [], {}
    with AnyReader([path], default_typestore=typestore()) as reader:
        for conn, _, raw in reader.messages():
            counts[conn.topic] = counts.get(conn.topic, 0) + 1
            if conn.topic in (graph.CHUNK_TOPIC, graph.SHADOW_CHUNK_TOPIC):  # any mode
                msg = reader.deserialize(raw, conn.msgtype)
                stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
                positions = np.asarray(msg.positions).reshape(msg.horizon, msg.dims)
                out.append((stamp, positions, np.asarray(msg.codes)))
    return out, counts


@pytest.mark.skipif(not G1_BAG_MCAP.exists(), reason="shared G1 bag not available")
@pytest.mark.timeout(600)  # two model loads on a shared 2-core machine
def test_live_replay_matches_offline_replay(tmp_path, spawn_python):
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from rosgraph_msgs.msg import Clock

    from faster_ros.inference import load_policy, state_history_of
    from faster_ros.replay.bag import load_inputs
    from faster_ros.replay.bagwriter import BagWriter
    from faster_ros.replay.offline import run_offline
    from faster_ros.ros.bringup import ProcessGraph
    from faster_ros.ros.recorder import RecorderNode, stack_topics

    emb = load_embodiment("g1_inspire")
    inputs = load_inputs(G1_BAG_MCAP, emb, duration_s=BAG_SECONDS)
    stack = graph.build_graph(emb, use_sim_time=True, deterministic=True)
    out = tmp_path / "live"
    context = rclpy.Context()
    rclpy.init(context=context)
    writer = BagWriter(out, "mcap")
    recorder = RecorderNode(writer, stack_topics(emb), context=context,
                            parameter_overrides=[Parameter("use_sim_time", value=True)])
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(recorder)
    pg = ProcessGraph(stack)
    try:
        pg.start()
        # on sim time the nodes' timers (the policy node's autostart, which loads the model) run
        # only while /clock advances: run it up to the bag's start until the model is loaded
        # (a thread, so that the offline policy loads here meanwhile)
        clock_pub = recorder.create_publisher(Clock, "/clock", 10)
        t_first = inputs.samples[0].t_bag
        stop_clock = threading.Event()

        def run_clock():
            start = time.monotonic()
            while not stop_clock.is_set():
                clock = Clock()
                t = t_first - 100.0 + (time.monotonic() - start)
                clock.clock.sec, clock.clock.nanosec = int(t), int((t % 1) * 1e9)
                clock_pub.publish(clock)
                time.sleep(0.02)

        clock_thread = threading.Thread(target=run_clock, daemon=True)
        clock_thread.start()
        policy = load_policy(emb.policy.model, "", "cpu", True, emb)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and "loaded model" not in pg.log("faster_policy"):
            executor.spin_once(timeout_sec=0.05)
        stop_clock.set()
        clock_thread.join()
        assert "loaded model" in pg.log("faster_policy"), pg.log("faster_policy")[-3000:]
        player = spawn_python("faster_ros.cli", ["replay", str(G1_BAG_MCAP), "--embodiment",
                                                 "g1_inspire", "--publish", "--rate", str(RATE),
                                                 "--duration", str(BAG_SECONDS),
                                                 "--wait-subscribers", "30"])
        deadline = time.monotonic() + 60 + BAG_SECONDS / RATE
        while time.monotonic() < deadline and player.poll() is None:
            executor.spin_once(timeout_sec=0.05)
        assert player.returncode == 0
        end = time.monotonic() + 3.0  # the last chunk may still be on its way
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.05)
        alive = pg.alive()
        logs = {n: pg.log(n) for n in pg.procs}
    finally:
        pg.stop()
        executor.shutdown()
        recorder.destroy_node()
        writer.close()
        context.try_shutdown()
    assert all(alive.values()), logs
    live, counts = _read_chunks(out)
    assert len(live) >= 3, (counts, logs["faster_policy"][-3000:])
    # the recorder took the played inputs and the stack's outputs (its count of the inputs
    # depends on when its subscriptions matched the player's, which the player does not wait for)
    assert counts[emb.cameras[0].topic] > 0 and counts[graph.EXECUTION_TOPIC] > 0, counts

    # a policy with state history (the shipped one looks 0.1 and 0.5 s back) sees, for chunks
    # within that span of the bag's start, the oldest sample its node happened to receive: the
    # first joint messages may be published before DDS matched the node (the player waits for
    # subscribers, not for every reader's discovery), so only observations whose history lies
    # inside the played bag are compared
    settle = max(state_history_of(policy), default=0.0)
    live = [c for c in live if c[0] >= t_first + settle - 1e-6]
    assert len(live) >= 3, f"only {len(live)} live chunks after the {settle} s history span"
    stamps = [s for s, _, _ in live]
    runs = {late: {round(c.stamp, 4): c for c in run_offline(
        inputs, policy, at_stamps=stamps, late_joints=late, progress=False).chunks}
        for late in (False, True)}
    # the live node takes the joint message of a frame's stamp before the frame (bag order) or,
    # when both wait in its executor's queue, after it (then it holds the previous joint sample):
    # each live chunk must equal offline replay's prediction for one of these two observations
    exact, late_seen, worst, mismatched = 0, 0, 0.0, []
    for stamp, positions, codes in live:
        for late in (False, True):
            c = runs[late].get(round(stamp, 4))
            assert c is not None and c.published, f"no offline chunk for the live {stamp:.4f}"
            diff = float(np.abs(c.actions - positions).max())
            if np.array_equal(c.codes.reshape(-1), codes) and diff < 1e-4:
                worst = max(worst, diff)
                exact += not late
                late_seen += late
                break
        else:
            mismatched.append(f"{stamp:.4f} (max |diff| {diff:.3f})")
    # The live node's multi-threaded executor may assemble a frame before joint messages that
    # are a few ms behind it (the two orders above cover one such message, not a longer lag), so
    # an occasional live observation is not the one offline replay rebuilds from the bag; the
    # code path is the same when most chunks are bit-identical, and a real divergence (another
    # model, decoding, normalisation or assembly) makes every chunk differ.
    need = max(3, int(np.ceil(0.6 * len(live))))
    assert exact + late_seen >= need, (
        f"only {exact + late_seen} of {len(live)} live chunks equal offline replay (need {need});"
        f" mismatched: {mismatched}")
    print(f"{exact + late_seen} of {len(live)} live chunks on sim time equal offline replay "
          f"({exact} in bag order, "
          f"{late_seen} with the joint message after the frame; codes identical, max |diff| "
          f"{worst:.2e}); recorded {counts}")
