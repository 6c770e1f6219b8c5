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

import warnings
from typing import Any

import numpy as np

from faster_ros import rotations as rot
from faster_ros.embodiment import Embodiment

SIGMAS = (1e-3, 1e-2)


def _summary(err: np.ndarray, prefix: str, unit: str, sigmas) -> dict[str, float]:
    """Mean, p95, max and VRR of errors where +inf marks an invalid prediction (counted, never
    within sigma) and NaN a step without truth (left out)."""
    err = np.asarray(err, dtype=np.float64).reshape(-1)
    known = err[~np.isnan(err)]
    finite = known[np.isfinite(known)]
    out = {f"{prefix}/invalid": float(known.size - finite.size)}
    if err.size > known.size:
        out[f"{prefix}/missing"] = float(err.size - known.size)
    if finite.size == 0:
        return out
    out[f"{prefix}/mean_{unit}"] = float(finite.mean())
    out[f"{prefix}/p95_{unit}"] = float(np.percentile(finite, 95))
    out[f"{prefix}/max_{unit}"] = float(finite.max())
    for s in sigmas:  # a step that defines no rotation is not valid
        out[f"{prefix}/vrr@{s:g}"] = float(np.sum(finite <= s) / known.size)
    return out


def _mark(err: np.ndarray, pred_ok: np.ndarray, true_ok: np.ndarray) -> np.ndarray:
    """+inf where the prediction is invalid, NaN where the truth is missing."""
    err = np.where(pred_ok, err, np.inf)
    return np.where(true_ok, err, np.nan)


def rotation_errors(pred: np.ndarray, true: np.ndarray, representation: str,
                    axes: str | None = None) -> np.ndarray:
    """(N,) geodesic angles (rad) between rotations given as (N, k) rows of ``representation``;
    NaN where a row defines no rotation."""
    qp, _ = rot.to_quats(pred, representation, axes)
    qt, _ = rot.to_quats(true, representation, axes)
    return rot.angle_between(qp, qt)


def end_effector_step_errors(pred: np.ndarray, true: np.ndarray, emb: Embodiment
                             ) -> dict[str, dict[str, np.ndarray]]:
    """Per end effector, the error of every step: ``translation`` (m), ``rotation`` (rad,
    geodesic; NaN where either row defines no rotation) and, with a gripper, ``gripper``
    (absolute, in the gripper dimension's unit), each of the leading shape of ``pred`` / ``true``
    (..., D) (e.g. chunks x steps): +inf where the prediction is invalid (non-finite, or no
    rotation), NaN where the truth is (the step is left out of the figures)."""
    pred = np.asarray(pred, dtype=np.float64)
    true = np.asarray(true, dtype=np.float64)
    if pred.shape != true.shape or pred.shape[-1] != emb.action_dim:
        raise ValueError(f"end_effector_errors: shapes {pred.shape} and {true.shape} must match "
                         f"and end in {emb.action_dim} (the action dimensions of {emb.name!r})")
    lead = pred.shape[:-1]
    p2, t2 = pred.reshape(-1, emb.action_dim), true.reshape(-1, emb.action_dim)
    out: dict[str, dict[str, np.ndarray]] = {}
    for ee in emb.end_effectors:
        pi, ri = list(ee.position_indices), list(ee.rotation_indices)
        translation = _mark(np.linalg.norm(p2[:, pi] - t2[:, pi], axis=1),
                            np.isfinite(p2[:, pi]).all(axis=1), np.isfinite(t2[:, pi]).all(axis=1))
        qp, _ = rot.to_quats(p2[:, ri], ee.rotation, ee.euler_axes)
        qt, _ = rot.to_quats(t2[:, ri], ee.rotation, ee.euler_axes)
        pred_ok = np.isfinite(p2[:, ri]).all(axis=1) & np.isfinite(qp).all(axis=1)
        true_ok = np.isfinite(t2[:, ri]).all(axis=1) & np.isfinite(qt).all(axis=1)
        with np.errstate(invalid="ignore"):
            angle = _mark(rot.angle_between(qp, qt), pred_ok, true_ok)
        errors = {"translation": translation.reshape(lead), "rotation": angle.reshape(lead)}
        if ee.gripper is not None:
            g = emb.index(ee.gripper)
            errors["gripper"] = _mark(np.abs(p2[:, g] - t2[:, g]), np.isfinite(p2[:, g]),
                                      np.isfinite(t2[:, g])).reshape(lead)
        out[ee.name] = errors
    return out


def end_effector_errors(pred: np.ndarray, true: np.ndarray, emb: Embodiment,
                        sigmas=SIGMAS) -> dict[str, float]:
    """Errors of predicted actions ``pred`` against ``true``, both (..., D) in ``emb``'s action
    space (any leading shape: chunks x steps). Per end effector ``<ee>/translation/...`` (m) and
    ``<ee>/rotation/...`` (rad): mean, p95, max, ``vrr@sigma``, ``invalid`` (predicted steps
    without a defined rotation: never within sigma) and ``missing`` (steps whose truth is not
    finite or defines no rotation: left out); ``<ee>/gripper/...`` in the gripper's unit
    (``_unit`` keys); ``joint/...`` per element over the dimensions that are not poses
    (grippers included)."""
    steps = end_effector_step_errors(pred, true, emb)
    p2 = np.asarray(pred, dtype=np.float64).reshape(-1, emb.action_dim)
    t2 = np.asarray(true, dtype=np.float64).reshape(-1, emb.action_dim)
    out: dict[str, float] = {}
    pose = set()
    for ee in emb.end_effectors:
        pose.update(ee.position_indices + ee.rotation_indices)
        errors = steps[ee.name]
        out.update(_summary(errors["translation"], f"{ee.name}/translation", "m", sigmas))
        out.update(_summary(errors["rotation"], f"{ee.name}/rotation", "rad", sigmas))
        if "gripper" in errors:
            out.update(_summary(errors["gripper"], f"{ee.name}/gripper", "unit", sigmas))
    other = [i for i in range(emb.action_dim) if i not in pose]
    if other:
        err = _mark(np.abs(p2[:, other] - t2[:, other]), np.isfinite(p2[:, other]),
                    np.isfinite(t2[:, other]))
        out.update(_summary(err, "joint", "unit", sigmas))
    return out


def pose_errors(pred_cmd: np.ndarray, true_cmd: np.ndarray, slots, sigmas=SIGMAS
                ) -> tuple[dict[str, float], dict[str, dict[str, np.ndarray]]]:
    """Poses in a command space (faster_ros.control.pose.CommandSpace: position + quaternion
    per end effector), (..., D_command), at the ``slots`` of that space: per end effector the
    translation (m) and rotation (rad, geodesic) errors as figures like
    :func:`end_effector_errors` and per step (the leading shape)."""
    flat: dict[str, float] = {}
    steps: dict[str, dict[str, np.ndarray]] = {}
    for slot in slots:
        p, t = pred_cmd[..., list(slot.position)], true_cmd[..., list(slot.position)]
        qp, qt = pred_cmd[..., list(slot.quaternion)], true_cmd[..., list(slot.quaternion)]
        with np.errstate(invalid="ignore"):
            translation = _mark(np.linalg.norm(p - t, axis=-1), np.isfinite(p).all(axis=-1),
                                np.isfinite(t).all(axis=-1))
            angle = _mark(rot.angle_between(qp, qt), np.isfinite(qp).all(axis=-1),
                          np.isfinite(qt).all(axis=-1))
        steps[slot.name] = {"translation": translation, "rotation": angle}
        flat.update(_summary(translation, f"{slot.name}/translation", "m", sigmas))
        flat.update(_summary(angle, f"{slot.name}/rotation", "rad", sigmas))
    return flat, steps


def nested(flat: dict[str, float]) -> dict[str, Any]:
    """``{"left_ee/translation/mean_m": v}`` -> ``{"left_ee": {"translation": {"mean_m": v}}}``;
    the per-element ``joint/...`` figures are left out (the replay reports them per joint)."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        if key.startswith("joint/"):
            continue
        *path, leaf = key.split("/")
        node = out
        for part in path:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def per_step(steps: dict[str, dict[str, np.ndarray]]) -> dict[str, dict[str, list]]:
    """Mean error at each step of the chunk (over chunks), per end effector and part."""
    out: dict[str, dict[str, list]] = {}
    for ee, parts in steps.items():
        out[ee] = {}
        for part, err in parts.items():
            e = np.where(np.isfinite(err), err, np.nan)
            with warnings.catch_warnings():  # a step without any finite error: None
                warnings.simplefilter("ignore", RuntimeWarning)
                mean = np.nanmean(e, axis=0) if e.ndim == 2 else e
            out[ee][part] = [None if not np.isfinite(v) else float(v) for v in mean]
    return out


def units(emb: Embodiment) -> dict[str, str]:
    out = {"translation": "m", "rotation": "rad"}
    for ee in emb.end_effectors:
        if ee.gripper is not None:
            out[f"{ee.name}/gripper"] = emb.dimensions[emb.index(ee.gripper)].unit
    return out


def reconstruction_figures(emb: Embodiment, truth: np.ndarray, recons: dict[str, np.ndarray]
                           ) -> dict[str, Any]:
    """End-effector figures of tokenizer reconstructions: per reconstruction (name -> (N, H, D)
    array in ``emb``'s action space, like ``truth``) the :func:`end_effector_errors` nested by
    end effector and part, and their mean per chunk step; {} without end effectors."""
    if not emb.end_effectors:
        return {}
    truth = np.asarray(truth, dtype=np.float64)
    out: dict[str, Any] = {"units": units(emb), "sigmas": list(SIGMAS), "reconstructions": {},
                           "per_step": {}}
    for key, recon in recons.items():
        recon = np.asarray(recon, dtype=np.float64)
        out["reconstructions"][key] = nested(end_effector_errors(recon, truth, emb))
        out["per_step"][key] = per_step(end_effector_step_errors(recon, truth, emb))
    return out


def reconstruction_figures_for(embodiment: str, truth: np.ndarray,
                               recons: dict[str, np.ndarray]) -> dict[str, Any]:
    """:func:`reconstruction_figures` for the embodiment a tokenizer names (its config's
    ``embodiment``): {} when it has no end effectors, is not a known config, or its action
    space does not match ``truth`` (the tokenizer's evaluation then stays per element)."""
    from faster_ros.embodiment import EmbodimentConfigError, load_embodiment

    try:
        emb = load_embodiment(embodiment)
    except (FileNotFoundError, EmbodimentConfigError, TypeError):
        return {}
    if np.shape(truth)[-1] != emb.action_dim:
        return {}
    return reconstruction_figures(emb, truth, recons)
