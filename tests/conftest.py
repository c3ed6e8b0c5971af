"""Shared fixtures: one measurement cache for every CLI run of a test session."""

import os

import pytest


@pytest.fixture(scope='session')
def cli_env(tmp_path_factory):
  """The environment of CLI subprocesses: a private cache (hardware balance,
  granularity probe), measured once per session, never the user's."""
  return dict(os.environ, XDG_CACHE_HOME=str(tmp_path_factory.mktemp('cache')))
