"""`python -m app dashboard`: the page and its figures (`page`), the closed loop's section of it
(`loop_section`), served by gunicorn (`server`)."""
