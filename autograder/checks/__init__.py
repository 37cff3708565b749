"""The checks: shared building blocks (``core``: failures and coarse-to-fine validation;
``modules``: the generic nn.Module check; ``data``: the graded evaluation sets), the pass bars
(``thresholds``), and one module per notebook."""
