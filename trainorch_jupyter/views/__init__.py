"""Render Snapshots: plain text (nbval-stable) now, widget panels later."""
