"""faster_ros: run FASTer vision-language-action policies on ROS 2 robots.

The core (``embodiment``, ``tokenizer``, ``policy``, ``observation``, ``control``) never imports
rclpy; only ``faster_ros.ros`` does.
"""

__version__ = "0.1.0"
