"""`make demo`: the experiment of `make reproduce` (experiment/reproduce.py) at a smaller size, in under
15 minutes on a 2-core CPU, with its table.

Runs in output/demo/ with the settings of config/demo.json: the same stages, the same comparisons, the
same outputs (table.md, table.json, efficiency.png, budget.png, zero_std.png, commands.sh); too few
problems and steps to resolve the paper's effects, enough to run every stage end to end. A rerun resumes.

    python -m experiment.demo [--config config/demo.json] [--work output/demo]
"""
from __future__ import annotations

import argparse
import os
import sys

from experiment import reproduce


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=os.path.join(reproduce.REPO, "config", "demo.json"), help="settings")
    parser.add_argument("--work", default=os.path.join("output", "demo"), help="working directory of the stages")
    args = parser.parse_args(argv)
    return reproduce.main(["--config", args.config, "--work", args.work])


if __name__ == "__main__":
    sys.exit(main())
