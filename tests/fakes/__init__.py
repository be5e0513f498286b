"""Fake external systems (Jira, Confluence, Mattermost) on 127.0.0.1 for tests and the demo."""
