"""What the program says on the operator's terminal while a step runs."""

import sys


def progress(message: str) -> None:
    # A dynamic provider's stderr reaches the terminal while the step runs (stdout is the RPC channel).
    print(f"omni-scale: {message}", file=sys.stderr, flush=True)
