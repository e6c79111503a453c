"""Run every benchmark in turn (`make bench` = `python -m benchmarks`), or the ones named:

    python -m benchmarks [simulator inference batch cube app flow pps bayes export]

Each prints its own figures and ratios against a baseline run in the same process; run them on
an otherwise idle machine (they time wall clock on the shared CPU).
"""

from __future__ import annotations

import importlib
import sys
import time

ORDER = ("simulator", "inference", "batch", "cube", "app", "flow", "pps", "bayes", "export")


def main(argv=None) -> int:
    names = list(argv if argv is not None else sys.argv[1:]) or list(ORDER)
    unknown = [n for n in names if n not in ORDER]
    if unknown:
        print(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(ORDER)}", file=sys.stderr)
        return 2
    for name in names:
        mod = importlib.import_module(f"benchmarks.bench_{name}")
        print(f"\n=== benchmarks.bench_{name} ===", flush=True)
        t0 = time.perf_counter()
        saved = sys.argv
        sys.argv = [f"bench_{name}"]  # each main parses its own (default) arguments
        try:
            mod.main()
        finally:
            sys.argv = saved
        print(f"=== {name}: {time.perf_counter() - t0:.0f} s ===", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
