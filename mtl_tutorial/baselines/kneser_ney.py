r"""An interpolated Kneser-Ney n-gram language model (Kneser & Ney, 1995; Chen & Goodman, 1999).

For the highest order, with discount $D_n$,

$$P(w \mid h) = \frac{\max(c(hw) - D_n, 0)}{c(h\,\cdot)} + \frac{D_n\,N_{1+}(h\,\cdot)}{c(h\,\cdot)}\,P(w \mid h'),$$

and the lower orders use continuation counts $N_{1+}(\cdot\,h'w)$ (in how many contexts a word
was seen) instead of raw counts. The unigram level is interpolated with the uniform
distribution over the vocabulary, so no token has probability zero. Each discount is
$D = n_1 / (n_1 + 2 n_2)$ from the counts of counts of its order, kept within [0.1, 0.95]
so that the uniform level always keeps some mass (on tiny data $n_1$ can be 0).
It is trained and scored on exactly the token ids the neural model sees. Any order $n \ge 1$
works: the start token pads every sequence on the left, so each context has $n-1$ ids.

``modified=True`` is the modified Kneser-Ney of Chen & Goodman (1999), Section 3: three
discounts per order, for n-grams seen once, twice and three or more times, from the counts of
counts $n_j$ of that order (of its continuation counts below the highest order),

$$Y = \frac{n_1}{n_1 + 2n_2},\quad D_1 = 1 - 2Y\frac{n_2}{n_1},\quad D_2 = 2 - 3Y\frac{n_3}{n_2},\quad
D_{3+} = 3 - 4Y\frac{n_4}{n_3},$$

and the back-off weight $\gamma(h) = (D_1 N_1(h\,\cdot) + D_2 N_2(h\,\cdot) + D_{3+}N_{3+}(h\,\cdot))
/ c(h\,\cdot)$, where $N_j(h\,\cdot)$ counts the words seen exactly $j$ times (3 or more) after $h$.
Each $D_j$ is kept within $[0.1, j - 0.05]$ (on tiny data a count of counts can be 0); the
default is plain interpolated Kneser-Ney, one discount per order.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence


class KneserNeyLM:
    """``KneserNeyLM(order=3, vocab_size=V).fit(sequences)``; sequences start with ``<bos>``.

    The first id of each sequence is context only (never predicted), as in the neural model.
    ``modified=True`` uses the three discounts per order of modified Kneser-Ney.

    >>> lm = KneserNeyLM(order=2, vocab_size=12).fit([[1, 7, 8, 9, 2], [1, 7, 8, 2]])
    >>> round(sum(lm.prob([7], w) for w in range(12)), 12)
    1.0
    """

    MIN_DISCOUNT = 0.1

    def __init__(self, order: int = 3, vocab_size: int | None = None, modified: bool = False) -> None:
        if order < 1:
            raise ValueError("order must be at least 1")
        self.order = order
        self.vocab_size = vocab_size
        self.modified = modified

    def __repr__(self) -> str:
        kind = ", modified=True" if self.modified else ""
        return f"KneserNeyLM(order={self.order}, vocab_size={self.vocab_size}{kind})"

    def fit(self, sequences: Sequence[Sequence[int]]) -> KneserNeyLM:
        n = self.order
        self.counts: list[Counter] = [Counter() for _ in range(n + 1)]  # counts[k][(h..., w)], k = len
        for seq in sequences:
            padded = [seq[0]] * (n - 1) + list(seq)
            for i in range(n - 1, len(padded)):
                if i == n - 1:
                    continue  # the start token is not predicted
                self.counts[n][tuple(padded[i - n + 1 : i + 1])] += 1
        # continuation counts for orders below n: N1+(• h w)
        for k in range(n - 1, 0, -1):
            for gram in self.counts[k + 1]:
                self.counts[k][gram[1:]] += 1
        self.context_total: list[Counter] = [Counter() for _ in range(n + 1)]  # Σ_w count(h w)
        self.context_types: list[Counter] = [Counter() for _ in range(n + 1)]  # N1+(h •)
        for k in range(1, n + 1):
            for gram, c in self.counts[k].items():
                self.context_total[k][gram[:-1]] += c
                self.context_types[k][gram[:-1]] += 1
        self.discount = [0.0] * (n + 1)
        for k in range(1, n + 1):
            count_of_counts = Counter(self.counts[k].values())
            n1, n2 = count_of_counts.get(1, 0), count_of_counts.get(2, 0)
            estimate = n1 / (n1 + 2 * n2) if n1 + n2 else 0.5
            self.discount[k] = min(max(estimate, self.MIN_DISCOUNT), 0.95)
        if self.modified:
            self._fit_modified()
        seen = {gram[-1] for gram in self.counts[1]}
        self.vocab_size = self.vocab_size or (max(seen) + 1)
        return self

    def _fit_modified(self) -> None:
        r"""Chen & Goodman's $D_1, D_2, D_{3+}$ per order and $N_1, N_2, N_{3+}(h\,\cdot)$ per context."""
        n = self.order
        self.discounts: list[tuple[float, float, float]] = [(0.0, 0.0, 0.0)] * (n + 1)
        self.context_types_by_count: list[dict] = [{} for _ in range(n + 1)]  # h -> [N1, N2, N3+](h •)
        for k in range(1, n + 1):
            count_of_counts = Counter(self.counts[k].values())
            n1, n2, n3, n4 = (count_of_counts.get(j, 0) for j in (1, 2, 3, 4))
            y = n1 / (n1 + 2 * n2) if n1 + n2 else 0.5
            estimates = (
                1 - 2 * y * n2 / n1 if n1 else y,
                2 - 3 * y * n3 / n2 if n2 else 2 * y,
                3 - 4 * y * n4 / n3 if n3 else 3 * y,
            )
            self.discounts[k] = tuple(  # D_j in [0.1, j - 0.05]: every seen n-gram keeps some mass
                min(max(d, self.MIN_DISCOUNT), j - 0.05) for j, d in enumerate(estimates, start=1)
            )
            by_count = self.context_types_by_count[k]
            for gram, c in self.counts[k].items():
                by_count.setdefault(gram[:-1], [0, 0, 0])[min(c, 3) - 1] += 1

    def prob(self, context: Sequence[int], word: int) -> float:
        """P(word | the last order-1 ids of context); a shorter context uses the orders it covers."""
        n = self.order
        context = tuple(context[-(n - 1):]) if n > 1 else ()
        p = 1.0 / self.vocab_size
        for k in range(1, min(n, len(context) + 1) + 1):
            h = context[len(context) - (k - 1):] if k > 1 else ()
            total = self.context_total[k].get(h, 0)
            if total == 0:
                continue  # unseen context: keep the lower-order estimate
            c = self.counts[k].get((*h, word), 0)
            if self.modified:
                d1, d2, d3 = self.discounts[k]
                d = (0.0, d1, d2, d3)[min(c, 3)]
                n1, n2, n3 = self.context_types_by_count[k][h]
                p = (c - d) / total + (d1 * n1 + d2 * n2 + d3 * n3) / total * p
                continue
            d = self.discount[k]
            p = max(c - d, 0.0) / total + d * self.context_types[k][h] / total * p
        return p

    def perplexity(self, sequences: Sequence[Sequence[int]]) -> tuple[float, int]:
        """exp(mean negative log-likelihood) over every id after the first, and the token count."""
        n = self.order
        nll, tokens = 0.0, 0
        for seq in sequences:
            padded = [seq[0]] * (n - 1) + list(seq)
            for i in range(n, len(padded)):
                nll -= math.log(self.prob(padded[i - n + 1 : i], padded[i]))
                tokens += 1
        return math.exp(nll / tokens), tokens

