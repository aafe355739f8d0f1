"""kMaX's fixed-size rule (layers/kmax_size.py), shared by the detector, the semantic head and the cluster maps."""
import pytest
import torch

from clusterseg.models.layers.kmax_size import check_fixed_size, crop_to_extent, pad_to_fixed_size


def test_pad_to_fixed_size_pads_bottom_right_with_zeros():
    x = torch.arange(2 * 3 * 4 * 5, dtype=torch.float).reshape(2, 3, 4, 5) + 1
    out = pad_to_fixed_size(x, (6, 7))
    assert out.shape == (2, 3, 6, 7)
    assert torch.equal(out[..., :4, :5], x)
    assert (out[..., 4:, :] == 0).all() and (out[..., :, 5:] == 0).all()
    assert pad_to_fixed_size(x, (4, 5)) is x and pad_to_fixed_size(x, None) is x


def test_fixed_size_errors_name_the_sizes():
    x = torch.zeros(1, 3, 8, 9)
    with pytest.raises(ValueError, match=r'fixed input size 8x8 but got a batch of 8x9 \(images larger than the '
                                         r'size: \[\]\)\. use Resize'):
        pad_to_fixed_size(x, (8, 8), hint='use Resize')
    with pytest.raises(ValueError, match=r'images larger than the size: \[\(9, 4\)\]'):
        pad_to_fixed_size(torch.zeros(1, 3, 4, 4), (8, 8), img_shapes=[(4, 4, 3), (9, 4, 3)])
    # exact: the batch must already be at the size (mmseg pads before the model)
    assert check_fixed_size((8, 8), (8, 8), exact=True) == (8, 8)
    assert check_fixed_size((8, 8), (6, 8)) == (8, 8)
    with pytest.raises(ValueError, match='fixed input size 8x8 but got a batch of 6x8'):
        check_fixed_size((8, 8), (6, 8), exact=True)


def test_crop_to_extent_keeps_the_covered_cells():
    index = torch.arange(32).reshape(1, 4, 8)  # a stride-4 map of a 16x32 padded input
    assert torch.equal(crop_to_extent(index, (8, 20), (16, 32)), index[:, :2, :5])  # round(8 * 20 / 32) = 5
    assert crop_to_extent(index, (1, 1), (16, 32)).shape == (1, 1, 1)  # at least one cell
    assert torch.equal(crop_to_extent(index, (16, 32), (16, 32)), index)
