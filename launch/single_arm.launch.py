"""Launch the faster_ros stack for the single_arm embodiment (config/single_arm.yaml).

    ros2 launch faster_ros single_arm.launch.py [mock_robot:=true] [model:=DIR]
        [use_sim_time:=true] [mock_source:=BAG]

The node graph comes from faster_ros.graph, the same description that `faster-ros bringup` runs.
"""

from faster_ros.launch_support import embodiment_launch_description


def generate_launch_description():
    return embodiment_launch_description("single_arm")
