"""One py_test per pytest file, each run by the shared runner pytest_main.py."""

_RUNNER = "//tools/bazel_support:pytest_main.py"

def pytest_tests(srcs, tags = {}, tag_prefixes = {}, sizes = {}, default_size = "large", deps = [], data = []):
    """Declares a py_test named after each file in `srcs` (test_x.py -> :test_x).

    Args:
      srcs: the test files, relative to this package (e.g. a glob).
      tags: file -> extra tags (e.g. {"test_hlo.py": ["gpu_aot"]}).
      tag_prefixes: file-name prefix -> extra tags, for files not written yet.
      sizes: file -> Bazel test size; others get `default_size`.
      default_size: "large" (15 min) by default: JAX compiles are slow on 2 cores.
      deps: what the tests import.
      data: files the tests read.
    """
    package = native.package_name()
    for src in srcs:
        name = src[:-len(".py")]
        base = src.split("/")[-1]
        extra = list(tags.get(src, []))
        for prefix, prefix_tags in tag_prefixes.items():
            if base.startswith(prefix):
                extra += [t for t in prefix_tags if t not in extra]
        native.py_test(
            name = name,
            srcs = [src, _RUNNER],
            main = _RUNNER,
            args = [(package + "/" + src) if package else src],
            python_version = "PY3",
            size = sizes.get(src, default_size),
            tags = ["pytest"] + extra,
            deps = deps,
            data = data,
        )
