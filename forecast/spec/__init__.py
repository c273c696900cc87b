"""What the analyst states: study, priors, elicitation, questions. Plain values; no pandas, no PyMC."""
