"""`python -m app dashboard`: the page, its figures and its gunicorn server (`page`), and the
closed loop's section of it (`loop_section`)."""
