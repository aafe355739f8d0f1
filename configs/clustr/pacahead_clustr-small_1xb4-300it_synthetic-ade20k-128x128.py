# ClusTR-small, PaCa head ADE20K: the tiny synthetic-data sibling (pacahead_clustr-tiny_1xb4-300it_synthetic-ade20k-128x128.py) with the small backbone.
_base_ = './pacahead_clustr-tiny_1xb4-300it_synthetic-ade20k-128x128.py'
model = dict(backbone=dict(arch='small'))
