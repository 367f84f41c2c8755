"""``python -m bench``: run the benchmark suite (see :mod:`bench.cli`)."""

from __future__ import annotations

from bench.cli import main

raise SystemExit(main())
