"""`kerakit smoke` on every shipped config: each must pass offline in under 10 s once
TensorFlow is imported (issue 23). Prints each config's time and every check's.

    python benchmarks/smoke.py            # all of configs/
    python benchmarks/smoke.py configs/digits_cnn.yaml
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGET_S = 10.0


def main(paths: list[str]) -> int:
    start = time.perf_counter()
    import tensorflow  # noqa: F401  (the target is counted once TensorFlow is imported)

    from kerakit.smoke.run import recipe_files, smoke

    print(f"import tensorflow: {time.perf_counter() - start:.1f} s (not counted)")
    worst = 0.0
    files = recipe_files(paths or [REPO / "configs"])
    for path in files:
        result = smoke(path)
        checks = ", ".join(f"{c.name} {c.seconds:.1f}" for c in result.checks)
        print(f"{path.name:28s} {result.status:8s} {result.seconds:5.1f} s   ({checks})")
        for note in result.notes:
            print(f"{'':28s} note: {note}")
        worst = max(worst, result.seconds)
        if not result.passed:
            print(f"{'':28s} {result.explain()}")
    ok = worst < TARGET_S
    print(f"slowest: {worst:.1f} s (target < {TARGET_S:.0f} s): {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
