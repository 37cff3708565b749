"""First program inside the sandbox: apply the limits, drop privileges, start the kernel.

Run by path with ``python -I -S launch.py [options] -- KERNEL_ARGV...`` (standard library
only, so that it starts in a few milliseconds and needs nothing from the course). It

1. asks the kernel's out-of-memory killer to pick sandboxed processes first;
2. sets the resource limits (inherited by every process the kernel starts);
3. when started as root (the grader runs as root), switches to the unprivileged sandbox
   uid/gid for good, so that the process limit applies and file permissions protect
   anything a bind mount might still expose;
4. replaces itself with the kernel command.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys

LIMITS = {
    "memory": resource.RLIMIT_AS,
    "cpu": resource.RLIMIT_CPU,
    "processes": resource.RLIMIT_NPROC,
    "file_size": resource.RLIMIT_FSIZE,
}
# Seconds between the CPU-time soft limit (SIGXCPU, catchable) and the hard one (SIGKILL).
CPU_GRACE = 5


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="launch.py")
    parser.add_argument("--uid", type=int, default=None)
    parser.add_argument("--gid", type=int, default=None)
    for name in LIMITS:
        parser.add_argument("--" + name.replace("_", "-"), dest=name, type=int, default=None)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.command[:1] == ["--"]:
        args.command = args.command[1:]
    if not args.command:
        parser.error("no command given")
    return args


def set_limit(name: str, value: int) -> None:
    kind = LIMITS[name]
    hard = value + CPU_GRACE if name == "cpu" else value
    resource.setrlimit(kind, (value, hard))


def main(argv: list[str]) -> None:
    args = parse(argv)
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("1000")
    except OSError:
        pass
    for name in LIMITS:
        value = getattr(args, name)
        if value is not None:
            set_limit(name, value)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if args.uid is not None:
        os.setgroups([])
        os.setgid(args.gid if args.gid is not None else args.uid)
        os.setuid(args.uid)
        try:
            os.setuid(0)
        except PermissionError:
            pass
        else:
            sys.exit("sandbox: could not drop root privileges")
    home = os.environ.get("HOME")
    if home:
        os.makedirs(home, exist_ok=True)
    os.execv(args.command[0], args.command)


if __name__ == "__main__":
    main(sys.argv[1:])
