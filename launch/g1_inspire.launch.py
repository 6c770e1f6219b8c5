"""Launch the faster_ros stack for the g1_inspire embodiment (config/g1_inspire.yaml).

    ros2 launch faster_ros g1_inspire.launch.py [mock_robot:=true] [model:=DIR]
        [use_sim_time:=true] [mock_source:=BAG]

The node graph comes from faster_ros.graph, the same description that `faster-ros bringup` runs.
"""

from faster_ros.launch_support import embodiment_launch_description


def generate_launch_description():
    return embodiment_launch_description("g1_inspire")
