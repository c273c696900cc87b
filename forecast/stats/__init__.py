"""Statistics on plain arrays (NumPy/SciPy only; imports nothing from forecast): convergence, PSIS, bridge sampling, LOO, scoring."""
