import pytest
import torch

from mtl_tutorial.batching import (
    EncodedTask,
    TaskSchedule,
    TaskStream,
    collate,
    encode_task,
    mixing_rates,
)
from mtl_tutorial.data import Snippet
from mtl_tutorial.tasks import CLASSIFICATION, GENERATION, IGNORE_INDEX, SENTIMENT, SOURCE


def test_language_model_batches_shift_by_one(tiny_tokenizer):
    data = encode_task(GENERATION, [Snippet("a fine film", "fresh", "m"), Snippet("dull", "rotten", "m")], tiny_tokenizer)
    batch = collate(data, [0, 1], use_prefix=[True, False])
    ids0 = data.prefixed[0]
    assert batch.inputs[0, : len(ids0) - 1].tolist() == ids0[:-1]
    assert batch.targets[0, : len(ids0) - 1].tolist() == ids0[1:]
    assert batch.inputs[1, 0].item() == tiny_tokenizer.bos_id
    n1 = len(data.ids[1]) - 1
    assert (batch.targets[1, n1:] == IGNORE_INDEX).all() and (batch.inputs[1, n1 + 1 :] == 0).all()


def test_stream_covers_an_epoch_without_repeats(tiny_data):
    data = tiny_data["train"]["sentiment"]
    stream = TaskStream(data, batch_size=8, seed=0)
    seen = []
    for _ in range(len(data) // 8):
        seen.extend(stream.order[stream.position : stream.position + 8].tolist())
        stream.next()
    assert len(seen) == len(set(seen)) == (len(data) // 8) * 8
    assert stream.epoch == 0


def test_stream_state_round_trip(tiny_data):
    a = TaskStream(tiny_data["train"]["generation"], 8, seed=1)
    for _ in range(40):
        a.next()
    b = TaskStream(tiny_data["train"]["generation"], 8, seed=99)
    b.load_state_dict(a.state_dict())
    for _ in range(5):
        x, y = a.next(), b.next()
        assert torch.equal(x.inputs, y.inputs) and torch.equal(x.targets, y.targets)


def test_mixing_rates():
    torch.testing.assert_close(mixing_rates([100, 300], "proportional"), torch.tensor([0.25, 0.75], dtype=torch.float64))
    t = mixing_rates([100, 300], "temperature", temperature=2.0)
    expected = torch.tensor([0.25**0.5, 0.75**0.5], dtype=torch.float64)
    torch.testing.assert_close(t, expected / expected.sum())
    torch.testing.assert_close(mixing_rates([100, 300], "proportional", limit=100), torch.tensor([0.5, 0.5], dtype=torch.float64))
    very_hot = mixing_rates([1, 1000], "temperature", temperature=1e6)
    torch.testing.assert_close(very_hot, torch.tensor([0.5, 0.5], dtype=torch.float64), atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="valid: all, round_robin"):
        mixing_rates([1, 2], "uniform")


def test_schedules():
    names = ["sentiment", "source", "generation"]
    assert TaskSchedule(names, [1, 1, 1], "all", 2.0, 0).tasks_for_step(5) == names
    rr = TaskSchedule(names, [1, 1, 1], "round_robin", 2.0, 0)
    assert [rr.tasks_for_step(s)[0] for s in range(4)] == ["sentiment", "source", "generation", "sentiment"]
    prop = TaskSchedule(names, [100, 100, 800], "proportional", 2.0, 0)
    draws = [prop.tasks_for_step(s)[0] for s in range(2000)]
    assert 0.75 < draws.count("generation") / 2000 < 0.85
    # T5's cap K: with K = 100 the three tasks count alike, so the draws are uniform
    capped = TaskSchedule(names, [100, 100, 800], "proportional", 2.0, 0, limit=100)
    torch.testing.assert_close(capped.rates, torch.full((3,), 1 / 3, dtype=torch.float64))


def test_bad_inputs(tiny_data, tiny_tokenizer):
    with pytest.raises(ValueError, match="no examples"):
        encode_task(SENTIMENT, [Snippet("story", "plot", "m")], tiny_tokenizer)
    with pytest.raises(ValueError, match="lower TrainConfig.batch_size"):
        TaskStream(tiny_data["train"]["source"], batch_size=10_000, seed=0)
    assert SOURCE.num_classes == 2


# ---------------------------------------------------------------- batch sampling and class composition
NUM_BATCHES = 1000


@pytest.fixture(scope="module")
def source_train(splits):
    """The source task's training examples under the book's tokenizer (BPE 4000, 64 tokens): the
    lengths that matter here (plots mostly cut at 64, reviews around 31). ``tiny_tokenizer`` cuts
    at 32, where reviews are cut as well, and would hide most of the clustering."""
    from mtl_tutorial.config import TokenizerConfig
    from mtl_tutorial.tokenizer import TextTokenizer

    tokenizer = TextTokenizer.train([s.text for s in splits.train], TokenizerConfig())
    return encode_task(SOURCE, splits.train, tokenizer)


def plot_counts(stream: TaskStream, num_batches: int = NUM_BATCHES) -> torch.Tensor:
    return torch.tensor([stream.next().targets.sum().item() for _ in range(num_batches)], dtype=torch.float64)


def binomial_checks(counts: torch.Tensor, n: int, p: float) -> dict[str, bool]:
    """Do 1,000 per-batch class counts look like draws of Binomial(n, p)?

    Without replacement within an epoch a count is hypergeometric; with 11,342 examples its
    variance is that of the binomial times (N - n) / (N - 1) = 0.997, which the tolerances dwarf.
    Mean, variance and the share of batches without the class are allowed 4 standard errors of
    their estimate from 1,000 independent binomial counts (a false alarm has odds of about 6e-5
    each); the largest count must stay below the first k with 1,000·P(X >= k) < 0.01; the
    chi-square statistic over the bins 0, 1, ..., 5, 6+ (p is the training share, not fitted,
    so 6 degrees of freedom) must stay below its 0.999 quantile.
    """
    from scipy.stats import binom, chi2

    m = len(counts)
    mean, var = n * p, n * p * (1 - p)
    fourth = var * (1 + 3 * (n - 2) * p * (1 - p))  # the binomial's fourth central moment
    p0 = (1 - p) ** n  # P(X = 0)
    share0 = (counts == 0).double().mean().item()
    largest_allowed = next(k for k in range(n + 1) if m * binom.sf(k, n, p) < 0.01)
    bins = torch.tensor([(counts == k).sum().item() for k in range(6)] + [(counts >= 6).sum().item()])
    expected = m * torch.tensor([*binom.pmf(range(6), n, p), binom.sf(5, n, p)])
    chi_square = ((bins - expected) ** 2 / expected).sum().item()
    return {
        "mean": abs(counts.mean().item() - mean) < 4 * (var / m) ** 0.5,
        "variance": abs(counts.var().item() - var) < 4 * ((fourth - var**2) / m) ** 0.5,
        "share without the class": abs(share0 - p0) < 4 * (p0 * (1 - p0) / m) ** 0.5,
        "largest count": counts.max().item() <= largest_allowed,
        "chi-square": chi_square < chi2.ppf(0.999, df=6),
    }


UNMIXED = ["uniform", "length_pools_by_class"]  # the samplings that promise uniform class counts


@pytest.mark.parametrize("sampling", UNMIXED)
def test_batches_have_binomial_plot_counts(source_train, sampling):
    p = sum(source_train.labels) / len(source_train)  # the plot share, 7.6%
    counts = plot_counts(TaskStream(source_train, 32, seed=0, sampling=sampling))
    assert binomial_checks(counts, 32, p) == dict.fromkeys(
        ["mean", "variance", "share without the class", "largest count", "chi-square"], True)


def test_length_pools_cluster_the_plots(source_train):
    """The default sampler gathers the long plot synopses in a few batches: the mean is right, but
    the variance is some 20 times the binomial's and most batches have no plot at all."""
    p = sum(source_train.labels) / len(source_train)
    counts = plot_counts(TaskStream(source_train, 32, seed=0))
    assert binomial_checks(counts, 32, p) == {"mean": True, "variance": False, "chi-square": False,
                                              "share without the class": False, "largest count": False}
    assert counts.var() > 10 * 32 * p * (1 - p) and (counts == 0).double().mean() > 0.5


def test_sorting_within_classes_keeps_the_uniform_class_counts(source_train):
    """The same seed gives both samplers the same permutation, hence in the first epoch the very
    same class counts batch for batch (in another batch order); the within-class sort only trims
    padding, and more on sentiment-like classes of equal length than on source's plots."""
    uniform = TaskStream(source_train, 32, seed=5, sampling="uniform")
    by_class = TaskStream(source_train, 32, seed=5, sampling="length_pools_by_class")
    assert len(uniform.order) == len(by_class.order) == len(source_train) // 32 * 32
    labels = torch.tensor(source_train.labels)
    counts = {name: sorted(labels[s.order].view(-1, 32).sum(dim=1).tolist())  # per batch (batches, 32)
              for name, s in (("uniform", uniform), ("by_class", by_class))}
    assert counts["uniform"] == counts["by_class"]
    assert not torch.equal(uniform.order, by_class.order)
    padded = {name: sum(s.next().inputs.shape[1] for _ in range(300)) / 300
              for name, s in (("uniform", uniform), ("by_class", by_class))}
    assert padded["by_class"] < padded["uniform"]


def synthetic_task(task):
    """120 examples of seeded lengths 2-29, no tokenizer: the sampler sees only lengths (and labels)."""
    lengths = torch.randint(2, 30, (120,), generator=torch.Generator().manual_seed(0)).tolist()
    ids = [[1] * n for n in lengths]
    if task.kind == CLASSIFICATION:
        return EncodedTask(task, ids, labels=[n % 2 for n in lengths])  # classes of alike lengths
    return EncodedTask(task, ids, prefixed=ids)


def test_the_default_sampling_is_the_one_the_stored_results_used():
    """length_pools must stay bit for bit what it was: the stored experiments trained with it, and
    a record without ``batch_sampling`` counts as the default. One pool here (120 < 50 batches of
    4), so every batch is a run of the length-sorted permutation."""
    stream = TaskStream(synthetic_task(SOURCE), 4, seed=3)
    assert stream.order[:12].tolist() == [114, 111, 58, 27, 64, 3, 17, 104, 5, 37, 85, 21]  # pinned
    lengths = stream.lengths[stream.order].view(-1, 4)  # (batches, 4)
    assert (lengths.diff(dim=1) >= 0).all()
    runs = lengths.sort(dim=0).values  # batches by their first length: no overlap between batches
    assert (runs[1:, 0] >= runs[:-1, -1]).all()


def test_length_pools_by_class_sort_each_class_in_its_own_positions():
    """One pool: the batches, ordered by (shortest, longest) example of class c, list class c's
    examples in length order, for each class (and uniform sampling sorts nothing)."""
    data = synthetic_task(SOURCE)
    labels = torch.tensor(data.labels)
    for sampling, sorted_expected in (("length_pools_by_class", True), ("uniform", False)):
        stream = TaskStream(data, 4, seed=3, sampling=sampling)
        batches = stream.order.view(-1, 4)  # (batches, 4)
        for label in (0, 1):
            runs = [stream.lengths[b[labels[b] == label]].tolist() for b in batches]
            runs = sorted((r for r in runs if r), key=lambda r: (min(r), max(r)))
            flat = [n for r in runs for n in r]
            assert (flat == sorted(flat)) == sorted_expected


@pytest.mark.parametrize("sampling", UNMIXED)
def test_generation_streams_ignore_the_sampling(tiny_data, sampling):
    """Generation keeps its length pools, batch for batch, under every choice."""
    assert torch.equal(TaskStream(synthetic_task(GENERATION), 4, seed=3).order,
                       TaskStream(synthetic_task(GENERATION), 4, seed=3, sampling=sampling).order)
    pools = TaskStream(tiny_data["train"]["generation"], 8, seed=2)
    other = TaskStream(tiny_data["train"]["generation"], 8, seed=2, sampling=sampling)
    for _ in range(60):  # past an epoch (37 batches): the reshuffle too
        x, y = pools.next(), other.next()
        assert torch.equal(x.inputs, y.inputs) and torch.equal(x.targets, y.targets)


@pytest.mark.parametrize("sampling", UNMIXED)
def test_unmixed_stream_covers_an_epoch_and_round_trips(tiny_data, sampling):
    data = tiny_data["train"]["source"]
    a = TaskStream(data, 8, seed=1, sampling=sampling)
    assert sorted(a.order.tolist()) == sorted(set(a.order.tolist())) and len(a.order) == len(data) // 8 * 8
    for _ in range(40):  # into the second epoch (37 batches each)
        a.next()
    assert a.epoch == 1
    b = TaskStream(data, 8, seed=99, sampling=sampling)
    b.load_state_dict(a.state_dict())
    for _ in range(40):  # and across the next reshuffle
        x, y = a.next(), b.next()
        assert torch.equal(x.inputs, y.inputs) and torch.equal(x.targets, y.targets)
    with pytest.raises(ValueError, match=f"saved with sampling='{sampling}'"):
        TaskStream(data, 8, seed=1).load_state_dict(a.state_dict())
    old_state = TaskStream(data, 8, seed=1).state_dict()
    del old_state["sampling"]  # a checkpoint from before the choice: length pools
    TaskStream(data, 8, seed=1).load_state_dict(old_state)
    with pytest.raises(ValueError, match="saved with sampling='length_pools'"):
        TaskStream(data, 8, seed=1, sampling=sampling).load_state_dict(old_state)


def test_unknown_sampling(tiny_data):
    with pytest.raises(ValueError, match="valid choices are: length_pools, uniform, length_pools_by_class"):
        TaskStream(tiny_data["train"]["source"], 8, seed=1, sampling="stratified")
