"""The channel gateway: translates between chat channels (WhatsApp first) and the event bus."""
