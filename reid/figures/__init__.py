"""Figures of the papers that are not tables: the ratio-loss paper's MNIST toy run (Figure 2)."""
