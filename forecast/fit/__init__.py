"""Fitting: the only importer of nutpie. The sampler, the gate, fit_hypothesis(), the compile cache, the pool."""
