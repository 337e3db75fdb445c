"""ADMP: adversarial double-mask channel pruning across domains (arXiv 2006.04127).

Only the abstract is available; ``shared/research/compression-methods.md`` section 5 is
the reading followed here. A full-size teacher, adapted to the unlabeled target domain
(DANN: ``dann``, ``reversal``), gives pseudo labels, and its output difference from the
pruned student measures domain divergence. Each prunable layer carries two masks
(``masks``): a soft one, sigmoid of learnable scores, that plays the adversary (it seeks
target inputs where student and teacher disagree), and a relaxed hard one tied by ADMM to
a binary top-k mask at the target channel ratio (``game``). The pruned channels are then
removed for real (``cimflow.shrink``), so parameter counts, MACs and the chip's tiles come
from the smaller layers. ``method`` runs the whole procedures (teacher, ADMP, the two
naive baselines) and ``params`` is the schema of ``admp.<task>``.
Kept import-light for params validation.
"""
