"""``python -m tests.hostile [OUTDIR]``: write every hostile submission into OUTDIR/<name>/."""
from __future__ import annotations

import sys
from pathlib import Path

from tests.hostile import HOSTILE, build

out = Path(sys.argv[1] if len(sys.argv) > 1 else "hostile-submissions")
for name in HOSTILE:
    print(build(name, out / name))
