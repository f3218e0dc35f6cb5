#!/usr/bin/env python3
"""A script in Python: a `#!` line makes the runtime run it with that interpreter from the
image instead of /bin/sh. Variables come from `deployer init -e` (every run) and
`deployer run -e` (one run)."""
import os
import platform
import statistics

samples = [float(x) for x in os.environ.get("SAMPLES", "").split(",") if x]
print(f"{os.environ.get('GREETING', 'Hello')}, {os.environ.get('NAME', 'world')}!")
print(f"python {platform.python_version()} on {platform.machine()}")
if samples:
    print(f"n={len(samples)} mean={statistics.mean(samples):.2f} stdev={statistics.stdev(samples):.2f}")
