"""faster_ros: an ament_python package that is also pip-installable.

ROS dependencies are declared in package.xml only (they are not PyPI names); the pinned PyPI wheels
that provide them off a ROS install are in requirements/ros-kilted.txt.
"""

from glob import glob
from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "faster_ros"


def data_tree(folder: str) -> list[tuple[str, list[str]]]:
    """(share/faster_ros/<dir>, [files]) for every file under ``folder``."""
    entries: dict[str, list[str]] = {}
    for path in sorted(Path(folder).rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            entries.setdefault(f"share/{PACKAGE}/{path.parent.as_posix()}", []).append(
                path.as_posix()
            )
    return sorted(entries.items())


setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        *data_tree("config"),
        *data_tree("models"),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="faster_ros developers",
    maintainer_email="faster-ros@users.noreply.github.com",
    description="ROS 2 node stack running FASTer vision-language-action policies on robots",
    license="Apache-2.0",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [
            "faster-ros = faster_ros.cli:main",
            "policy_node = faster_ros.ros.policy_node:main",
            "chunk_executor = faster_ros.ros.executor_node:main",
            "mock_robot = faster_ros.ros.mock_robot:main",
            "sim_robot = faster_ros.ros.sim_robot:main",
        ],
    },
)
