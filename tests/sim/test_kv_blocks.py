"""KV1: blocks in use stay within capacity; the watermark applies to admissions only."""
import pytest

from llmsim.sim.kv import BlockManager, KVCapacityError, KVView


def test_allocate_and_free_track_counts_and_peak():
    kv = BlockManager(num_blocks=10, block_size=16, watermark_blocks=1)
    kv.allocate(4)
    kv.allocate(3)
    kv.free(5)
    assert (kv.used_blocks, kv.free_blocks, kv.peak_used_blocks) == (2, 8, 7)
    assert kv.capacity_tokens == 160
    assert [kv.blocks_for(t) for t in (0, 1, 16, 17, 32)] == [0, 1, 1, 2, 2]


def test_over_allocation_and_over_free_raise():
    kv = BlockManager(num_blocks=4, block_size=8)
    kv.allocate(4)
    with pytest.raises(KVCapacityError):
        kv.allocate(1)
    kv.free(4)
    with pytest.raises(KVCapacityError):
        kv.free(1)


def test_watermark_only_limits_admission():
    kv = BlockManager(num_blocks=10, block_size=16, watermark_blocks=2)
    kv.allocate(7)
    assert kv.can_allocate(3) and not kv.can_allocate(3, admit=True) and kv.can_allocate(1, admit=True)


@pytest.mark.parametrize("kwargs", [dict(num_blocks=0, block_size=16), dict(num_blocks=4, block_size=0),
                                    dict(num_blocks=4, block_size=16, watermark_blocks=4)])
def test_invalid_sizes_raise(kwargs):
    with pytest.raises(ValueError):
        BlockManager(**kwargs)


def test_view_is_read_only():
    view = KVView(BlockManager(num_blocks=4, block_size=8))
    assert (view.num_blocks, view.block_size, view.free_blocks, view.blocks_for(9)) == (4, 8, 4, 2)
    with pytest.raises(AttributeError):
        view.free_blocks = 0
