"""The graded evaluation sets, shared by every trained-model check.

The evaluation of a trained model never depends on fresh noise: varianceMNIST sets are seeded
(the noise of item i is fixed by (seed, i)) with the seeds of the course manifest, or while
grading with seeds derived from the grading run's secret (:func:`eval_seeds`, ``draws``), and
the bars follow the data source the sets came from (``thresholds``). A set whose source is
unknown is an error, never a silent fall-back to the lenient bars of the embedded data.
"""
from __future__ import annotations

from . import draws
from .core import failure


def eval_seeds(seeds: tuple[int, int]) -> tuple[int, int]:
    """The seeds of the varianceMNIST evaluation sets: the manifest's ``seeds``, or while
    grading seeds derived from them and the grading run's secret (``draws.seed``)."""
    return tuple(draws.seed(s, draws.VARIANCE) for s in seeds)


def mnist_sets(root=None):
    """The MNIST train and test sets of the graded evaluation."""
    from data_tools.mnist import MNIST

    return MNIST(train=True, root=root, verbose=False), MNIST(train=False, root=root, verbose=False)


def variance_sets(seeds: tuple[int, int], root=None):
    """The seeded varianceMNIST train and test sets of the graded evaluation (``seeds``: the
    manifest's; see :func:`eval_seeds`)."""
    from data_tools.variance import VarianceMNIST

    train, test = mnist_sets(root)
    train_seed, test_seed = eval_seeds(seeds)
    return VarianceMNIST(train, eval_seed=train_seed), VarianceMNIST(test, eval_seed=test_seed)


def seeded_variance(dataset, eval_seed: int, which: str, what: str):
    """``dataset`` as a seeded VarianceMNIST: a seeded one is kept, an unseeded one (or a plain
    MNIST dataset) is wrapped, so that the evaluation never depends on fresh noise."""
    from data_tools.variance import VarianceMNIST

    if isinstance(dataset, VarianceMNIST):
        return dataset if dataset.eval_seed is not None else VarianceMNIST(
            dataset.base, eval_seed=eval_seed)
    try:
        return VarianceMNIST(dataset, eval_seed=eval_seed)
    except Exception as exc:
        raise failure(f"evaluating the trained {what}: {which} is not a dataset of images",
                      "a VarianceMNIST or MNIST dataset", f"{type(dataset).__name__} ({exc})",
                      f"do not reassign `{which}` in your own cells; run the notebook from the "
                      "top") from None


def source_key(dataset, which: str, what: str) -> str:
    """The threshold key of the data source of ``dataset`` ("embedded" or "mnist")."""
    source = getattr(dataset, "source", None)
    if source is None and hasattr(dataset, "base"):
        source = getattr(dataset.base, "source", None)
    key = getattr(source, "threshold_key", None)
    if not isinstance(key, str):
        raise failure(f"evaluating the trained {what}: the data source of {which} is unknown",
                      "a dataset made by data_tools (MNIST or VarianceMNIST), which records its source",
                      f"{type(dataset).__name__} with source {source!r}",
                      f"do not reassign `{which}` in your own cells; run the notebook from the top")
    return key


def mnist_evaluation(trainset, testset, what: str):
    """The MNIST train and test sets a trained-model check evaluates on (the notebook's, or
    the default ones), and the threshold key of their source."""
    if trainset is None or testset is None:
        default_train, default_test = mnist_sets()
        trainset = default_train if trainset is None else trainset
        testset = default_test if testset is None else testset
    return trainset, testset, source_key(testset, "testset", what)


def variance_evaluation(trainset, testset, seeds: tuple[int, int], what: str):
    """The seeded varianceMNIST train and test sets a trained-model check evaluates on, and
    the threshold key of their source; a missing set is the default one."""
    if trainset is None or testset is None:
        default_train, default_test = variance_sets(seeds)
        trainset = default_train if trainset is None else trainset
        testset = default_test if testset is None else testset
    train_seed, test_seed = eval_seeds(seeds)
    trainset = seeded_variance(trainset, train_seed, "trainset", what)
    testset = seeded_variance(testset, test_seed, "testset", what)
    return trainset, testset, source_key(testset, "testset", what)
