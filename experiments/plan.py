r"""How many positions to verify (or denoise) per forward, and the speedup to expect.

  python -m experiments.plan results/<run> --accept chain:0.8
  python -m experiments.plan results/llama3-h100.json --accept chain:0.7 --draft_cost 0.05
  python -m experiments.plan results/run-a results/run-b pred.json \
      --accept table:tokens.csv --out results/plan-ab

Sources (one or more): a sweep result folder, a compare result folder (one
curve per framework) or a predict JSON. For every curve it prints R(N), a(N)
and the expected speedup S(N) = a(N) / (R(N) + (N - 1) * draft_cost) with its
95% CI where R was measured, then N*, the best near-free N and its share of
S(N*). Writes into --out (default results/<time>-plan/) plan.json and plan.png
(S(N) and R(N), NFP and N* marked; several curves overlaid). plan.json is one
plan object {rows, best, best_near_free, accept, draft_cost, ...} for one curve,
or {accept, draft_cost, plans: [one plan object per curve]} for several: read
either with `doc.get('plans', [doc])`.
"""

import sys

from absl import flags

from experiments import common
from nfp_jax import plan as plan_lib
from nfp_jax import plots

FLAGS = flags.FLAGS
common.define_plan_flags(required=True)
flags.DEFINE_float('tolerance', 0.1, 'The tau of the near-free range N <= NFP_tau.')
flags.DEFINE_string('out', None, 'Output folder (default: a new timestamped '
                    'folder under results/).')


def main(argv):
  if len(argv) < 2:
    raise common.UsageError('Give one or more results: a sweep or compare folder, '
                            'or a predict JSON.')
  tau = common.parse_tolerance(FLAGS.tolerance)
  acceptance = common.require_accept()
  curves = [c for source in argv[1:] for c in plan_lib.read_curves(source)]
  plans = [plan_lib.plan(c, acceptance, FLAGS.draft_cost, tau) for c in curves]
  for p in plans:
    print('\n'.join(plan_lib.table_lines(p)))
  if len(plans) > 1:
    print('\n' + '\n'.join(plan_lib.overview_lines(plans)))
  out = common.output_folder(FLAGS.out, 'plan')
  common.write_out(str(out / 'plan.json'), plan_lib.document(plans))
  plots.plan_plot(plans, out / 'plan.png')
  print(f'wrote {out}/plan.png', file=sys.stderr)


if __name__ == '__main__':
  common.run_entry_point(main)
