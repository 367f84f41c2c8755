"""The README's quickstart runs as written and prints what it promises."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).parents[2] / "README.md"


def test_readme_leads_with_the_two_commands():
    text = README.read_text()
    first_block = re.search(r"```bash\n(.*?)```", text, re.S)
    assert first_block is not None
    commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines() if line.strip()]
    assert commands == ["make demo", "make test"]


def test_quickstart_runs(tmp_path: Path):
    code = re.search(r"```python\n(.*?)```", README.read_text(), re.S)
    assert code is not None
    script = tmp_path / "quickstart.py"
    script.write_text(code.group(1))
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Your parcel was last seen in Memphis, TN." in result.stdout
    assert (tmp_path / ".orchestrate" / "orchestrate.db").exists()  # durable by default


def test_quickstart_records_the_steps_own_error(tmp_path: Path):
    code = re.search(r"```python\n(.*?)```", README.read_text(), re.S)
    assert code is not None
    check = """
import asyncio
from orchestrate import Client

async def show():
    async with Client("sqlite:///.orchestrate/orchestrate.db") as client:
        (run,) = await client.list(limit=1)
        track = next(s for s in (await client.detail(run.run_id)).steps if s.step_key == "track")
        print("track:", track.error["name"], track.error["message"], track.fallback)

asyncio.run(show())
"""
    script = tmp_path / "quickstart.py"
    script.write_text(code.group(1) + check)
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    # The step's own TimeoutError, not a rewritten "timed out after 2s".
    assert "track: TimeoutError carrier API did not answer value" in result.stdout
