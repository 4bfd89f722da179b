"""The PostgreSQL dialect of the task store: shared by dispatcher replicas."""
