"""dropbeard: one folder kept in sync across one person's devices through object storage."""

__version__ = "0.1.0"
