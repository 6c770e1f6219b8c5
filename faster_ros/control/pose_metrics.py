"""End-effector errors in metres and radians, and FASTer's VRR in those units.

FASTer measures a reconstruction (or a prediction) by its Valid Reconstruction Rate: the share of
actions within a tolerance sigma of the ground truth, sigma in metres for translations and radians
for rotations (1e-2 already hurts task execution). For an end effector the per-component error of
a rotation representation means nothing (two Euler triples far apart can be the same rotation, a
quaternion and its negative are equal), so a step's errors here are

* translation: ``|p_pred - p_true|`` (m), the Euclidean distance of the position (or of the
  position delta, for delta actions);
* rotation: the geodesic angle between the two rotations (or the two delta rotations) (rad),
  whatever their representation;

and VRR@sigma is the share of steps whose error is at most sigma. Other action dimensions (joint
angles, grippers) are reported per element in their own units. :func:`end_effector_errors` is
pure numpy: the replay and evaluation tools call it on (..., H, D) arrays of the policy's actions.

No rclpy here.
"""

from __future__ import annotations

import numpy as np

from faster_ros import rotations as rot
from faster_ros.embodiment import Embodiment

SIGMAS = (1e-3, 1e-2)


def _summary(err: np.ndarray, prefix: str, unit: str, sigmas) -> dict[str, float]:
    err = np.asarray(err, dtype=np.float64).reshape(-1)
    finite = err[np.isfinite(err)]
    out = {f"{prefix}/invalid": float(err.size - finite.size)}
    if finite.size == 0:
        return out
    out[f"{prefix}/mean_{unit}"] = float(finite.mean())
    out[f"{prefix}/p95_{unit}"] = float(np.percentile(finite, 95))
    out[f"{prefix}/max_{unit}"] = float(finite.max())
    for s in sigmas:  # a step that defines no rotation is not valid
        out[f"{prefix}/vrr@{s:g}"] = float(np.sum(finite <= s) / err.size)
    return out


def rotation_errors(pred: np.ndarray, true: np.ndarray, representation: str,
                    axes: str | None = None) -> np.ndarray:
    """(N,) geodesic angles (rad) between rotations given as (N, k) rows of ``representation``;
    NaN where a row defines no rotation."""
    qp, _ = rot.to_quats(pred, representation, axes)
    qt, _ = rot.to_quats(true, representation, axes)
    return rot.angle_between(qp, qt)


def end_effector_errors(pred: np.ndarray, true: np.ndarray, emb: Embodiment,
                        sigmas=SIGMAS) -> dict[str, float]:
    """Errors of predicted actions ``pred`` against ``true``, both (..., D) in ``emb``'s action
    space (any leading shape: chunks x steps). Per end effector ``<ee>/translation/...`` (m) and
    ``<ee>/rotation/...`` (rad): mean, p95, max, ``vrr@sigma`` and ``invalid`` (steps without a
    defined rotation); ``joint/...`` per element over the other dimensions (their units)."""
    pred = np.asarray(pred, dtype=np.float64)
    true = np.asarray(true, dtype=np.float64)
    if pred.shape != true.shape or pred.shape[-1] != emb.action_dim:
        raise ValueError(f"end_effector_errors: shapes {pred.shape} and {true.shape} must match "
                         f"and end in {emb.action_dim} (the action dimensions of {emb.name!r})")
    p2, t2 = pred.reshape(-1, emb.action_dim), true.reshape(-1, emb.action_dim)
    out: dict[str, float] = {}
    pose = set()
    for ee in emb.end_effectors:
        pi, ri = list(ee.position_indices), list(ee.rotation_indices)
        pose.update(pi + ri)
        translation = np.linalg.norm(p2[:, pi] - t2[:, pi], axis=1)
        angle = rotation_errors(p2[:, ri], t2[:, ri], ee.rotation, ee.euler_axes)
        out.update(_summary(translation, f"{ee.name}/translation", "m", sigmas))
        out.update(_summary(angle, f"{ee.name}/rotation", "rad", sigmas))
    other = [i for i in range(emb.action_dim) if i not in pose]
    if other:
        out.update(_summary(np.abs(p2[:, other] - t2[:, other]), "joint", "unit", sigmas))
    return out
