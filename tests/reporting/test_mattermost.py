"""Reporting's Mattermost digest (reporting.mattermost): what a task name or an error can do to the markdown."""

from __future__ import annotations

from reporting.mattermost import escape


def test_escape_shows_markdown_and_mentions_literally():
    text = escape("a|b *bold* [x](http://evil) @channel\nnext")

    assert "\n" not in text
    assert "\\|" in text and "\\*bold\\*" in text and "\\[x\\]\\(http://evil\\)" in text
    assert "@channel" not in text
