r"""Merge result folders (machines, shards, frameworks) into one report.

  python -m experiments.report results/shard0 results/shard1 --out results/report

Reads every `summary` record of each folder's results.jsonl (sweeps and
cross-framework comparisons alike) and writes REPORT_DIR/report.md (one row per
configuration and machine), report.json (the same rows for scripts) and one plot
of R(N) per backend and hardware. A folder that holds no results is refused.
"""

from absl import flags

from experiments import common
from nfp_jax import plots
from nfp_jax import report
from nfp_jax import results

FLAGS = flags.FLAGS
flags.DEFINE_string('out', None, 'Report folder (required).')


def main(argv):
  folders = argv[1:]
  if not folders:
    raise common.UsageError('Give at least one results folder to merge.')
  if not FLAGS.out:
    raise common.UsageError('--out (the report folder) is required.')
  table = report.rows(report.load(folders))
  out = common.output_folder(FLAGS.out, 'report')
  (out / 'report.md').write_text(report.markdown(table))
  results.write_json(out / 'report.json', {'rows': table, 'folders': folders})
  names = plots.report_plots(table, out)
  print(f'{len(table)} configuration(s) from {len(folders)} folder(s) -> '
        f'{out}/report.md, report.json, {len(names)} plot(s)')


if __name__ == '__main__':
  common.run_entry_point(main)
