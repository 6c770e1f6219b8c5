"""Launch the faster_ros stack for the aloha_sim embodiment (config/aloha_sim.yaml).

    ros2 launch faster_ros aloha_sim.launch.py [mock_robot:=true] [model:=DIR]
        [sim:=true] [use_sim_time:=true]

The node graph comes from faster_ros.graph, the same description that `faster-ros bringup` runs.
"""

from faster_ros.launch_support import embodiment_launch_description


def generate_launch_description():
    return embodiment_launch_description("aloha_sim")
