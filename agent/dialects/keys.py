"""Where the parsers' key-name reading used to live; the one key table is agent/keys.py.

Kept so existing imports keep working: the same function, not a second table.
"""

from agent.keys import parse_keys as normalize_keys

__all__ = ["normalize_keys"]
