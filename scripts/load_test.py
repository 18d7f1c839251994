"""Load test of ``frugalrec serve`` (open loop, mixed traffic): a thin wrapper around the
package's instrument ``frugalrec.bench.loadtest`` (same flags, same JSON keys).

    python scripts/load_test.py --duration 60 --rate 200 --out docs/bench/load_test.json
    python scripts/load_test.py --sweep --out docs/bench/capacity.json
"""

from __future__ import annotations

import sys

from frugalrec.bench.loadtest import main

if __name__ == "__main__":
    sys.exit(main())
