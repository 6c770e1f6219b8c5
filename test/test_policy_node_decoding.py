"""When the policy node decodes compressed camera frames: on arrival while the next observation
may use them (so no JPEG decode lies on the path from the newest input to the chunk), else left
compressed. The frames that follow the reference frame between the worker's wake-up and its
assembly used to stay compressed (bench_runtime: assembly p95 2.42 ms; 1.10 ms since)."""

import threading
import time
from types import MethodType, SimpleNamespace

from faster_ros.ros.policy_node import PolicyNode


def _node(**kw):
    now = time.monotonic()
    fields = dict(_due_since=None, _inference_pending=False, _last_due_timer=now, _replan_s=0.5,
                  _prefetch_s=2.5 / 30, _assembler=SimpleNamespace(reference="head"),
                  _wake=threading.Event())
    node = SimpleNamespace(**(fields | kw))
    node._start_inference = MethodType(PolicyNode._start_inference, node)
    return node


def test_frames_between_the_wake_up_and_the_assembly_are_decoded_on_arrival():
    node = _node(_due_since=time.monotonic())  # a replan is due: waiting for the head frame
    assert PolicyNode._prefetching(node)
    PolicyNode._sample_arrived(node, "wrist_left")  # not the reference: nothing starts
    assert not node._wake.is_set()
    PolicyNode._sample_arrived(node, "head")
    assert node._wake.is_set() and node._due_since is None
    # the wrist frames of the same trigger arrive now, before the worker assembles
    assert PolicyNode._prefetching(node)
    node._inference_pending = False  # what infer_once does once the observation is assembled
    assert not PolicyNode._prefetching(node)  # mid-period frames stay compressed


def test_a_quiet_reference_input_still_wakes_the_worker_with_decoding_on():
    node = _node(_due_since=time.monotonic() - 1.0)  # due for longer than a period
    PolicyNode._replan_due(node)
    assert node._wake.is_set() and node._inference_pending
    assert PolicyNode._prefetching(node)


def test_frames_shortly_before_a_replan_are_decoded_ahead():
    node = _node(_last_due_timer=time.monotonic() - 0.45)  # the next replan is 50 ms away
    assert PolicyNode._prefetching(node)
    node = _node(_last_due_timer=time.monotonic())  # 500 ms away
    assert not PolicyNode._prefetching(node)
