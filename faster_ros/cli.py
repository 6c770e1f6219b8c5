"""``faster-ros``: the command line of the product.

    faster-ros demo                         the whole stack on the shipped default (mock robot)
    faster-ros bringup r1lite_wbc --mock-robot   start an embodiment's node graph here
    faster-ros bringup aloha_sim --sim      the same, on the simulated ALOHA (MuJoCo)
    faster-ros graph r1lite_wbc             print the node graph the launch files start
    faster-ros check-config config/*.yaml   validate embodiment configs
    faster-ros tokenizer train|eval ...     FASTerVQ training / evaluation
    faster-ros policy train|eval ...        FASTerVLA training / offline evaluation
    faster-ros sim-demos --out DIR          scripted ALOHA transfer-cube demos (LeRobot + bags)
    faster-ros sim-eval --model M           closed-loop success in the ALOHA sim, stack in loop
    faster-ros sim-vision --demos D --out O pretrain a policy's vision tower on labelled sim frames
    faster-ros sim-locator --demos D --out O  train an object locator on labelled sim frames
    faster-ros replay BAG --embodiment X    policy (or --tokenizer-only) vs a rosbag2; --publish
    faster-ros record OUT --embodiment X    record the stack's inputs, outputs and modes

Heavy modules are imported by the subcommand that needs them, so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

import yaml

# Subcommands implemented by another module's ``main(argv)``: name -> {verb: module}.
DELEGATED = {
    "tokenizer": {"train": "faster_ros.tokenizer.train", "eval": "faster_ros.tokenizer.evaluate"},
    "policy": {"train": "faster_ros.policy.train", "eval": "faster_ros.policy.evaluate"},
}
# Commands implemented entirely by another module's ``main(argv)``.
STANDALONE = {"sim-eval": "faster_ros.ros.sim_eval", "sim-demos": "faster_ros.sim.record",
              "sim-vision": "faster_ros.sim.vision", "sim-locator": "faster_ros.sim.locator_data"}


def _demo(args) -> int:
    from faster_ros.ros.demo import run_demo

    run_demo(args.embodiment, bag=args.bag, duration_s=args.duration, out_dir=args.out,
             model=args.model)
    return 0


def _add_record_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", help="rosbag2 directory to create (must not exist)")
    p.add_argument("--embodiment", required=True, help="embodiment name or config YAML path")
    p.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    p.add_argument("--duration", type=float, default=None, help="stop after N seconds")
    p.add_argument("--topic", action="append", default=[],
                   help="also record TOPIC:TYPE (e.g. /odom:nav_msgs/msg/Odometry)")
    p.add_argument("--no-inputs", action="store_true", help="leave out cameras and joints")
    p.add_argument("--sim-time", action="store_true", help="receive times from /clock")


def _replay(args) -> int:
    if args.publish:  # live, on /clock: the ROS side
        from faster_ros.ros.bag_publisher import run_publish

        return run_publish(args)
    from faster_ros.replay.command import run_replay

    return run_replay(args)


def _record(args) -> int:
    from faster_ros.ros.recorder import run_record

    return run_record(args)


def _graph_from(args):
    from faster_ros.graph import build_graph

    return build_graph(args.embodiment, mock_robot=args.mock_robot, sim=args.sim, model=args.model,
                       use_sim_time=args.sim_time, mock_source=args.bag or "",
                       deterministic=getattr(args, "deterministic", False),
                       initial_mode=args.initial_mode or "")


def _bringup(args) -> int:
    g = _graph_from(args)
    if args.processes:
        import time

        from faster_ros.ros.bringup import ProcessGraph

        with ProcessGraph(g, log_dir=args.log_dir) as pg:
            print(f"started {', '.join(pg.procs)}; logs in {pg.log_dir}; Ctrl-C stops")
            end = None if args.duration is None else time.monotonic() + args.duration
            try:
                while end is None or time.monotonic() < end:
                    time.sleep(0.5)
                    dead = [n for n, ok in pg.alive().items() if not ok]
                    if dead:
                        print(f"node(s) exited: {', '.join(dead)}; see {pg.log_dir}")
                        return 1
            except KeyboardInterrupt:
                pass
        return 0
    from faster_ros.ros.bringup import spin_in_process

    spin_in_process(g, duration_s=args.duration)
    return 0


def _graph(args) -> int:
    g = _graph_from(args)
    from faster_ros.embodiment import load_embodiment
    from faster_ros.graph import robot_topics

    print(yaml.safe_dump({"embodiment": g.embodiment, "nodes": [
        {"name": n.name, "executable": n.executable, "parameters": n.parameters}
        for n in g.nodes], "robot_topics": robot_topics(load_embodiment(args.embodiment))},
        sort_keys=False))
    return 0


def _check_config(args) -> int:
    from faster_ros.embodiment import EmbodimentConfigError, load_embodiment

    status = 0
    for path in args.configs:
        try:
            emb = load_embodiment(path)
        except (EmbodimentConfigError, FileNotFoundError) as exc:
            print(f"FAIL {exc}")
            status = 1
            continue
        print(f"ok   {path}: {emb.name}, {emb.action_dim} action dims, "
              f"{emb.tokenizer.tokens_per_chunk} tokens/chunk, {len(emb.outputs)} output groups")
    return status


def _graph_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("embodiment", help="embodiment name (config/<name>.yaml) or YAML path")
    p.add_argument("--mock-robot", action="store_true", help="also start the mock robot")
    p.add_argument("--sim", action="store_true",
                   help="also start the simulated robot (aloha_sim; sim time on /clock)")
    p.add_argument("--model", default=None, help="policy model dir or shipped name")
    p.add_argument("--bag", default=None, help="rosbag2 the mock robot replays")
    p.add_argument("--sim-time", action="store_true", help="use /clock")
    p.add_argument("--initial-mode", choices=("TELEOP", "POLICY", "HOLD"), default=None,
                   help="runtime mode at start (default: the config's handoff.initial_mode)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="faster-ros", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="run the whole stack on the shipped default")
    p.add_argument("--embodiment", default="g1_inspire")
    p.add_argument("--model", default=None)
    p.add_argument("--bag", default=None, help="bag to replay (default: the shared G1 bag)")
    p.add_argument("--duration", type=float, default=30.0, help="seconds to run")
    p.add_argument("--out", default="out/demo", help="report folder")
    p.set_defaults(func=_demo)

    p = sub.add_parser("bringup", help="start an embodiment's node graph here")
    _graph_args(p)
    p.add_argument("--processes", action="store_true", help="one process per node")
    p.add_argument("--deterministic", action="store_true", help="greedy decoding")
    p.add_argument("--duration", type=float, default=None, help="stop after N seconds")
    p.add_argument("--log-dir", default=None)
    p.set_defaults(func=_bringup)

    p = sub.add_parser("graph", help="print the node graph the launch files start")
    _graph_args(p)
    p.set_defaults(func=_graph)

    p = sub.add_parser("check-config", help="validate embodiment config files")
    p.add_argument("configs", nargs="+")
    p.set_defaults(func=_check_config)

    from faster_ros.replay import command as replay_command  # argparse only: cheap

    p = sub.add_parser("replay", help="replay a rosbag2: offline policy check or live on /clock")
    replay_command.add_replay_arguments(p)
    p.set_defaults(func=_replay)
    p = sub.add_parser("record", help="record the stack's topics to a rosbag2")
    _add_record_arguments(p)
    p.set_defaults(func=_record)

    for name, module in STANDALONE.items():
        sub.add_parser(name, help=f"see faster-ros {name} --help ({module})", add_help=False)
    for name, verbs in DELEGATED.items():
        p = sub.add_parser(name, help=f"{name} commands: {', '.join(verbs)}")
        p.add_argument("verb", choices=sorted(verbs))
        p.add_argument("rest", nargs=argparse.REMAINDER, help="arguments of the verb")
        p.set_defaults(func=None, verbs=verbs)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in STANDALONE:
        module = importlib.import_module(STANDALONE[argv[0]])
        return int(module.main(argv[1:]) or 0)
    args = build_parser().parse_args(argv)
    if args.func is None:
        module = importlib.import_module(args.verbs[args.verb])
        return int(module.main(args.rest) or 0)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
