"""The task store: protocol, records, query, the threaded adapter, one folder per dialect."""
