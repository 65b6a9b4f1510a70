"""`ConfigService.apply_batch` on a store: the read-only guard of mirrored partitions holds in a batch."""

import pytest

from tandem.errors import Conflict
from tandem.models import Partition
from tandem.models.batch import BatchRequest, Operation


@pytest.fixture
def config(mirrored_config):
    return mirrored_config()


@pytest.mark.parametrize(("operation", "target"), [
    (Operation(action="create", resource="monitors", partition="mirror", name="m", body={"type": "tcp"}),
     "operations.1.partition"),
    (Operation(action="replace", resource="partitions", name="mirror", body={"description": "mine"}),
     "operations.1.partition"),
    (Operation(action="delete", resource="partitions", name="mirror"), "operations.1.partition"),
])
def test_a_batch_touching_a_read_only_partition_changes_nothing(config, operation, target):
    before = config.store.last_commit_id()
    first = Operation(action="create", resource="monitors", name="m", body={"type": "tcp"})
    with pytest.raises(Conflict) as refused:
        config.apply_batch(BatchRequest(operations=[first, operation]))
    assert refused.value.target == target and "mirror" in refused.value.message
    assert config.store.last_commit_id() == before
    assert config.read(Partition, {"name": "mirror"}) == {"name": "mirror", "description": ""}
