"""Building blocks of the bundled recognisers, one concept per module (as WeNet's ``transformer/``):
attention, convolution module, positional embedding, feed-forward, masks, subsampling,
the Conformer encoder and its layer, the attention decoder and its layer, the CTC head
and the label-smoothed loss."""
