import pytest

from events.store.memory import InMemoryEventStore
from tests.events.store_contract import StoreContract


class TestInMemoryStore(StoreContract):
    @pytest.fixture
    def store(self):
        return InMemoryEventStore()
