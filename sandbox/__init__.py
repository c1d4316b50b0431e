"""What runs inside agent containers (the in-container agent on claude-agent-sdk). Arrives with the agent-runs
issue; nothing here yet."""
