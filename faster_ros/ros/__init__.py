"""The only part of faster_ros that imports rclpy: message conversions, QoS, nodes and bringup."""
