"""Configuration from the environment: defaults, normalisation, and clear errors for garbage."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from campaigns import config
from campaigns.exceptions import ConfigError


def test_defaults_are_the_embedded_ones():
    cfg = config.load({})
    assert cfg.database_url == "sqlite:///campaigns.db"
    assert cfg.redis_url is None
    assert cfg.mail_url.startswith("file://")
    assert cfg.secret_is_ephemeral and len(cfg.secret_key) >= 32
    assert str(cfg.segments_file) == "journeys/segments.yaml"
    assert cfg.send_batch == 100
    assert config.load({"SEND_BATCH": " 1 "}).send_batch == 1
    assert config.load({"API_KEYS": " key-one-0123456789abc, key-two-0123456789abc "}).api_keys == ("key-one-0123456789abc", "key-two-0123456789abc")
    assert config.load({"TRUSTED_PROXIES": "2"}).trusted_proxies == 2


def test_postgres_urls_get_the_psycopg_driver():
    assert config.load({"DATABASE_URL": "postgres://u@h/db"}).database_url == "postgresql+psycopg://u@h/db"
    assert config.load({"DATABASE_URL": "postgresql://u@h/db"}).database_url == "postgresql+psycopg://u@h/db"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL: unsupported scheme 'mysql'"),
        ({"REDIS_URL": "http://x"}, "REDIS_URL: expected a URL starting with redis://"),
        ({"MAIL_URL": "smtp:/x"}, "MAIL_URL: no host"),
        ({"MAIL_URL": "smtp://h:99999999"}, "MAIL_URL: bad port"),
        ({"MAIL_URL": "pigeon://x"}, "MAIL_URL: expected a URL"),
        ({"BASE_URL": "example.com"}, "BASE_URL: expected a URL starting with http://"),
        ({"SECRET_KEY": "abc"}, "SECRET_KEY: too short"),
        ({"API_KEYS": "short"}, "API_KEYS: each key must be 16"),
        ({"API_KEYS": "good-key-0123456789,bad key with spaces!"}, "API_KEYS: each key must be 16"),
        ({"TRUSTED_PROXIES": "many"}, "TRUSTED_PROXIES: 'many' is not a number of proxies"),
        ({"SEND_BATCH": "0"}, "SEND_BATCH: '0' is not a whole number from 1 to 1000"),
        ({"SEND_BATCH": "1e3"}, "SEND_BATCH: '1e3' is not a whole number"),
        ({"SEND_BATCH": "１０"}, "SEND_BATCH: '１０' is not a whole number"),
    ],
)
def test_bad_values_name_the_variable(env, message):
    if message is None:
        config.load(env)
        return
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        config.load(env)


@given(st.dictionaries(st.sampled_from(["DATABASE_URL", "REDIS_URL", "MAIL_URL", "BASE_URL", "SECRET_KEY", "SEND_BATCH", "API_KEYS", "TRUSTED_PROXIES"]), st.text(max_size=40)))
def test_any_environment_gives_a_config_or_a_config_error(env):
    try:
        cfg = config.load(env)
    except ConfigError as exc:
        assert str(exc).split(":")[0] in env
    else:
        assert cfg.database_url and cfg.base_url
