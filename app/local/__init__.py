"""`python -m app local`: the whole product on this machine (`supervisor`), its child processes
(`children`), and `--replay`, the closed loop replayed week by week (`replay`)."""
