# ClusTR-base, PaCa head ADE20K: the tiny synthetic-data sibling (pacahead_clustr-tiny_1xb4-300it_synthetic-ade20k-128x128.py) with the base backbone.
_base_ = './pacahead_clustr-tiny_1xb4-300it_synthetic-ade20k-128x128.py'
model = dict(backbone=dict(arch='base'), decode_head=dict(in_channels=[64, 128, 320, 512]))
