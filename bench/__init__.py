"""orchestrate's benchmark suite: ``python -m bench`` (``make bench``).

Every number is measured against a floor taken in the same process, in the same run:
engine overhead against a plain Python call chain, durable cost against a bare SQLite
``INSERT`` + ``COMMIT``, fan-out against ``asyncio.gather``. Ratios, not absolute
timings, are what the suite reports and what the targets (set in the issues) are
checked against. Results go to ``bench/results/`` (JSON and markdown); the page
``docs/benchmarks.md`` records a run with the machine it ran on.

Modules:

* :mod:`bench.harness`: timing (medians of repetitions, floor and subject interleaved);
* :mod:`bench.chain`: the 10-step chain every measurement runs, and its floors;
* :mod:`bench.engine`: orchestrate's overhead per step on the in-memory store;
* :mod:`bench.durable`: durable cost per step and concurrent throughput on SQLite;
* :mod:`bench.fanout`: the 1,000-way map;
* :mod:`bench.peers`: the same chain on LangGraph, Burr and DBOS (``.[bench]`` extra);
* :mod:`bench.machine`: the machine's description;
* :mod:`bench.report`: the table, the targets, the JSON and markdown files;
* :mod:`bench.cli`: the command line.
"""

from __future__ import annotations
