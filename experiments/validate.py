r"""Validate the principle on the local CPU: measured vs predicted NFP on a grid of
cases, beside the idle-compute and `smallest` naive predictors.

  python -m experiments.validate --quick                  # >= 8 cases, minutes
  python -m experiments.validate                          # the full grid
  python -m experiments.validate --anchor ../shared/anchors/vidur/h100_llama-2-7b_mlp.csv

Each case is measured by the sweep's harness and predicted by the principle
from the compiled kernels, the measured balance and the granularity probe (which
never see the case's curve). Writes into --out: report.json (`cases`,
`summary`, `anchor_summary`), report.md and a plot per case plus an overview.
--anchor FILE (with --anchor_only: nothing measured here) scores public GPU
curves (nfp_jax.anchors: vidur MLPs, aiconfigurator GEMMs) for the matching
target with its default tiling: anchors.json, anchors.md and anchors.png.
"""

import dataclasses
import pathlib
import re
import sys

from absl import flags
import jax
import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position

from experiments import common  # pylint: disable=g-import-not-at-top,wrong-import-position
from nfp_jax import anchors as anchors_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from nfp_jax import boundary  # pylint: disable=g-import-not-at-top,wrong-import-position
from nfp_jax import costs  # pylint: disable=g-import-not-at-top,wrong-import-position
from nfp_jax import config  # pylint: disable=g-import-not-at-top,wrong-import-position
from nfp_jax import hardware  # pylint: disable=g-import-not-at-top,wrong-import-position
from nfp_jax import plots  # pylint: disable=g-import-not-at-top,wrong-import-position
from nfp_jax import predict  # pylint: disable=g-import-not-at-top,wrong-import-position
from nfp_jax import probe as probe_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from nfp_jax import results  # pylint: disable=g-import-not-at-top,wrong-import-position
from nfp_jax import sweep  # pylint: disable=g-import-not-at-top,wrong-import-position
from nfp_jax import targets  # pylint: disable=g-import-not-at-top,wrong-import-position
from nfp_jax import validation  # pylint: disable=g-import-not-at-top,wrong-import-position

FLAGS = flags.FLAGS
flags.DEFINE_bool('quick', False, 'Run the quick subset of the grid.')
flags.DEFINE_list('cases', None, 'Run only these case names (see --list).')
flags.DEFINE_bool('list', False, 'List the cases and exit.')
flags.DEFINE_list('anchor', [], 'GPU anchor files (../shared/anchors: vidur MLP '
                  'profiles, the aiconfigurator GEMM table), scored by '
                  'nfp_jax.anchors into anchors.json/.md/.png.')
flags.DEFINE_bool('anchor_only', False, 'Only the anchors, no CPU cases.')
flags.DEFINE_string('positions', '1,2,3,4,6,8,12,16,24,32,48,64', 'Swept N.')
flags.DEFINE_integer('repeats', 30, 'Timed rounds per case.')
flags.DEFINE_string('tiling', None, 'Tiling source for anchor targets (default: '
                    'the target\'s default tiling).')
flags.DEFINE_string('out', None, 'Output folder (default: results/<time>-validate).')


@dataclasses.dataclass(frozen=True)
class Case:
  name: str
  module: str
  preset: str
  scale: float
  quick: bool = False
  choices: tuple = ()  # (field, value) pairs for config.resolve

  def config(self):
    choices = dict(self.choices)
    overrides = choices.pop('overrides', None)
    return config.resolve(self.module, self.preset, scale=self.scale,
                          overrides=dict(overrides or ()),
                          **dict({'dtype': 'float32'}, **choices))


def _moe(size, preset, scale, impl, routing, quick=False):
  return Case(f'moe-{size}-{impl}-{routing.replace(":", "")}', 'moe', preset, scale,
              quick, (('moe_impl', impl), ('routing', routing)))


def _attention(size, preset, scale, mask, kv_len, quick=False):
  return Case(f'attention-{size}-{mask}-L{kv_len}', 'attention', preset, scale,
              quick, (('mask', mask), ('kv_len', kv_len)))


# Sizes, dtypes, KV lengths and routings chosen to span the regimes on XLA:CPU:
# switch-bound (the GEMV at N=1 vs YNNPACK from N=2 on large float32 weights),
# overhead-bound (small blocks), conversion- and fault-bound (bfloat16 weights
# converted to float32 on every call), KV-bound attention (long caches, thin
# projections), and MoE whose activated experts grow with N (gather) or do not
# (dense, ragged: all experts every call).
CASES = (
    [Case('dense-large', 'dense', 'llama3-8b', 0.5, True),
     Case('dense-small', 'dense', 'llama3-8b', 1 / 32),
     Case('dense-bf16', 'dense', 'llama3-8b', 0.25, True, (('dtype', 'bfloat16'),)),
     Case('dense-bf16-small', 'dense', 'llama3-8b', 1 / 16, False,
          (('dtype', 'bfloat16'),))]
    + [_moe(size, preset, scale, impl, routing,
            quick=(routing == 'uniform' and (size, impl) in (
                ('olmoe', 'gather'), ('olmoe', 'dense'), ('mixtral', 'ragged'))))
       for size, preset, scale in (('olmoe', 'olmoe-1b-7b', 0.25),
                                   ('mixtral', 'mixtral-8x7b', 0.125))
       for impl in config.MOE_IMPLS for routing in ('uniform', 'zipf:1.2')]
    + [_attention(size, preset, scale, mask, kv_len,
                  quick=(mask == 'block' and kv_len in (65536, 8192)))
       for size, preset, scale, kv_lens in (
           ('thin', 'llama3-8b', 1 / 32, (16384, 65536)),
           ('mha', 'llada-8b', 0.125, (8192,)),
           ('large', 'llama3-8b', 0.5, (4096,)))
       for mask in config.MASKS for kv_len in kv_lens]
    + [Case('layer-moe', 'layer', 'olmoe-1b-7b', 0.25, False, (('routing', 'uniform'),)),
       Case('layer-dense', 'layer', 'llama3-8b', 0.125),
       Case('model-dense', 'model', 'llama3-8b', 0.125, True,
            (('overrides', (('n_layers', 4),)),)),
       Case('model-moe', 'model', 'olmoe-1b-7b', 0.125, False,
            (('overrides', (('n_layers', 4),)), ('routing', 'uniform')))])


def _progress(message: str) -> None:
  print(f'  {message}', file=sys.stderr, flush=True)


def selected_cases() -> list:
  names = {c.name for c in CASES}
  if FLAGS.cases:
    unknown = [n for n in FLAGS.cases if n not in names]
    if unknown:
      raise common.UsageError(f'Unknown case {unknown[0]!r}; see --list.')
    return [c for c in CASES if c.name in FLAGS.cases]
  return [c for c in CASES if c.quick] if FLAGS.quick else list(CASES)


def run_case(case, positions, balance, probe, device) -> dict:
  cfg = case.config()
  measured = sweep.run(cfg, positions, rounds=FLAGS.repeats, balance=balance,
                       device=device).summary
  prediction = predict.predict(cfg, measured['positions'],
                               target=targets.resolve('cpu'),
                               balance=balance, probe=probe)
  return validation.case_record(case.name, measured, prediction, boundary.TAUS)


def run_anchors(paths, out) -> dict:
  """The GPU anchors (anchors.evaluate): anchors.json, anchors.md, anchors.png."""
  report = anchors_lib.evaluate(paths, tiling=FLAGS.tiling, progress=_progress)
  results.write_json(out / 'anchors.json', report)
  (out / 'anchors.md').write_text(anchors_lib.markdown(report))
  plots.anchor_overview(report['curves'], out / 'anchors.png')
  return report


def _fmt(value) -> str:
  return '-' if value is None else (f'{value:.2f}' if isinstance(value, float) else str(value))


def markdown(cases, summary) -> str:
  lines = ['# nfp_jax validation: the principle vs measured NFP (tau 0.1)', '',
           'T(N) err: median over N of the predicted latency\'s factor off the '
           'measured one (for layer and model cases, the error of composing '
           'them from their kernels; a model from one compiled layer and its '
           'head).', '']
  def table(rows):
    out = ['| case | NFP measured [range] | NFP predicted | mechanism | '
           'NFP resource | N_idle | log2 err | idle / measured | T(1) roofline | '
           'T(N) err |',
           '|' + '---|' * 10]
    for c in rows:
      k = '0.1'
      rng = c['nfp_range'].get(k)
      out.append(
          f"| {c['name']} | {c['nfp_measured'][k]}"
          f"{' [%d, %d]' % tuple(rng) if rng else ''} | {c['nfp_predicted'][k]} | "
          f"{c['binding_mechanism'][k] or 'no crossing'} | {c['nfp_resource'][k]} | "
          f"{c['n_idle'][k]} | {c['log2_error'][k]:+.2f} | "
          f"{c['idle_overprediction'][k]:.1f} | {_fmt(c['t1_roofline_fraction'])} | "
          f"x{2 ** c['t_abs_log2_error']:.2f} |")
    return out
  def headline(s, label):
    return [f"**{label}**: {s['cases']} cases; principle within x1.5 on "
            f"{s['share_within_1_5x']:.0%}, median |log2 error| "
            f"{s['median_abs_log2_error']:.2f}; idle-compute within x1.5 on "
            f"{s['naive']['idle']['share_within_1_5x']:.0%} (median |log2 error| "
            f"{s['naive']['idle']['median_abs_log2_error']:.2f}, median over-prediction "
            f"x{s['median_idle_overprediction']:.1f}); `smallest` within x1.5 on "
            f"{s['naive']['smallest']['share_within_1_5x']:.0%} (median |log2 error| "
            f"{s['naive']['smallest']['median_abs_log2_error']:.2f}); measured NFP > 2 "
            f"in {s['share_measured_above_2']:.0%} of cases; the prediction is within "
            f"x1.5 of the measured CI range [nfp_low, nfp_high] in "
            f"{s['share_consistent_with_range']:.0%}.", '']
  if cases:
    lines += headline(summary, 'CPU (XLA:CPU measured, XLA:CPU predicted)')
    lines += table(cases) + ['']
  return '\n'.join(lines) + '\n'


def overview_plot(cases, path) -> None:
  fig, ax = plt.subplots(figsize=(5.5, 5))
  measured = [c['nfp_measured']['0.1'] for c in cases]
  ax.scatter(measured, [c['nfp_predicted']['0.1'] for c in cases],
             label='principle', zorder=3)
  ax.scatter(measured, [c['n_idle']['0.1'] for c in cases], marker='x',
             label='idle-compute', zorder=2)
  top = max(max(measured), max(c['n_idle']['0.1'] for c in cases)) * 2
  ax.plot([0.5, top], [0.5, top], color='gray', lw=1)
  ax.fill_between([0.5, top], [0.5 / 1.5, top / 1.5], [0.75, top * 1.5],
                  color='gray', alpha=0.15, label='within x1.5')
  ax.set_xscale('log', base=2)
  ax.set_yscale('log', base=2)
  ax.set_xlabel('measured NFP (tau 0.1)')
  ax.set_ylabel('predicted NFP')
  ax.legend(fontsize=8)
  ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def main(argv):
  common.no_arguments(argv)
  if FLAGS.list:
    for c in CASES:
      print(f"{c.name:<34} {'quick' if c.quick else ''}")
    return
  positions = common.parse_positions(FLAGS.positions)
  cases = [] if FLAGS.anchor_only else selected_cases()
  for case in cases:
    case.config()  # validate before measuring anything
  for path in FLAGS.anchor:
    anchors_lib.read(path)  # a bad anchor file: one sentence, exit 2, first
  out = common.output_folder(FLAGS.out, 'validate')
  device = jax.devices()[0]
  records = []
  if cases:
    balance = hardware.local_balance('float32', hardware.cache_file('hardware.json'), device)
    probe = probe_lib.local_probe(hardware.cache_file('probe.json'), device=device,
                                  progress=_progress)
    for i, case in enumerate(cases):
      _progress(f'[{i + 1}/{len(cases)}] {case.name}')
      case_balance = (balance if case.config().dtype == 'float32' else
                      hardware.local_balance(case.config().dtype,
                                             hardware.cache_file('hardware.json'), device))
      record = run_case(case, positions, case_balance, probe, device)
      records.append(record)
      _progress(f"    NFP(0.1) measured {record['nfp_measured']['0.1']}, predicted "
                f"{record['nfp_predicted']['0.1']} "
                f"({record['binding_mechanism']['0.1']}), N_idle {record['n_idle']['0.1']}")
      plots.ratio_plot(dict(record, module=case.module, preset=case.preset,
                            config_id=record['config_id'], nfp=record['nfp_measured'],
                            hardware=case_balance.to_dict()),
                       out / f"case-{re.sub(r'[^A-Za-z0-9.-]', '_', case.name)}.png")
  anchor_summary = None
  if FLAGS.anchor:
    anchor_report = run_anchors(FLAGS.anchor, out)
    anchor_summary = anchor_report['summary']
    print((out / 'anchors.md').read_text())
  summary = validation.summarize(records) if records else None
  report = dict(cases=records, summary=summary, anchor_summary=anchor_summary,
                provenance=results.provenance(seed=0, device=device,
                                              positions=positions,
                                              repeats=FLAGS.repeats))
  results.write_json(out / 'report.json', report)
  (out / 'report.md').write_text(markdown(records, summary))
  if records:
    overview_plot(records, out / 'overview.png')
  print((out / 'report.md').read_text())
  print(f'wrote {out}/report.json, report.md and plots', file=sys.stderr)


if __name__ == '__main__':
  jax.config.parse_flags_with_absl()
  common.run(main)
