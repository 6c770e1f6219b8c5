"""Rosbag replay and recording (no rclpy here; the ROS parts are faster_ros.ros.bag_publisher and
faster_ros.ros.recorder).

    bag          a bag checked against an embodiment, as the inputs the policy node receives
    offline      the policy node's loop driven by the bag (same assembler, same checks)
    metrics      predicted chunks vs the recording: errors, VRR, seams, latency, invalid tokens
    report       report.json / report.png / report.html
    tokenizer_check  --tokenizer-only: FASTerVQ vs FAST on the bag's recorded actions
    end_effector end-effector errors in m / rad (VRR in those units) for pose action groups
    bagwriter    rosbag2 writing with faster_msgs registered in the rosbags typestore
    command      the ``faster-ros replay`` / ``faster-ros record`` command lines
"""
