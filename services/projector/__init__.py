"""The projections service (``nanoclaw service projections``): keeps the read-model database live."""
