"""The HTTP API: one blueprint per area."""
