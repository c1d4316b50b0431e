"""The WhatsApp side of the channel gateway, on neonize (whatsmeow): inbound translation, the outbound port,
connection lifecycle, pairing and group-name sync. No NATS code here; the gateway service wires these to the bus.

Importing a submodule needs the ``whatsapp`` extra (``neonize``); this package module itself imports nothing.
"""
