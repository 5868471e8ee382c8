"""`python -m app local`: the whole product on this machine (`supervisor`), and `--replay`, the
closed loop replayed week by week (`replay`)."""
