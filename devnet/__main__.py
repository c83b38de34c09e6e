"""``python -m trustmesh.devnet [--bind URL] --data DIR ...``: the same as ``trustmesh devnet``."""
import sys

from trustmesh.cli import main

sys.exit(main(["devnet", *sys.argv[1:]]))
