r"""An interpolated Kneser-Ney n-gram language model (Kneser & Ney, 1995; Chen & Goodman, 1999).

For the highest order, with discount $D_n$,

$$P(w \mid h) = \frac{\max(c(hw) - D_n, 0)}{c(h\,\cdot)} + \frac{D_n\,N_{1+}(h\,\cdot)}{c(h\,\cdot)}\,P(w \mid h'),$$

and the lower orders use continuation counts $N_{1+}(\cdot\,h'w)$ (in how many contexts a word
was seen) instead of raw counts. The unigram level is interpolated with the uniform
distribution over the vocabulary, so no token has probability zero. Each discount is
$D = n_1 / (n_1 + 2 n_2)$ from the counts of counts of its order, kept within [0.1, 0.95]
so that the uniform level always keeps some mass (on tiny data $n_1$ can be 0).
It is trained and scored on exactly the token ids the neural model sees.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence


class KneserNeyLM:
    """``KneserNeyLM(order=3, vocab_size=V).fit(sequences)``; sequences start with ``<bos>``.

    The first id of each sequence is context only (never predicted), as in the neural model.
    """

    MIN_DISCOUNT = 0.1

    def __init__(self, order: int = 3, vocab_size: int | None = None) -> None:
        if order < 1:
            raise ValueError("order must be at least 1")
        self.order = order
        self.vocab_size = vocab_size

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
        seen = {gram[-1] for gram in self.counts[1]}
        self.vocab_size = self.vocab_size or (max(seen) + 1)
        return self

    def prob(self, context: Sequence[int], word: int) -> float:
        """P(word | the last order-1 ids of context)."""
        n = self.order
        context = tuple(context[-(n - 1):]) if n > 1 else ()
        p = 1.0 / self.vocab_size
        for k in range(1, n + 1):
            h = context[len(context) - (k - 1):] if k > 1 else ()
            total = self.context_total[k].get(h, 0)
            if total == 0:
                continue  # unseen context: keep the lower-order estimate
            d = self.discount[k]
            c = self.counts[k].get((*h, word), 0)
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

