"""Each protocol's signatures as its supplier computes and checks them, written from protocols/*.md.

One module per protocol. Nothing here imports `adapters`: only the protocol files' test vectors
tie the two sides together, so a signing mistake on one side cannot hide behind the other.
"""
