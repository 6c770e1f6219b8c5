"""Policy node: sensor topics -> time-aligned observation -> FASTerVLA -> faster_msgs/ActionChunk.

Lifecycle semantics: the embodiment config is read at construction (it names the topics); the model
is loaded in ``on_configure`` and inference runs only while active. Inference runs on a worker
thread, off the sensor callbacks, so the executor keeps executing the current chunk while the next
one is computed. With ``autostart`` (default) the node configures and activates itself; a model
that fails to load leaves it unconfigured, publishing the reason on PolicyStatus, and it retries.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections import OrderedDict, deque

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import String

from faster_msgs.msg import ActionChunk, ModeChange, PolicyStatus
from faster_msgs.srv import SetInstruction
from faster_ros import graph
from faster_ros.control import Chunk
from faster_ros.embodiment import load_embodiment
from faster_ros.inference import (
    check_policy_matches,
    chunk_problem,
    load_policy,
    state_history_of,
)
from faster_ros.observation import ObservationAssembler
from faster_ros.ros import conversions as conv
from faster_ros.ros.node_base import declare, now_s, run
from faster_ros.ros.qos import CHUNK_QOS, MODE_QOS, SENSOR_QOS, STATUS_QOS
from faster_ros.ros.stage_trace import StageTrace

RECEIVE_TABLE_SIZE = 256  # per input: receive times of the newest samples


class PolicyNode(LifecycleNode):
    """Runs the policy of one embodiment and publishes its action chunks."""

    def __init__(self, **kwargs):
        super().__init__("faster_policy", **kwargs)
        self._emb = load_embodiment(
            declare(self, "embodiment", "g1_inspire", "embodiment name or config YAML path",
                    read_only=True)
        )
        self._model = declare(self, "model", self._emb.policy.model or "",
                              "policy model directory or shipped model name", read_only=True)
        self._tokenizer = declare(self, "tokenizer", "",
                                  "tokenizer override (default: the model's own)", read_only=True)
        self._instruction = declare(self, "instruction", self._emb.policy.instruction,
                                    "language instruction (also settable by topic/service)")
        self._deterministic = declare(self, "deterministic", False,
                                      "greedy decoding (replay parity, tests)", read_only=True)
        self._device = declare(self, "device", "cpu", "torch device", read_only=True)
        replan = declare(self, "replan_period_s", 0.0,
                         "seconds between inferences (0: execute_steps x control period)")
        self._replan_s = replan or self._emb.control.execute_steps * self._emb.control.dt
        self._output_topic = declare(self, "output_topic", graph.CHUNK_TOPIC,
                                     "where chunks are published", read_only=True)
        status_hz = declare(self, "status_rate_hz", 2.0, "PolicyStatus publish rate")
        self._autostart = declare(self, "autostart", True,
                                  "configure and activate at start (like a lifecycle manager)")

        self._lock = threading.Lock()
        self._policy = None
        self._active = False
        self._reason = "not configured"
        self._ages: dict[str, float] = {}
        self._last_ms = 0.0
        self._produced = 0
        self._rejected = 0
        self._sequence = 0
        self._last_obs_stamp: float | None = None  # observation of the last inference
        self._input_errors: dict[str, str] = {}
        self._received: dict[str, OrderedDict[float, float]] = {}
        self._arrivals: dict[str, deque[float]] = {}
        self._assembler = ObservationAssembler(self._emb)

        sensors = ReentrantCallbackGroup()
        self._timer_group = MutuallyExclusiveCallbackGroup()
        for cam in self._emb.cameras:
            msg_type = Image if cam.msg_type == "Image" else CompressedImage
            self.create_subscription(msg_type, cam.topic, self._camera_cb(cam.name), SENSOR_QOS,
                                     callback_group=sensors)
        for ji in self._emb.joint_inputs:
            self.create_subscription(JointState, ji.topic, self._joints_cb(ji.topic), SENSOR_QOS,
                                     callback_group=sensors)
        self.create_subscription(String, graph.INSTRUCTION_TOPIC, self._on_instruction, 10,
                                 callback_group=sensors)
        self.create_service(SetInstruction, "~/set_instruction", self._set_instruction)
        self._chunk_pub = self.create_publisher(ActionChunk, self._output_topic, CHUNK_QOS)
        # Shadow mode: outside POLICY (as the executor announces on MODE_TOPIC; unknown until
        # it does) chunks go to the shadow topic, for comparison only; never to the executor.
        shadow_topic = declare(self, "shadow_topic", graph.SHADOW_CHUNK_TOPIC,
                               "where chunks go while the runtime is not in POLICY",
                               read_only=True)
        self._shadow_pub = self.create_publisher(ActionChunk, shadow_topic, CHUNK_QOS)
        self._runtime_mode = ""
        self._mode_stamp = -np.inf  # stamp of the newest ModeChange applied
        self._mode_lock = threading.Lock()
        self.create_subscription(ModeChange, graph.MODE_TOPIC, self._on_mode, MODE_QOS,
                                 callback_group=sensors)
        self._status_pub = self.create_publisher(PolicyStatus, graph.STATUS_TOPIC, STATUS_QOS)
        self._diag_pub = self.create_publisher(DiagnosticArray, graph.DIAGNOSTICS_TOPIC, 10)
        self.create_timer(1.0 / status_hz, self._publish_status, callback_group=self._timer_group)
        self.create_timer(1.0, self._publish_diagnostics, callback_group=self._timer_group)

        self._trace = StageTrace(self.get_name())  # per-chunk stage times, when enabled
        self._woke = 0.0
        self._frame_arrived = threading.Event()  # any camera frame buffered
        # from the wake-up of the worker until its observation is assembled: frames arriving
        # then are decoded on arrival (a wrist frame that follows the reference frame by 1 ms
        # used to stay compressed and be decoded inside the assembly, on the chunk's path)
        self._inference_pending = False
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._work, name="faster_policy_worker",
                                        daemon=True)
        self._worker.start()
        self._due_since: float | None = None
        self._last_due_timer = time.monotonic()
        # decode frames ahead from 2.5 periods of the slowest camera before a replan is due
        rates = [c.rate_hz for c in self._emb.cameras if c.rate_hz > 0]
        self._prefetch_s = 2.5 / min(rates) if rates else 0.0
        self.create_timer(self._replan_s, self._replan_due, callback_group=self._timer_group)
        if self._autostart:
            self._start_timer = self.create_timer(0.01, self._autostart_step,
                                                  callback_group=self._timer_group)

    # ------------------------------------------------------------------------------- lifecycle

    def _autostart_step(self) -> None:
        state = self._state_machine.current_state[1]
        if state == "unconfigured":
            self.trigger_configure()
            if self._policy is None:  # failed: retry later, the reason is on PolicyStatus
                self._start_timer.timer_period_ns = int(2e9)
                return
        if self._state_machine.current_state[1] == "inactive":
            self.trigger_activate()
        if self._state_machine.current_state[1] == "active":
            self._start_timer.cancel()

    def on_configure(self, state) -> TransitionCallbackReturn:
        if not self._model:
            self._reason = "no model configured (parameter 'model' is empty)"
            self.get_logger().error(self._reason)
            return TransitionCallbackReturn.FAILURE
        t0 = time.perf_counter()
        try:
            policy = load_policy(self._model, self._tokenizer, self._device,
                                 self._deterministic, self._emb)
            check_policy_matches(policy, self._emb)
            self._assembler.set_state_history(state_history_of(policy))
        except Exception as exc:  # a missing or corrupt model must not take the node down
            self._reason = f"model {self._model!r} failed to load: {type(exc).__name__}: {exc}"
            self.get_logger().error(self._reason)
            return TransitionCallbackReturn.FAILURE
        self._policy = policy
        self._reason = "configured"
        self.get_logger().info(
            f"loaded model {self._model!r} for {self._emb.name} in "
            f"{time.perf_counter() - t0:.1f} s; replanning every {self._replan_s * 1e3:.0f} ms"
        )
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state) -> TransitionCallbackReturn:
        self._active = True
        self._reason = "active: waiting for a complete observation"
        return super().on_activate(state)

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        self._active = False
        self._reason = "deactivated"
        return super().on_deactivate(state)

    def on_cleanup(self, state) -> TransitionCallbackReturn:
        self._policy = None
        self._assembler.reset()
        self._reason = "cleaned up"
        return TransitionCallbackReturn.SUCCESS

    def shutdown(self) -> None:
        self._stop.set()
        self._wake.set()
        self._worker.join(timeout=5.0)

    # ------------------------------------------------------------------------------- inputs

    def _camera_cb(self, name: str):
        def callback(msg) -> None:
            received = time.time()
            try:
                if isinstance(msg, Image):
                    frame = conv.image_to_rgb(msg)  # cheap: a reshape and a colour conversion
                else:  # JPEG/PNG decoding is not: decode only the frames an observation uses
                    frame = conv.lazy_compressed_to_rgb(msg)
                    if self._prefetching():
                        frame = self._decode_ahead(frame)
            except ValueError as exc:
                self._input_error(name, f"camera {name!r}: bad frame dropped: {exc}")
                return
            stamp = conv.to_sec(msg.header.stamp) or now_s(self)
            self._note_received(name, stamp, received)
            self._assembler.add_image(name, stamp, frame)
            self._frame_arrived.set()
            self._input_errors.pop(name, None)
            self._sample_arrived(name)

        return callback

    def _prefetching(self) -> bool:
        """Whether a frame arriving now may be used by the next inference: from a few frame
        periods before the replan timer fires until the worker wakes. Such frames are decoded on
        arrival, in the callback, so that the worker finds them ready and the decoding (several
        ms per 640x360 JPEG) is not on the path from the newest input to the published chunk;
        the others stay compressed (decoding every frame of 3 cameras at 30 Hz would cost far
        more CPU than the policy uses)."""
        if self._due_since is not None or self._inference_pending:
            return True
        due_at = self._last_due_timer + self._replan_s
        return time.monotonic() >= due_at - self._prefetch_s

    @staticmethod
    def _decode_ahead(lazy):
        try:
            return lazy()
        except Exception:  # noqa: BLE001 - left lazy: the assembler reports the bad frame
            return lazy

    def _joints_cb(self, topic: str):
        def callback(msg: JointState) -> None:
            received = time.time()
            try:
                names, positions = conv.joint_state_positions(msg)
            except ValueError as exc:
                self._input_error(topic, f"joint states on {topic}: dropped: {exc}")
                return
            stamp = conv.to_sec(msg.header.stamp) or now_s(self)
            self._note_received(topic, stamp, received)
            self._assembler.add_joints(topic, stamp, names, positions)
            self._input_errors.pop(topic, None)
            self._sample_arrived(topic)

        return callback

    def _replan_due(self) -> None:
        """A new chunk is due. Inference starts when the reference input's next sample arrives
        (the freshest possible observation), or now if that input has gone quiet for a whole
        period (so that the status says why nothing is produced)."""
        now = time.monotonic()
        self._last_due_timer = now
        if self._due_since is not None and now - self._due_since >= self._replan_s:
            self._start_inference()
        elif self._due_since is None:
            self._due_since = now

    def _sample_arrived(self, name: str) -> None:
        if name == self._assembler.reference and self._due_since is not None:
            self._start_inference()

    def _start_inference(self) -> None:
        """The replan is no longer due: wake the worker, and decode the frames arriving until
        it has assembled its observation."""
        self._due_since = None
        self._inference_pending = True
        self._wake.set()

    def _note_received(self, name: str, stamp: float, wall: float) -> None:
        """Wall time each input sample arrived, for the stack's overhead figure."""
        table = self._received.setdefault(name, OrderedDict())
        table[stamp] = wall
        while len(table) > RECEIVE_TABLE_SIZE:
            table.popitem(last=False)
        self._arrivals.setdefault(name, deque(maxlen=RECEIVE_TABLE_SIZE)).append(wall)

    def input_rate_hz(self, name: str, window_s: float = 2.0) -> float:
        """Samples per second received on an input over the last ``window_s``."""
        arrivals = self._arrivals.get(name)
        if not arrivals:
            return 0.0
        since = time.time() - window_s
        # tuple() copies in one step under the GIL: the sensor callbacks (reentrant group, other
        # threads) append meanwhile, and iterating the deque itself raised "deque mutated during
        # iteration" in the diagnostics timer, which took the whole node down
        recent = [t for t in tuple(arrivals) if t >= since]
        return (len(recent) - 1) / (recent[-1] - recent[0]) if len(recent) > 1 else 0.0

    def _observation_received(self, input_stamps: dict[str, float]) -> float:
        walls = [self._received.get(name, {}).get(stamp) for name, stamp in input_stamps.items()]
        walls = [w for w in walls if w is not None]
        return max(walls) if walls else 0.0

    def _input_error(self, key: str, message: str) -> None:
        self._input_errors[key] = message
        self.get_logger().warning(message, throttle_duration_sec=2.0)

    def _on_mode(self, msg: ModeChange) -> None:
        """Follow the executor's runtime mode. Only the newest transition counts: a (re)started
        node gets the latched history of transitions, and a live one may arrive before or among
        it (seen: the restarted policy ended in an old HOLD while the executor was in POLICY,
        so every chunk went to the shadow topic). A clock that went back resets the order."""
        stamp = conv.to_sec(msg.header.stamp)
        with self._mode_lock:
            if self._mode_stamp > now_s(self) + 1.0:  # our clock jumped back (sim time)
                self._mode_stamp = -np.inf
            if stamp < self._mode_stamp:
                return  # an older transition delivered late
            self._mode_stamp = stamp
            if msg.to_mode != self._runtime_mode:
                where = "executed" if msg.to_mode == PolicyStatus.MODE_POLICY else "shadow"
                self.get_logger().info(
                    f"runtime mode {msg.to_mode} ({msg.reason}): chunks {where}")
            self._runtime_mode = msg.to_mode

    def _on_instruction(self, msg: String) -> None:
        self._apply_instruction(msg.data)

    def _set_instruction(self, request, response):
        response.accepted, response.message = self._apply_instruction(request.instruction)
        return response

    def _apply_instruction(self, text: str) -> tuple[bool, str]:
        text = text.strip()
        if not text:
            return False, "empty instruction rejected; keeping " + repr(self._instruction)
        self._instruction = text
        self.get_logger().info(f"instruction: {text!r}")
        return True, f"instruction set to {text!r}"

    # ------------------------------------------------------------------------------- inference

    def _work(self) -> None:
        while not self._stop.is_set():
            if not self._wake.wait(timeout=0.5):
                continue
            self._wake.clear()
            if self._stop.is_set() or not self._active or self._policy is None:
                self._inference_pending = False
                continue
            self._await_frames()
            self._woke = time.time()
            try:
                self.infer_once()
            except Exception as exc:  # keep the worker alive; the executor holds the robot
                if self._stop.is_set() or not self.context.ok():
                    return  # shutting down (Ctrl-C ends the context first): nothing to report
                with self._lock:
                    self._rejected += 1
                    self._reason = f"inference failed: {type(exc).__name__}: {exc}"
                self.get_logger().error(self._reason + "\n" + traceback.format_exc(limit=3),
                                        throttle_duration_sec=2.0)

    def _await_frames(self) -> None:
        """Before assembling: wait (at most half a frame period) for the other cameras' frames
        that belong with the newest reference frame and are still on their way
        (ObservationAssembler.cameras_pending), so the observation holds the freshest set."""
        t = self._assembler.newest_stamp(self._assembler.reference)
        pending = self._assembler.cameras_pending(t)
        if not pending:
            return
        deadline = time.monotonic() + self._assembler.frame_wait_s(pending)
        while pending and not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._frame_arrived.clear()
            pending = self._assembler.cameras_pending(t)
            if pending:
                self._frame_arrived.wait(left)

    def infer_once(self) -> bool:
        """Assemble an observation at the current time, run the policy, publish the chunk.
        Returns whether a chunk was published."""
        try:
            result = self._assembler.assemble(now_s(self), self._instruction)
        finally:
            self._inference_pending = False
        assembled = time.time()
        self._ages = dict(result.ages)
        if result.observation is None:
            self._reason = result.reason
            self.get_logger().warning(f"no observation used: {result.reason}",
                                      throttle_duration_sec=2.0)
            return False
        obs = result.observation
        if obs.stamp == self._last_obs_stamp:
            return False  # nothing new since the last chunk: the executor would refuse a copy
        self._last_obs_stamp = obs.stamp
        out = self._policy.predict_action_chunk(obs)
        predicted = time.time()
        self._last_ms = float(out.timing.get("total_ms", 0.0))
        problem = chunk_problem(out, self._emb)  # the same checks as offline replay
        if problem:
            with self._lock:
                self._rejected += 1
                self._reason = "chunk not published: " + problem
            self.get_logger().warning(self._reason, throttle_duration_sec=2.0)
            return False
        self._sequence += 1
        actions = np.asarray(out.actions, dtype=np.float64)
        chunk = Chunk(positions=actions, start_time=obs.stamp, dt=self._emb.control.dt,
                      sequence=self._sequence)
        msg = conv.chunk_to_msg(
            chunk, embodiment=self._emb.name, model_id=str(self._model),
            dimension_names=self._emb.dim_names, codes=out.codes, timing=out.timing,
        )
        received = self._observation_received(obs.input_stamps)
        if received > 0:
            msg.observation_received = conv.to_time(received)
        live = self._runtime_mode == PolicyStatus.MODE_POLICY
        built = time.time()
        (self._chunk_pub if live else self._shadow_pub).publish(msg)
        if self._trace.enabled and live and received > 0:
            self._trace.write(self._sequence, {
                "received": received, "woke": self._woke, "assembled": assembled,
                "predicted": predicted, "built": built, "published": time.time()})
        late = self._too_late(chunk)
        with self._lock:
            self._produced += 1
            self._reason = late or "running"
        if late:
            self.get_logger().warning(late, throttle_duration_sec=2.0)
        return True

    def _too_late(self, chunk: Chunk) -> str:
        """Why a just published chunk is of no use ("" when it is): every step is already past
        (inference slower than the whole chunk). It is still published, so that the executor
        records its verdict; the status says what to fix."""
        now = now_s(self)
        if chunk.end_time >= now + self._emb.control.min_lead_s:
            return ""
        return (f"inference too slow: {now - chunk.start_time:.2f} s from observation to chunk, "
                f"longer than the whole chunk ({chunk.horizon} steps, "
                f"{chunk.end_time - chunk.start_time:.2f} s); the executor cannot use it and "
                f"holds")

    # ------------------------------------------------------------------------------- status

    def _status_reason(self) -> str:
        errors = "; ".join(self._input_errors.values())
        return f"{self._reason}; {errors}" if errors else self._reason

    def _publish_status(self) -> None:
        msg = PolicyStatus()
        msg.header.stamp = self.get_clock().now().to_msg()
        running = self._active and self._reason == "running"
        msg.mode = PolicyStatus.MODE_POLICY if running else PolicyStatus.MODE_HOLD
        if running and self._runtime_mode != PolicyStatus.MODE_POLICY:
            msg.mode = PolicyStatus.MODE_SHADOW  # computed and published, not executed
        msg.reason = self._status_reason()
        msg.input_names = list(self._ages)
        msg.input_ages_s = [float(min(a, 1e6)) for a in self._ages.values()]
        msg.last_inference_ms = float(self._last_ms)
        msg.chunks_produced = self._produced
        msg.chunks_rejected = self._rejected
        msg.instruction = self._instruction
        msg.observation_ready = running
        self._status_pub.publish(msg)

    def _publish_diagnostics(self) -> None:
        array_msg = DiagnosticArray()
        array_msg.header.stamp = self.get_clock().now().to_msg()
        budgets = {c.name: c.max_age_s for c in self._emb.cameras}
        budgets.update({j.topic: j.max_age_s for j in self._emb.joint_inputs})
        for name, budget in budgets.items():
            age = self._ages.get(name, float("inf"))
            status = DiagnosticStatus(name=f"faster_policy: input {name}", hardware_id=name)
            status.level = DiagnosticStatus.OK if age <= budget else DiagnosticStatus.STALE
            status.message = (f"age {age:.3f} s (budget {budget:.3f} s)" if np.isfinite(age)
                              else "no data received")
            status.values = [KeyValue(key="age_s", value=f"{age:.4f}"),
                             KeyValue(key="rate_hz", value=f"{self.input_rate_hz(name):.2f}")]
            array_msg.status.append(status)
        policy = DiagnosticStatus(name="faster_policy: policy", hardware_id=self._emb.name)
        policy.level = (DiagnosticStatus.OK if self._reason == "running"
                        else DiagnosticStatus.WARN)
        policy.message = self._status_reason()
        policy.values = [
            KeyValue(key="last_inference_ms", value=f"{self._last_ms:.1f}"),
            KeyValue(key="chunks_produced", value=str(self._produced)),
            KeyValue(key="chunks_rejected", value=str(self._rejected)),
        ]
        array_msg.status.append(policy)
        self._diag_pub.publish(array_msg)


def main(args: list[str] | None = None) -> None:
    run(PolicyNode, args)


if __name__ == "__main__":
    main()
