"""Queue service: the NanoClaw v1 group queue (nanoclaw-behaviour §13) as one event-sourced aggregate.
``runqueue`` holds the state and rules, ``handlers`` the event → decision glue, ``timers`` the retry clock."""
