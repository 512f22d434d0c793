"""Where a benchmark's figures go: its JSON file under benchmarks/results/ and a table on the terminal."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any


def finish(out: dict[str, Any], path: Path, markdown: Callable[[dict[str, Any]], str], work: Path | None) -> None:
    """Write the results, print their table, and drop the scratch runs unless the caller keeps them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(markdown(out))
    if work is not None:
        shutil.rmtree(work, ignore_errors=True)
