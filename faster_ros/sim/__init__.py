"""Simulated robots for closed-loop evaluation and demonstrations (no rclpy here).

- :mod:`faster_ros.sim.aloha`: the ALOHA bimanual MuJoCo scenes of gym-aloha, stepped and rendered
  lean enough for a shared CPU, with strict and built-in success checks;
- :mod:`faster_ros.sim.scripted`: scripted transfer-cube demonstrations (waypoints -> IK);
- :mod:`faster_ros.sim.record`: the demonstration generator (LeRobot dataset + rosbag2).

Needs requirements/sim.txt (gym-aloha, mujoco) and a headless OpenGL (MUJOCO_GL=egl by default).
"""
