"""Where the executor's key mapping used to live; the one key table is agent/keys.py.

Kept so existing imports keep working: these are the same functions, not a second table.
"""

from agent.keys import map_key, map_keys

__all__ = ["map_key", "map_keys"]
