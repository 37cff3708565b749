"""Does data_tools make the bold style and the two unpaired domains of the transfer notebook
as documented?"""
from __future__ import annotations

import pytest
import torch

from data_tools import MNIST, bold, two_domains


def test_bold_is_a_3x3_maximum_filter():
    """Is each output pixel the largest input pixel of its 3x3 neighbourhood (edges included)?"""
    x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    out = bold(x)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1), value=0.0)
    expected = torch.stack([padded[..., i:i + 28, j:j + 28] for i in range(3) for j in range(3)]
                           ).amax(0)
    assert out.shape == x.shape and torch.equal(out, expected)


def test_bold_thickens_a_single_pixel_to_a_3x3_square():
    """Does one lit pixel become a 3x3 square, and a single image keep its (1, 28, 28) shape?"""
    x = torch.zeros(1, 28, 28)
    x[0, 10, 20] = 0.7
    out = bold(x)
    assert out.shape == (1, 28, 28)
    assert torch.equal(out[0, 9:12, 19:22], torch.full((3, 3), 0.7))
    assert float(out.sum()) == pytest.approx(9 * 0.7)


def test_bold_rejects_a_flat_batch():
    """Does a (B, 784) batch get a clear error naming the expected shape?"""
    with pytest.raises(ValueError, match=r"\(B, 1, 28, 28\)"):
        bold(torch.rand(2, 784))


@pytest.fixture(scope="module")
def domains():
    train = MNIST(train=True, verbose=False)
    return train, two_domains(train)


def test_domains_are_disjoint_and_cover_the_dataset(domains):
    """Does every image go to exactly one domain, half of each class to each?"""
    train, (a, b) = domains
    ia, ib = set(a.indices.tolist()), set(b.indices.tolist())
    assert not ia & ib
    assert ia | ib == set(range(len(train)))
    for c in range(10):
        n_c = int((train.targets == c).sum())
        assert int((a.targets == c).sum()) == n_c // 2
        assert int((b.targets == c).sum()) == n_c - n_c // 2


def test_domain_a_is_plain_and_domain_b_bold(domains):
    """Are A's images the originals and B's the bold versions of theirs, with their labels?"""
    train, (a, b) = domains
    assert torch.equal(a.x, train.x[a.indices]) and torch.equal(a.targets, train.targets[a.indices])
    assert torch.equal(b.x, bold(train.x[b.indices]))
    assert torch.equal(b.targets, train.targets[b.indices])
    assert a.source == train.source and b.source == train.source
    assert (a.style, b.style) == ("plain", "bold")
    x, label = b[0]
    assert x.shape == (1, 28, 28) and isinstance(label, int)
    # bold strokes carry much more ink than plain ones
    assert float(b.x.mean()) > 1.5 * float(a.x.mean())


def test_split_is_fixed_by_the_seed(domains):
    """Is the split the same for the same seed and different for another?"""
    train, (a, _) = domains
    again, _ = two_domains(train)
    other, _ = two_domains(train, seed=1)
    assert torch.equal(a.indices, again.indices)
    assert not torch.equal(a.indices, other.indices)
