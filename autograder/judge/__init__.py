"""The judge: everything that decides a score; never imports student code."""
