"""NanoClaw Bus services: one package per service, the shared harness, and the ``nanoclaw`` CLI."""
