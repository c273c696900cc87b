"""The one hierarchical model: its PyMC build, the fused likelihood, predictive draws."""
