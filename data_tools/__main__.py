"""Command line: ``python -m data_tools download ROOT [--mirror URL]...``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .download import DEFAULT_TIMEOUT, MNIST_MD5, MNIST_MIRRORS, DownloadError, download_mnist


def _read_checksums(path: str) -> dict[str, str]:
    """A checksum table in ``md5sum`` format: ``<md5>  <file name>`` per line."""
    table = {}
    for line in Path(path).read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            digest, name = line.split(maxsplit=1)
            table[name.strip().lstrip("*")] = digest.lower()
    return table


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m data_tools", description="Data tools of the autoencoders course.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    download = commands.add_parser(
        "download",
        help="fetch full MNIST into ROOT/MNIST/raw (needs internet access)",
        description=(
            "Fetch the four MNIST .gz files into ROOT/MNIST/raw, verifying their MD5 checksums. "
            "Afterwards use MNIST(root=ROOT) or set MNIST_ROOT=ROOT."
        ),
    )
    download.add_argument("root", metavar="ROOT", help="directory to put MNIST/raw/ under")
    download.add_argument(
        "--mirror",
        action="append",
        metavar="URL",
        help="base URL to fetch from; repeat to try several in turn (default: " + ", ".join(MNIST_MIRRORS) + ")",
    )
    download.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds per connection attempt")
    download.add_argument("--quiet", action="store_true", help="print only the summary line")
    # A replacement checksum table (md5sum format), for testing against a local server.
    download.add_argument("--checksums", help=argparse.SUPPRESS)
    return parser


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "download":
        checksums = _read_checksums(args.checksums) if args.checksums else MNIST_MD5
        log = None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
        try:
            result = download_mnist(
                args.root,
                mirrors=args.mirror or MNIST_MIRRORS,
                checksums=checksums,
                timeout=args.timeout,
                log=log,
            )
        except DownloadError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        except OSError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        print(
            f"MNIST ready in {result.directory}: {len(result.downloaded)} downloaded, "
            f"{len(result.skipped)} already present; use MNIST(root={str(args.root)!r}) "
            f"or MNIST_ROOT={args.root}"
        )
        return 0
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
