"""PairSampler: disjointness, pass counting, replacement statistics, exact resume, argument checks."""

import io

import pytest
import torch

from svag.data import SAMPLING_MODES, PairSampler


def _steps(sampler, k):
    return [sampler.next() for _ in range(k)]


def test_modes_constant():
    assert SAMPLING_MODES == ("disjoint", "replacement")


@pytest.mark.parametrize("mode", SAMPLING_MODES)
@pytest.mark.parametrize("pairs", [True, False])
def test_shapes_dtypes(mode, pairs):
    s = PairSampler(20, 4, pairs=pairs, mode=mode, seed=3)
    for _ in range(12):
        b1, b2 = s.next()
        assert b1.dtype == torch.int64 and b1.shape == (4,)
        assert int(b1.min()) >= 0 and int(b1.max()) < 20
        if pairs:
            assert b2.dtype == torch.int64 and b2.shape == (4,)
            assert int(b2.min()) >= 0 and int(b2.max()) < 20
        else:
            assert b2 is None
    assert s.samples_seen == 12 * (8 if pairs else 4)


def test_disjoint_pairs_follow_one_permutation():
    """Equivalence with the documented algorithm: step j takes perm[4j:4j+4] = (batch1, batch2)."""
    seed, n, B = 5, 8, 2
    gen = torch.Generator().manual_seed(seed)
    perms = [torch.randperm(n, generator=gen) for _ in range(3)]
    s = PairSampler(n, B, pairs=True, seed=seed)
    got = [torch.cat(s.next()) for _ in range(6)]  # two steps per pass
    for p in range(3):
        assert torch.equal(torch.cat(got[2 * p : 2 * p + 2]), perms[p])


def test_disjoint_within_step_and_within_pass():
    n, B = 103, 5  # 10 steps of 10 per pass, remainder 3 dropped
    s = PairSampler(n, B, pairs=True, seed=0)
    for p in range(4):
        assert s.passes == p
        seen = []
        for _ in range(10):
            b1, b2 = s.next()
            assert not set(b1.tolist()) & set(b2.tolist())
            seen += b1.tolist() + b2.tolist()
        assert len(seen) == len(set(seen)) == 100
        assert s.passes == p + 1  # the 11th step would not fit: the pass is over
    assert s.samples_seen == 4 * 100


def test_pass_counting_sgd_and_reshuffle():
    s = PairSampler(10, 3, pairs=False, seed=1)  # 3 steps per pass, 1 sample dropped
    passes = []
    firsts = []
    for _ in range(9):
        b, _ = s.next()
        passes.append(s.passes)
        firsts.append(b)
    assert passes == [0, 0, 1, 1, 1, 2, 2, 2, 3]
    assert s.samples_seen == 27
    pass1, pass2 = torch.cat(firsts[:3]), torch.cat(firsts[3:6])
    assert len(set(pass1.tolist())) == 9 and len(set(pass2.tolist())) == 9
    assert not torch.equal(pass1, pass2)  # a fresh permutation each pass


def test_exact_fit_covers_everything():
    s = PairSampler(12, 3, pairs=True, seed=2)  # 2 steps of 6: the whole data set each pass
    for _ in range(3):
        idx = torch.cat([torch.cat(s.next()) for _ in range(2)])
        assert sorted(idx.tolist()) == list(range(12))
    assert s.passes == 3


def test_determinism_and_seed():
    a = [torch.cat(x) for x in _steps(PairSampler(50, 5, pairs=True, seed=7), 20)]
    b = [torch.cat(x) for x in _steps(PairSampler(50, 5, pairs=True, seed=7), 20)]
    c = [torch.cat(x) for x in _steps(PairSampler(50, 5, pairs=True, seed=8), 20)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


@pytest.mark.parametrize("mode", SAMPLING_MODES)
def test_global_rng_untouched_and_outputs_are_copies(mode):
    state = torch.get_rng_state()
    s = PairSampler(30, 4, pairs=True, mode=mode, seed=0)
    b1, b2 = s.next()
    b1.fill_(-1)
    b2.fill_(-1)
    assert torch.equal(torch.get_rng_state(), state)
    ref = PairSampler(30, 4, pairs=True, mode=mode, seed=0)
    ref.next()
    assert all(torch.equal(x, y) for x, y in zip(s.next(), ref.next()))


# Replacement statistics. Seed 0; n = 10, B = 10, 10000 steps with pairs: 200000 indices.
# Uniformity: Pearson χ² over the 10 cells (9 dof, mean 9, sd 4.2) must be < 30 (p ≈ 4e-4).
# Independence of the two batches: P(b1[i] == b2[i]) = 1/n = 0.1 within 0.006 (≈ 6 sd at N = 1e5);
# the index correlation across the two batches |r| < 0.015 (≈ 5 sd).
def test_replacement_statistics():
    n, B, steps = 10, 10, 10000
    s = PairSampler(n, B, pairs=True, mode="replacement", seed=0)
    b1, b2 = (torch.stack(x) for x in zip(*_steps(s, steps)))
    counts = torch.bincount(torch.cat([b1.flatten(), b2.flatten()]), minlength=n).double()
    expected = 2 * B * steps / n
    chi2 = ((counts - expected) ** 2 / expected).sum().item()
    assert chi2 < 30.0, chi2
    same = (b1 == b2).double().mean().item()
    assert abs(same - 1 / n) < 0.006, same
    r = torch.corrcoef(torch.stack([b1.flatten().double(), b2.flatten().double()]))[0, 1].item()
    assert abs(r) < 0.015, r
    # with replacement, batches repeat indices (a disjoint batch never does)
    assert any(len(set(row.tolist())) < B for row in b1[:5])
    assert s.passes == s.samples_seen // n == 2 * B * steps // n


def _round_trip(state):
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@pytest.mark.parametrize("mode", SAMPLING_MODES)
@pytest.mark.parametrize("pairs", [True, False])
@pytest.mark.parametrize("k", [0, 3, 7])
def test_state_dict_resume_is_exact(mode, pairs, k):
    n, B = 23, 4  # pairs: 2 steps per pass; SGD: 5 steps per pass
    s = PairSampler(n, B, pairs=pairs, mode=mode, seed=11)
    _steps(s, k)
    state = _round_trip(s.state_dict())
    resumed = PairSampler(n, B, pairs=pairs, mode=mode, seed=999)
    resumed.load_state_dict(state)
    assert (resumed.passes, resumed.samples_seen) == (s.passes, s.samples_seen)
    for _ in range(15):  # crosses several pass boundaries
        a, b = s.next(), resumed.next()
        assert torch.equal(a[0], b[0])
        assert (a[1] is None and b[1] is None) or torch.equal(a[1], b[1])
    assert (resumed.passes, resumed.samples_seen) == (s.passes, s.samples_seen)


def test_state_dict_is_a_snapshot():
    s = PairSampler(20, 3, pairs=True, seed=0)
    state = s.state_dict()
    first = s.next()
    s2 = PairSampler(20, 3, pairs=True, seed=0)
    s2.load_state_dict(state)
    assert torch.equal(torch.cat(first), torch.cat(s2.next()))


def test_load_state_dict_mismatch():
    state = PairSampler(20, 3, pairs=True, seed=0).state_dict()
    with pytest.raises(ValueError, match=r"sampler state is for .*'batch_size': 3.*'batch_size': 4"):
        PairSampler(20, 4, pairs=True, seed=0).load_state_dict(state)
    with pytest.raises(ValueError, match="sampler state is for"):
        PairSampler(20, 3, pairs=True, mode="replacement").load_state_dict(state)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": 0, "batch_size": 1}, r"n must be an integer >= 1, got 0"),
        ({"n": 10.0, "batch_size": 1}, r"n must be an integer >= 1, got 10.0"),
        ({"n": 10, "batch_size": 0}, r"batch_size must be an integer >= 1, got 0"),
        ({"n": 10, "batch_size": True}, r"batch_size must be an integer >= 1, got True"),
        ({"n": 10, "batch_size": 11, "pairs": False}, r"batch_size must be <= n = 10, got 11"),
        ({"n": 10, "batch_size": 11, "mode": "replacement"}, r"batch_size must be <= n = 10, got 11"),
        ({"n": 10, "batch_size": 6}, r"disjoint pairs need 2\*batch_size <= n = 10, got batch_size = 6"),
        ({"n": 10, "batch_size": 2, "mode": "shuffle"}, r"mode must be one of disjoint, replacement, got 'shuffle'"),
        ({"n": 10, "batch_size": 2, "pairs": 1}, r"pairs must be True .* got 1"),
        ({"n": 10, "batch_size": 2, "seed": 1.5}, r"seed must be an integer, got 1.5"),
    ],
)
def test_bad_arguments(kwargs, message):
    kwargs = {"pairs": True, **kwargs}
    with pytest.raises(ValueError, match=message):
        PairSampler(kwargs.pop("n"), kwargs.pop("batch_size"), **kwargs)


def test_limits_that_are_allowed():
    PairSampler(10, 5, pairs=True)  # 2B == n: one step per pass
    PairSampler(10, 10, pairs=False)  # B == n
    s = PairSampler(10, 6, pairs=True, mode="replacement")  # 2B > n is fine with replacement
    assert s.next()[1].shape == (6,)
    one = PairSampler(10, 5, pairs=True, seed=4)
    for p in range(3):
        b1, b2 = one.next()
        assert sorted(torch.cat([b1, b2]).tolist()) == list(range(10))
        assert one.passes == p + 1
