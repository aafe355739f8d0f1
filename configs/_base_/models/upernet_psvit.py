# PSViT + UperNet (+ FCN auxiliary head on the stride-16 level): the upernet_pacavit layout with the
# PSViT backbone. PSViT gives 4 levels (strides 4/8/16/32): channels [C0, C0, C1, C2]
# (tiny: [96, 96, 192, 288]).
_base_ = './upernet_pacavit.py'
model = dict(
    backbone=dict(
        _delete_=True,
        type='clusterseg.PSViT',
        arch='tiny',
        img_size=224,  # the ImageNet grid; the position embedding is interpolated per input
        out_type='featmap',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.1),
    decode_head=dict(in_channels=[96, 96, 192, 288]),
    auxiliary_head=dict(in_channels=192))
