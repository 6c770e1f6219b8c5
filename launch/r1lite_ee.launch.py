"""Launch the faster_ros stack for the r1lite_ee embodiment (config/r1lite_ee.yaml): the R1 Lite
arms in end-effector space, PoseStamped targets on /motion_target/target_pose_arm_left|right.

    ros2 launch faster_ros r1lite_ee.launch.py [mock_robot:=true] [model:=DIR]
        [use_sim_time:=true] [mock_source:=BAG]

The node graph comes from faster_ros.graph, the same description that `faster-ros bringup` runs.
"""

from faster_ros.launch_support import embodiment_launch_description


def generate_launch_description():
    return embodiment_launch_description("r1lite_ee")
