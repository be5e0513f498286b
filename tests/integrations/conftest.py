from tests.fakes.fixtures import fake_confluence, fake_mattermost  # noqa: F401
