"""A KV cache that writes each new token in place instead of copying the whole cache.

Transformers' `DynamicLayer` grows by `torch.cat`, so every decoding step copies every
layer's keys and values: for 256 rows of SmolLM2-135M on CPU that copy was a third of the
sampling loop's time. `reserve(cache, tokens)` gives each such layer room for `tokens` more
positions once, after the prompt is read; the layer then hands the model views of its
buffer, and a step writes only its own token. Layers of other kinds (sliding windows,
static or quantised caches) are left as they are.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import DynamicLayer


class ReservedLayer(DynamicLayer):
    """A `DynamicLayer` whose keys and values are views of buffers with room to grow."""

    def __init__(self, layer: DynamicLayer, room: int):
        super().__init__()
        self.dtype, self.device = layer.keys.dtype, layer.keys.device
        self.is_initialized = True
        self._key_buffer = self._with_room(layer.keys, room)
        self._value_buffer = self._with_room(layer.values, room)
        self._set_length(layer.keys.shape[-2])

    @staticmethod
    def _with_room(states: torch.Tensor, room: int) -> torch.Tensor:
        rows, heads, length, dim = states.shape
        buffer = states.new_empty(rows, heads, length + room, dim)
        buffer[:, :, :length] = states
        return buffer

    def _set_length(self, length: int) -> None:
        self.keys = self._key_buffer[:, :, :length]
        self.values = self._value_buffer[:, :, :length]

    def update(self, key_states, value_states, *args, **kwargs):
        start, new = self.keys.shape[-2], key_states.shape[-2]
        if start + new > self._key_buffer.shape[-2]:  # out of room: grow as DynamicLayer does
            self._key_buffer = self._with_room(self.keys, max(new, start))
            self._value_buffer = self._with_room(self.values, max(new, start))
        self._key_buffer[:, :, start : start + new] = key_states
        self._value_buffer[:, :, start : start + new] = value_states
        self._set_length(start + new)
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        length = self.keys.shape[-2]
        self._key_buffer = self._key_buffer.index_select(0, indices)
        self._value_buffer = self._value_buffer.index_select(0, indices)
        self._set_length(length)

    def batch_repeat_interleave(self, repeats: int) -> None:
        length = self.keys.shape[-2]
        self._key_buffer = self._key_buffer.repeat_interleave(repeats, dim=0)
        self._value_buffer = self._value_buffer.repeat_interleave(repeats, dim=0)
        self._set_length(length)

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self.batch_select_indices(beam_idx.to(self.device))

    def crop(self, tokens_to_remove: int) -> None:
        """As `DynamicLayer.crop`: a negative count drops that many positions from the end, a
        positive one is the length to keep."""
        length = self.keys.shape[-2]
        keep = length - abs(tokens_to_remove) if tokens_to_remove < 0 else tokens_to_remove
        self._set_length(max(0, min(length, keep)))


def reserve(cache, tokens: int) -> None:
    """Room for `tokens` more positions in each plain dynamic layer of `cache`, in place."""
    for i, layer in enumerate(cache.layers):
        if type(layer) is DynamicLayer and layer.is_initialized and layer.keys.numel():
            cache.layers[i] = ReservedLayer(layer, tokens)
