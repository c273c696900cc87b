"""What was observed: observation files, cell statistics, imports of event data. pandas, no PyMC."""
