from __future__ import annotations

import os

# Tests never touch the user's default store.
os.environ.setdefault("ORCHESTRATE_STORE", "memory://")
