"""Sandbox backends: one interface (``base``), Docker (default), Apple Container, trusted local process."""
