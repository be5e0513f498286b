from tests.fakes.fixtures import fake_confluence, fake_confluence_cloud, fake_mattermost  # noqa: F401
