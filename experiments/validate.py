r"""Validate the principle on the local CPU: measured vs predicted NFP on a grid of
cases, scored beside resource-only, idle-compute and always-1.

  python -m experiments.validate --quick                  # the quick subset, minutes
  python -m experiments.validate                          # the full grid
  python -m experiments.validate --anchor ../shared/anchors/vidur/h100_llama-2-7b_mlp.csv

The cases, running them, the scoring rules and the report are in
nfp_jax/validation.py. Writes into --out: report.json (`cases`, `summary`,
`anchors`, `anchor_summary`, `machine`, `provenance`), report.md, a plot per
case and overview.png (predicted vs measured NFP, one colour per predictor).
--anchor FILE (with --anchor_only: nothing measured here) scores public GPU
curves (nfp_jax.anchors: vidur MLPs, aiconfigurator GEMMs) for the matching
target with its default tiling: anchors.json, anchors.md and anchors.png.
"""

import dataclasses
import re
import sys

from absl import flags
import jax

from experiments import common
from nfp_jax import hardware
from nfp_jax import plots
from nfp_jax import probe as probe_lib
from nfp_jax import records as records_lib
from nfp_jax import anchors as anchors_lib
from nfp_jax import results
from nfp_jax import validation

FLAGS = flags.FLAGS
flags.DEFINE_bool('quick', False, 'Run the quick subset of the grid.')
flags.DEFINE_list('cases', None, 'Run only these case names (see --list).')
flags.DEFINE_bool('list', False, 'List the cases and exit.')
flags.DEFINE_multi_string('anchor', [], 'GPU anchor files (../shared/anchors: '
                          'vidur MLP profiles, the aiconfigurator GEMM table), '
                          'repeated or comma-separated, scored by nfp_jax.anchors '
                          'into anchors.json/.md/.png.')
flags.DEFINE_bool('anchor_only', False, 'Only the anchors, no CPU cases.')
flags.DEFINE_integer('anchor_stride', 1, 'Score every k-th curve of each anchor '
                     'file (for a tiling that compiles every N, e.g. cost-model).',
                     lower_bound=1)
flags.DEFINE_string('positions', '1,2,3,4,6,8,12,16,24,32,48,64', 'Swept N.')
flags.DEFINE_integer('repeats', None, 'A fixed number of timed rounds per case; '
                     'default: the sweep\'s adaptive rounds (a case whose '
                     'boundary stays undecided is reported unresolved).')
flags.DEFINE_integer('min_rounds', 15, 'Adaptive rounds: rounds of every N first.')
flags.DEFINE_integer('max_rounds', 200, 'Adaptive rounds: the most per case.')
flags.DEFINE_float('time_budget_s', 20.0, 'Adaptive rounds: seconds of timing per case.')
flags.DEFINE_string('tiling', None, 'Tiling source for anchor targets (default: '
                    'the target\'s default tiling).')
flags.DEFINE_string('out', None, 'Output folder (default: results/<time>-validate).')


def _progress(message: str) -> None:
  print(f'  {message}', file=sys.stderr, flush=True)


def _case_done(out, count, balance_for):
  """After each case: one progress line and its R(N) plot."""
  def done(index, case, record):
    _progress(f"[{index + 1}/{count}] {case.name}: NFP(0.1) measured "
              f"{record['nfp_measured']['0.1']}, predicted "
              f"{record['nfp_predicted']['0.1']} ({record['binding_mechanism']['0.1']}), "
              f"N_idle {record['n_idle']['0.1']}")
    plots.ratio_plot(records_lib.Summary.from_json(dict(
        record, module=case.module, preset=case.preset, nfp=record['nfp_measured'],
        hardware=balance_for(case.config().dtype).to_dict())),
                     out / f"case-{re.sub(r'[^A-Za-z0-9.-]', '_', case.name)}.png")
  return done


def run_anchors(paths, out) -> dict:
  """The GPU anchors (anchors.evaluate): anchors.json, anchors.md, anchors.png."""
  report = anchors_lib.evaluate(paths, tiling=FLAGS.tiling, stride=FLAGS.anchor_stride,
                                progress=_progress)
  results.write_json(out / 'anchors.json', report)
  (out / 'anchors.md').write_text(anchors_lib.markdown(report))
  plots.anchor_overview(report['curves'], out / 'anchors.png')
  return report


def main(argv):
  common.no_arguments(argv)
  if FLAGS.list:
    for c in validation.CASES:
      print(f"{c.name:<34} {'quick' if c.quick else ''}")
    return
  positions = common.parse_positions(FLAGS.positions)
  plan = common.round_plan()
  cases = [] if FLAGS.anchor_only else validation.select_cases(FLAGS.cases, FLAGS.quick)
  anchor_paths = [p for value in FLAGS.anchor for p in value.split(',') if p]
  for path in anchor_paths:
    anchors_lib.read(path)  # a bad anchor file: one sentence, exit 2, first
  out = common.output_folder(FLAGS.out, 'validate')
  device = jax.devices()[0]
  records = []
  if cases:
    cache = hardware.cache_file('hardware.json')
    probe = probe_lib.local_probe(hardware.cache_file('probe.json'), device=device,
                                  progress=_progress)
    balance_for = lambda dtype: hardware.local_balance(dtype, cache, device)
    records = validation.run_cases(
        cases, positions,
        measure=validation.sweep_measure(plan=plan, device=device),
        balance_for=balance_for, probe=probe,
        on_case=_case_done(out, len(cases), balance_for))
  anchor_summary = None
  if anchor_paths:
    anchor_report = run_anchors(anchor_paths, out)
    anchor_summary = anchor_report['summary']
    print((out / 'anchors.md').read_text())
  summary = validation.summarize(records) if records else None
  machine = hardware.cpu_description()
  common.write_out(out / 'report.json', dict(
      cases=records, summary=summary, anchor_summary=anchor_summary,
      machine=machine, provenance=results.provenance(
          seed=0, device=device, positions=positions, rounds=dataclasses.asdict(plan))))
  (out / 'report.md').write_text(validation.markdown(records, summary, machine))
  if records:
    plots.validation_overview(validation.overview_points(records),
                              out / 'overview.png')
  print((out / 'report.md').read_text())
  print(f'wrote {out}/report.json, report.md and plots', file=sys.stderr)


if __name__ == '__main__':
  jax.config.parse_flags_with_absl()
  common.run_entry_point(main)
