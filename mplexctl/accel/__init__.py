"""Optional shortcuts beside the reference pipeline (engine/apply.py, config/).

Each accelerator answers one question of the pipeline faster than the reference path does,
or answers None ("not applicable") and the caller takes the reference path. None of them may
change a result, only its speed: the equivalence-critical tests run both ways (the `accel`
fixture in tests/conftest.py), and MPLEXCTL_ACCEL=0 turns every one of them off.

  routeblocks  load      route blocks read by a regex instead of as YAML nodes
  verdicts     validate  schema verdicts remembered by digest: jsonschema is not imported
  noop         apply     the file and the maps unchanged since the last apply: nothing parsed
  overlap      apply     the file parsed in one thread while another probes the kernel
  reprobe      verify    the planned in-place route writes confirmed without decoding the map
"""

from __future__ import annotations

import os

SWITCH = "MPLEXCTL_ACCEL"


def enabled() -> bool:
    """False when the environment says MPLEXCTL_ACCEL=0 (read at each call)."""
    return os.environ.get(SWITCH, "1").strip() != "0"
