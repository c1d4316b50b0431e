import pytest

from tests.events.store_contract import StoreContract


class TestJetStreamStore(StoreContract):
    """The contract against a real nats-server (JetStream file storage)."""

    @pytest.fixture
    def store(self, js_store):
        return js_store
