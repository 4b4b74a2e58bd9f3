"""Side-by-side benchmark of Docket against CNCF distribution and nginx on loopback; run bench/run.py."""
