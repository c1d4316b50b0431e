"""SQLite read models (projections) rebuilt from the event log, and the replay machinery.

A projection writes its rows and its tracking position in one SQLite transaction, so after any crash it
resumes exactly after the last event it applied. Schema changes are not migrated: bump the projection's
``version`` and it is rebuilt from the log.
"""
