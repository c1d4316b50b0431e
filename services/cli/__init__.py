"""The ``nanoclaw`` command line: the composition root of the system."""
