"""The decoder's KV cache: one preallocated [rows, heads, slots, head dim] buffer of keys and one of
values per layer, written at the slots the decoder names for each forward (`SlotCache.positions`).

A transformers `Cache`, so the model's own attention layers read and write it; the decoder, not
the cache, keeps track of which slots hold what (its mask says which a query may see)."""

from __future__ import annotations

import torch
from transformers.cache_utils import Cache, CacheLayerMixin


def cache_length(slots: int) -> int:
    """The slots a cache for `slots` holds: a multiple of 16."""
    return -(-slots // 16) * 16


class SlotLayer(CacheLayerMixin):
    """One layer's keys and values, allocated at the first forward (when their shapes are known)."""

    is_compileable = True
    is_sliding = False

    def __init__(self, owner: SlotCache):
        super().__init__()
        self.owner = owner

    def lazy_initialization(self, key_states, value_states):
        shape = (self.owner.rows, key_states.shape[1], self.owner.max_len)
        self.keys = torch.zeros(*shape, key_states.shape[-1], dtype=key_states.dtype, device=key_states.device)
        self.values = torch.zeros(*shape, value_states.shape[-1], dtype=value_states.dtype, device=value_states.device)
        self.is_initialized = True

    def update(self, key_states, value_states, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        owner = self.owner
        if owner.scatter is not None:
            return self._scatter(key_states, value_states)
        keys, values = self.keys[owner.window], self.values[owner.window]  # views: a range of rows
        keys.index_copy_(2, owner.positions, key_states)
        values.index_copy_(2, owner.positions, value_states)
        return keys, values

    def _scatter(self, key_states, value_states):
        """A pass over distinct prefixes: each one's keys/values go to every row that starts with it,
        and attention needs only the prefixes themselves.

        Rows of one prefix sit next to each other in a batch, so each run of them is one broadcast
        copy: an indexed write to every (row, head, slot) moves the same bytes several times slower."""
        runs, slots = self.owner.scatter
        for mine, theirs in ((self.keys, key_states), (self.values, value_states)):
            for first, end, source in runs:
                mine[first:end, :, slots].copy_(theirs[source : source + 1].expand(end - first, -1, -1, -1))
        return key_states, value_states

    def free(self) -> None:
        self.keys = self.values = None
        self.is_initialized = False

    def get_mask_sizes(self, *args, **kwargs):
        return self.owner.max_len, 0

    def get_seq_length(self, *args, **kwargs):
        return 0

    def get_max_length(self):
        return self.owner.max_len

    def get_max_cache_shape(self, *args, **kwargs):
        return self.owner.max_len

    def reset(self):
        pass


class SlotCache(Cache):
    """A cache of `rows` rows × `max_len` slots over `num_layers` layers."""

    def __init__(self, num_layers: int, rows: int, max_len: int):
        self.positions = None  # the slots this forward writes
        self.window = slice(None)  # the rows it computes
        # In a pass over distinct prefixes: ([(first row, end row, the pass's prefix they start with)], slots).
        self.scatter = None
        self.rows = rows
        self.max_len = max_len
        super().__init__(layers=[SlotLayer(self) for _ in range(num_layers)])

    def free(self) -> None:
        """Drop every layer's buffers now (the layers and their owner refer to each other, so
        dropping the cache alone would leave the memory to the next garbage collection)."""
        for layer in self.layers:
            layer.free()
