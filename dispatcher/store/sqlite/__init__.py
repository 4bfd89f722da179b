"""The SQLite dialect of the task store: one file in WAL mode, for one host."""
