"""Generation engines (`sampling=`) behind the Generator protocol (afd/core/protocols.py)."""
