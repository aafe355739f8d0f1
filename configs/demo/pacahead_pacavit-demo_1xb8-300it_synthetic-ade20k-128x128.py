# The README demo (`make demo`): PaCa-ViT + PaCa head trained from scratch on the synthetic
# ADE20K-format set in a few minutes on 2 CPU cores.
# "pacavit-demo" is a REDUCED-WIDTH DEMO VARIANT, not a published model: PaCa-ViT-tiny's design
# (conv stem, patch-to-cluster attention with conv clustering computed once per stage, Mix-FFN,
# plain MHSA in stage 4) at SegFormer-B0's widths (32/64/160/256), one block per stage (two in
# stage 3) and 16 clusters per stage; the PaCa head with 128 channels. The published recipes are
# configs/pacavit/pacahead_pacavit-tiny_8xb2-160k_ade20k-512x512.py and its siblings.
_base_ = ['../pacavit/pacahead_pacavit-tiny_1xb4-300it_synthetic-ade20k-128x128.py']
embed_dims = [32, 64, 160, 256]
model = dict(
    backbone=dict(
        _delete_=True,
        type='clusterseg.PaCaViT',
        arch=dict(embed_dims=embed_dims, depths=[1, 1, 2, 1], num_heads=[1, 2, 5, 8],
                  num_clusters=[16, 16, 16, 0], clustering='conv'),
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.0),
    decode_head=dict(in_channels=embed_dims, channels=128, num_classes=8))
train_dataloader = dict(batch_size=8)
optim_wrapper = dict(optimizer=dict(lr=2e-3))
default_hooks = dict(checkpoint=dict(interval=300, max_keep_ckpts=1))
