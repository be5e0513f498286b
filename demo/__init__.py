"""`make demo`: TaskHub with fake Jira, Confluence and Mattermost servers on 127.0.0.1."""
