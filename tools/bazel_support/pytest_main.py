"""Main of every Bazel py_test: runs one test file under pytest.

  pytest_main.py tests/test_x.py [more pytest args]

Honours Bazel's test protocol: results go to $XML_OUTPUT_FILE (JUnit XML),
`bazel test --test_filter=EXPR` becomes `pytest -k EXPR`, and the exit code is
pytest's. The current directory is the runfiles tree (the repository's layout),
so paths and the project's pytest configuration (setup.cfg) are the same as
for `python -m pytest tests`.
"""

import os
import sys


def main(argv: list[str]) -> int:
  # The runfiles tree is read-only for the test: no .pyc or .pytest_cache.
  sys.dont_write_bytecode = True
  # Bazel leaves HOME unset and the real one read-only (sandbox): give the test
  # a private, writable home (~/.cache, matplotlib's config) unless
  # --test_env=HOME passes one.
  if 'HOME' not in os.environ and 'TEST_TMPDIR' in os.environ:
    os.environ['HOME'] = os.path.join(os.environ['TEST_TMPDIR'], 'home')
    os.makedirs(os.environ['HOME'], exist_ok=True)
  import pytest  # pylint: disable=g-import-not-at-top

  args = ['-q', '-p', 'no:cacheprovider', '--rootdir', os.getcwd()]
  # tmp_path & co. live in this test's own $TEST_TMPDIR, which Bazel cleans.
  test_tmpdir = os.environ.get('TEST_TMPDIR')
  if test_tmpdir:
    args += ['--basetemp', os.path.join(test_tmpdir, 'pytest')]
  xml_output = os.environ.get('XML_OUTPUT_FILE')
  if xml_output:
    args += ['--junitxml', xml_output]
  test_filter = os.environ.get('TESTBRIDGE_TEST_ONLY')
  if test_filter:
    args += ['-k', test_filter]
  return int(pytest.main(args + argv[1:]))


if __name__ == '__main__':
  sys.exit(main(sys.argv))
