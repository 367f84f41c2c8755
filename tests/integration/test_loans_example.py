"""The loan reference system (examples/loans): drift fires, loans go to people, re-baselining resolves it."""

from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "loans" / "main.py"
SVG = "{http://www.w3.org/2000/svg}"


def test_the_loan_example_catches_the_stale_fraud_model(tmp_path: Path) -> None:
    chart = tmp_path / "drift.svg"
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), "--svg", str(chart)], capture_output=True, text=True, timeout=110, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert done.stderr == ""  # the diverted steps' warnings stay out of the report
    shift = int(re.search(r"2023's patterns from run (\d+)", out)[1])  # type: ignore[index]
    fired = re.search(r"drift alert (\S+) fired at run (\d+) \((\d+) runs after the shift\)", out)
    assert fired is not None, out
    assert fired[1] == "loans:fraud_check.features.income.drift#1"
    assert 0 < int(fired[3]) <= 200 and int(fired[2]) == shift + int(fired[3])
    routed = re.search(r"routed to an analyst while the alert held: (\d+); frauds she caught: (\d+) of (\d+)", out)
    assert routed is not None and int(routed[1]) > 0 and 0 < int(routed[2]) <= int(routed[3])
    rebaselined = int(re.search(r"re-baselined at run (\d+)", out)[1])  # type: ignore[index]
    resolved = re.search(r"alert resolved at run (\d+); frauds let through since: (\d+) of (\d+)", out)
    assert resolved is not None and int(resolved[1]) > rebaselined > int(fired[2])
    assert resolved[2] == "0" and int(resolved[3]) > 0  # the new model catches the new ring
    root = ET.parse(chart).getroot()
    assert root.tag == f"{SVG}svg"
    lines = root.findall(f"{SVG}polyline")
    assert len(lines) == 2  # before the re-baselining, and after it (the new window filling breaks the line)
    texts = "".join(t.text or "" for t in root.iter(f"{SVG}text"))
    assert "threshold 0.25" in texts and "alert firing" in texts and "re-baselined" in texts
