"""faster_msgs: the definitions, and a real round trip between two processes over DDS.

The child side of the multi-process tests is this file run as a script:
    python test/test_msgs_ipc.py publisher|services
"""

import array
import re
import sys
import time
from pathlib import Path

import pytest

MSGS_SRC = Path(__file__).resolve().parents[1] / "faster_msgs"
DEFINITION_FILES = sorted(MSGS_SRC.glob("msg/*.msg")) + sorted(MSGS_SRC.glob("srv/*.srv"))
PEER_LIFETIME_S = 60.0  # a child outliving a crashed test run exits by itself
WAIT_S = 20.0  # bound on discovery + delivery; a healthy run needs about 1-3 s
TOPICS = {"chunk": "test_msgs/action_chunk", "status": "test_msgs/status",
          "mode_change": "test_msgs/mode_change", "execution": "test_msgs/chunk_execution"}
VALID_MODES = ("TELEOP", "POLICY", "HOLD", "SHADOW")

H, D = 4, 3  # chunk horizon x action dims
N_C, C_H, C_A = 2, 2, 3  # codebooks x code horizon x code dims

EXPECTED_FIELDS = {
    "ActionChunk": {
        "header": "std_msgs/Header", "embodiment": "string", "model_id": "string",
        "chunk_start": "builtin_interfaces/Time",
        "observation_received": "builtin_interfaces/Time", "step_dt": "double",
        "dimension_names": "sequence<string>", "horizon": "uint32", "dims": "uint32",
        "positions": "sequence<float>", "codes": "sequence<int32>", "n_codebooks": "uint32",
        "code_horizon": "uint32", "code_dims": "uint32", "t_image_ms": "float",
        "t_context_ms": "float", "t_block_ms": "sequence<float>", "t_detokenize_ms": "float",
        "t_total_ms": "float", "sequence": "uint32", "invalid_tokens": "uint32",
    },
    "PolicyStatus": {
        "header": "std_msgs/Header", "mode": "string", "reason": "string",
        "input_names": "sequence<string>", "input_ages_s": "sequence<float>",
        "last_inference_ms": "float", "chunks_produced": "uint64", "chunks_rejected": "uint64",
        "safety_interventions": "uint64", "instruction": "string", "observation_ready": "boolean",
    },
    "ModeChange": {
        "header": "std_msgs/Header", "from_mode": "string", "to_mode": "string",
        "reason": "string", "requested_by": "string",
    },
    "ChunkExecution": {
        "header": "std_msgs/Header", "sequence": "uint32",
        "observation_stamp": "builtin_interfaces/Time", "verdict": "string",
        "reasons": "sequence<string>", "steps_dropped": "uint32", "steps_kept": "uint32",
        "interventions": "uint32", "model_ms": "float", "overhead_ms": "float",
    },
}


# ---------------------------------------------------------------- messages used on both sides

def _stamp(msg, sec, nanosec):
    msg.sec, msg.nanosec = sec, nanosec


def make_chunk():
    from faster_msgs.msg import ActionChunk

    msg = ActionChunk()
    _stamp(msg.header.stamp, 1_700_000_000, 123_456_789)
    msg.header.frame_id = "base_link"
    msg.embodiment, msg.model_id = "aloha", "faster-debug@0123abcd"
    _stamp(msg.chunk_start, 1_700_000_000, 223_456_789)
    _stamp(msg.observation_received, 1_700_000_000, 131_000_000)
    msg.step_dt = 1.0 / 15.0
    msg.dimension_names = ["waist", "shoulder", "gripper"]
    msg.horizon, msg.dims = H, D
    msg.positions = array.array("f", [0.1 * t - 0.03 * d for t in range(H) for d in range(D)])
    msg.codes = array.array("i", [(7919 * i) % 4096 - 5 for i in range(N_C * C_H * C_A)])
    msg.n_codebooks, msg.code_horizon, msg.code_dims = N_C, C_H, C_A
    # Scalar float32 fields get float32-exact values; arrays are float32 on both sides.
    msg.t_image_ms, msg.t_context_ms, msg.t_detokenize_ms = 12.5, 31.25, 2.75
    msg.t_block_ms = array.array("f", [7.4, 7.5, 7.3])
    msg.t_total_ms = 68.875
    msg.sequence, msg.invalid_tokens = 41, 2
    return msg


def make_status():
    from faster_msgs.msg import PolicyStatus

    msg = PolicyStatus()
    _stamp(msg.header.stamp, 1_700_000_001, 5)
    msg.header.frame_id = "runtime"
    msg.mode, msg.reason = PolicyStatus.MODE_SHADOW, "operator request"
    msg.input_names = ["camera_head", "joint_states"]
    msg.input_ages_s = array.array("f", [0.033, 0.004])
    msg.last_inference_ms = 112.5
    msg.chunks_produced, msg.chunks_rejected = 2**40 + 3, 7  # above 2**32: a real uint64
    msg.safety_interventions = 9
    msg.instruction, msg.observation_ready = "fold the towel", True
    return msg


def make_mode_change():
    from faster_msgs.msg import ModeChange

    msg = ModeChange()
    _stamp(msg.header.stamp, 1_700_000_002, 999_999_999)
    msg.header.frame_id = "runtime"
    msg.from_mode, msg.to_mode = "TELEOP", "POLICY"
    msg.reason, msg.requested_by = "engage", "operator"
    return msg


def make_execution():
    from faster_msgs.msg import ChunkExecution

    msg = ChunkExecution()
    _stamp(msg.header.stamp, 1_700_000_003, 17)
    msg.header.frame_id = "executor"
    msg.sequence = 41
    _stamp(msg.observation_stamp, 1_700_000_000, 123_456_789)
    msg.verdict = ChunkExecution.VERDICT_CLIPPED
    msg.reasons = ["shoulder 1.9 > 1.8 rad", "gripper 0.09 > 0.08 m"]
    msg.steps_dropped, msg.steps_kept, msg.interventions = 1, 3, 2
    msg.model_ms, msg.overhead_ms = 68.875, 4.25
    return msg


def to_plain(msg):
    """A message as nested dicts / lists of Python values, for whole-message comparison."""
    if hasattr(msg, "get_fields_and_field_types"):
        return {name: to_plain(getattr(msg, name)) for name in msg.get_fields_and_field_types()}
    if isinstance(msg, (list, tuple, array.array)) or type(msg).__name__ == "ndarray":
        return [to_plain(v) for v in msg]
    return msg


MAKERS = {"chunk": make_chunk, "status": make_status, "mode_change": make_mode_change,
          "execution": make_execution}  # keys are TOPICS keys


def _reliable_latched_qos():
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL)


# ---------------------------------------------------------------- child process (the peer)

def _serve(node):
    from faster_msgs.srv import SetInstruction, SetMode

    state = {"mode": "TELEOP"}

    def set_mode(request, response):
        response.accepted = request.mode in VALID_MODES
        if response.accepted:
            state["mode"] = request.mode
            response.message = f"mode {request.mode} ({request.reason})"
        else:
            response.message = f"unknown mode {request.mode!r}"
        response.current_mode = state["mode"]
        return response

    def set_instruction(request, response):
        response.accepted = bool(request.instruction.strip())
        response.message = "ok" if response.accepted else "empty instruction"
        return response

    node.create_service(SetMode, "test_msgs/set_mode", set_mode)
    node.create_service(SetInstruction, "test_msgs/set_instruction", set_instruction)


def _publish(node):
    qos = _reliable_latched_qos()
    for key, make in MAKERS.items():
        msg = make()
        node.create_publisher(type(msg), TOPICS[key], qos).publish(msg)


def peer_main(role: str) -> None:
    import rclpy
    from rclpy.executors import ExternalShutdownException

    rclpy.init()
    node = rclpy.create_node(f"test_msgs_peer_{role}")
    try:
        {"publisher": _publish, "services": _serve}[role](node)
        deadline = time.monotonic() + PEER_LIFETIME_S
        while rclpy.ok() and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


# ---------------------------------------------------------------- tests

def _fields_in_source(path: Path) -> list[tuple[str, str, str]]:
    """(type, name, comment) for each field of a .msg/.srv file, constants left out.

    A comment documents the lines that follow it, up to the next blank line or comment.
    """
    fields, comment, after_comment = [], [], False
    for line in path.read_text().splitlines():
        line = line.strip()
        if line.startswith("#"):
            comment = [*comment, line] if after_comment else [line]
            after_comment = True
        elif not line or line == "---":
            comment, after_comment = [], False
        else:
            type_, name = line.split()[:2]
            if "=" not in name:
                fields.append((type_, name, " ".join(comment)))
            after_comment = False
    return fields


@pytest.mark.ros
@pytest.mark.parametrize("name", sorted(EXPECTED_FIELDS))
def test_message_fields_are_the_documented_ones(name):
    import faster_msgs.msg

    msg_type = getattr(faster_msgs.msg, name)
    assert msg_type.get_fields_and_field_types() == EXPECTED_FIELDS[name]


@pytest.mark.parametrize("path", DEFINITION_FILES, ids=lambda p: p.name)
def test_every_field_is_commented(path):
    fields = _fields_in_source(path)
    assert fields
    assert [name for _, name, comment in fields if not comment] == []


@pytest.mark.ros
@pytest.mark.parametrize("path", DEFINITION_FILES, ids=lambda p: p.name)
def test_installed_definitions_match_source(path):
    """The venv's faster_msgs was rebuilt after the last change to the sources."""
    from ament_index_python.packages import get_package_share_directory

    installed = Path(get_package_share_directory("faster_msgs")) / path.parent.name / path.name
    assert installed.read_text() == path.read_text(), "stale build: run scripts/build_msgs.sh"


@pytest.mark.ros
def test_services_and_mode_constants():
    from faster_msgs.msg import PolicyStatus
    from faster_msgs.srv import SetInstruction, SetMode

    constants = {n[5:]: getattr(PolicyStatus, n) for n in dir(PolicyStatus)
                 if re.fullmatch(r"MODE_[A-Z]+", n)}
    assert constants == {m: m for m in VALID_MODES}
    assert list(SetMode.Request.get_fields_and_field_types()) == ["mode", "reason"]
    assert SetMode.Response.get_fields_and_field_types() == {
        "accepted": "boolean", "message": "string", "current_mode": "string"}
    assert SetInstruction.Request.get_fields_and_field_types() == {"instruction": "string"}
    assert list(SetInstruction.Response.get_fields_and_field_types()) == ["accepted", "message"]


@pytest.mark.parametrize("make", list(MAKERS.values()), ids=lambda f: f.__name__)
@pytest.mark.ros
def test_fixtures_set_every_field(make):
    """Guards the round-trip test: a field left at its default would compare equal trivially."""
    sent = to_plain(make())
    default = to_plain(type(make())())
    assert [k for k in sent if sent[k] == default[k]] == []


@pytest.mark.ros
@pytest.mark.multiprocess
def test_messages_round_trip_between_processes(ros_context, spawn_python):
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    peer = spawn_python(__file__, ["publisher"])
    node = rclpy.create_node("test_msgs_listener", context=ros_context)
    received = {}
    for key, make in MAKERS.items():
        node.create_subscription(type(make()), TOPICS[key],
                                 lambda msg, key=key: received.setdefault(key, msg),
                                 _reliable_latched_qos())
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    deadline = time.monotonic() + WAIT_S
    while len(received) < len(TOPICS) and time.monotonic() < deadline and peer.poll() is None:
        executor.spin_once(timeout_sec=0.1)

    assert sorted(received) == sorted(TOPICS), f"peer exit code {peer.poll()}"
    for key, make in MAKERS.items():
        assert to_plain(received[key]) == to_plain(make()), key
    chunk = received["chunk"]
    assert len(chunk.positions) == chunk.horizon * chunk.dims == H * D
    assert len(chunk.codes) == chunk.n_codebooks * chunk.code_horizon * chunk.code_dims


@pytest.mark.ros
@pytest.mark.multiprocess
def test_services_between_processes(ros_context, spawn_python):
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from faster_msgs.srv import SetInstruction, SetMode

    peer = spawn_python(__file__, ["services"])
    node = rclpy.create_node("test_msgs_client", context=ros_context)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    set_mode = node.create_client(SetMode, "test_msgs/set_mode")
    set_instruction = node.create_client(SetInstruction, "test_msgs/set_instruction")

    def call(client, request):
        assert client.wait_for_service(timeout_sec=WAIT_S), f"peer exit code {peer.poll()}"
        future = client.call_async(request)
        executor.spin_until_future_complete(future, timeout_sec=WAIT_S)
        assert future.done(), "no response in time"
        return future.result()

    ok = call(set_mode, SetMode.Request(mode="POLICY", reason="test"))
    assert (ok.accepted, ok.current_mode, ok.message) == (True, "POLICY", "mode POLICY (test)")
    bad = call(set_mode, SetMode.Request(mode="FLY", reason="test"))
    assert (bad.accepted, bad.current_mode) == (False, "POLICY")
    assert "FLY" in bad.message

    ok = call(set_instruction, SetInstruction.Request(instruction="pick up the cube"))
    assert (ok.accepted, ok.message) == (True, "ok")
    bad = call(set_instruction, SetInstruction.Request(instruction="  "))
    assert (bad.accepted, bad.message) == (False, "empty instruction")


if __name__ == "__main__":
    peer_main(sys.argv[1])
