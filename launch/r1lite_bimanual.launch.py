"""Launch the faster_ros stack for the r1lite_bimanual embodiment (config/r1lite_bimanual.yaml).

    ros2 launch faster_ros r1lite_bimanual.launch.py [mock_robot:=true] [model:=DIR]
        [use_sim_time:=true] [mock_source:=BAG]

The node graph comes from faster_ros.graph, the same description that `faster-ros bringup` runs.
"""

from faster_ros.launch_support import embodiment_launch_description


def generate_launch_description():
    return embodiment_launch_description("r1lite_bimanual")
