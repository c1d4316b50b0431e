"""NanoClaw Bus event layer: the catalogue, the CloudEvents envelope, subjects and the event store.

This package (with ``services.harness``) is the only code shared between services.
"""
