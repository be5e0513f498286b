"""One Django app per external system TaskHub talks to."""
