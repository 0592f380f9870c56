"""Experiments: each ``run(...)`` writes records on disk; plots and tables read them."""
