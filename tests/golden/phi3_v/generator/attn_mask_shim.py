"""Stand-in for `transformers.modeling_attn_mask_utils` (removed in transformers 5): the two helpers the
original files import, with their transformers-4.x semantics (additive float masks, 0 = attend, finfo.min =
blocked): padding keys blocked; causal: key j > query i blocked; sliding window: i - j > window blocked."""
import sys
import types

import torch


def _prepare_4d_attention_mask(mask, dtype, tgt_len=None):
    bsz, src_len = mask.shape
    tgt_len = tgt_len or src_len
    blocked = (mask[:, None, None, :] == 0).expand(bsz, 1, tgt_len, src_len)
    return torch.zeros(blocked.shape, dtype=dtype).masked_fill(blocked, torch.finfo(dtype).min)


def _prepare_4d_causal_attention_mask(attention_mask, input_shape, inputs_embeds, past_key_values_length, sliding_window=None):
    bsz, tgt_len = input_shape
    dtype = inputs_embeds.dtype
    assert past_key_values_length == 0
    i = torch.arange(tgt_len)[:, None]
    j = torch.arange(tgt_len)[None, :]
    blocked = j > i
    if sliding_window is not None:
        blocked = blocked | (i - j > sliding_window)
    blocked = blocked[None, None].expand(bsz, 1, tgt_len, tgt_len)
    if attention_mask is not None:
        blocked = blocked | (attention_mask[:, None, None, :] == 0)
    return torch.zeros(blocked.shape, dtype=dtype).masked_fill(blocked, torch.finfo(dtype).min)


module = types.ModuleType("transformers.modeling_attn_mask_utils")
module._prepare_4d_attention_mask = _prepare_4d_attention_mask
module._prepare_4d_causal_attention_mask = _prepare_4d_causal_attention_mask
sys.modules["transformers.modeling_attn_mask_utils"] = module
