# ClusTR-small, UperNet ADE20K: the tiny synthetic-data sibling (upernet_clustr-tiny_1xb4-300it_synthetic-ade20k-128x128.py) with the small backbone.
_base_ = './upernet_clustr-tiny_1xb4-300it_synthetic-ade20k-128x128.py'
model = dict(backbone=dict(arch='small'))
