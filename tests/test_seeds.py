"""The seed tree: one node per (seed, stream), never shared, stable when streams are added."""

import numpy as np
import pytest
import torch

from svag.seeds import STREAMS, STUDY_STREAMS, check_seed, generator, stream_seed, study_generator


def test_no_two_streams_of_any_two_seeds_coincide():
    """Seeds 0..999 × every stream: 6000 distinct 63-bit seeds (release 0.1.0 reused seed k+1's
    data order as seed k's augmentation stream)."""
    seeds = [stream_seed(s, name) for s in range(1000) for name in STREAMS]
    assert len(set(seeds)) == len(seeds)
    assert all(0 <= s < 2**63 for s in seeds)


def test_streams_draw_different_numbers():
    """The first draws of the streams of seeds 0 and 1 all differ (not only their seeds)."""
    draws = [tuple(torch.randint(0, 2**31, (4,), generator=generator(s, n)).tolist()) for s in (0, 1) for n in STREAMS]
    assert len(set(draws)) == len(draws)


def test_stream_is_the_spawned_child_at_its_index():
    """The documented tree: stream i of seed s is SeedSequence(s).spawn(n)[i]."""
    for s in (0, 7, 123456789):
        children = np.random.SeedSequence(s).spawn(len(STREAMS))
        for i, name in enumerate(STREAMS):
            word = int(children[i].generate_state(1, dtype=np.uint64)[0]) & (2**63 - 1)
            assert stream_seed(s, name) == word


def test_generator_is_reproducible():
    a = torch.rand(5, generator=generator(3, "augment"))
    b = torch.rand(5, generator=generator(3, "augment"))
    assert torch.equal(a, b)


@pytest.mark.parametrize("bad", [-1, 1.5, True, "0", None])
def test_bad_seed_is_refused(bad):
    with pytest.raises(ValueError, match="seed must be an integer >= 0"):
        check_seed(bad)


def test_unknown_stream_is_refused():
    with pytest.raises(ValueError, match="stream must be one of init, data_order"):
        stream_seed(0, "dropout")


def test_study_streams_are_the_seedsequence_nodes_of_release_0_2_0():
    """A study stream is SeedSequence([seed, node, *keys]) with the node numbers of release 0.2.0 (where
    svag.stats.stream(seed, node, *keys) drew them), so every number of `svag verify` is unchanged."""
    state = np.random.SeedSequence([7, 2, 2000]).generate_state(2, dtype=np.uint32)
    expected = torch.Generator().manual_seed(int(state[0]) * 2**32 + int(state[1]))
    gen = study_generator(7, "verify.weak_error", 2000)
    assert torch.equal(torch.rand(5, generator=gen), torch.rand(5, generator=expected))
    draws = {name: torch.rand(3, generator=study_generator(7, name, 1)) for name in STUDY_STREAMS}
    assert len({tuple(d.tolist()) for d in draws.values()}) == len(STUDY_STREAMS)  # independent nodes
    assert not torch.equal(torch.rand(5, generator=study_generator(7, "verify.moments", 1, 2)),
                           torch.rand(5, generator=study_generator(7, "verify.moments", 2, 1)))  # fmt: skip
    assert len(set(STUDY_STREAMS.values())) == len(STUDY_STREAMS)
    with pytest.raises(ValueError, match=r"study stream must be one of .*got 'bogus'"):
        study_generator(0, "bogus")
