"""Scoring the principle against measured NFP, beside two naive predictors.

Per case: log2_error = log2(predicted / measured) of NFP at a tolerance (the
measured NFP is the first crossing of the measured medians), and
idle_overprediction = N_idle / measured. The summary gives the share of cases
within x1.5 (|log2 error| <= log2 1.5), the median |log2 error|, the median
idle-compute over-prediction, and the same share and error for two naive
predictors the principle must beat: `idle` (N_idle) and `smallest` (always the
first swept N). External anchors (measured curves of another backend) are read
in nfp_jax.anchors.
"""

import math
import statistics

from nfp_jax import boundary

WITHIN = math.log2(1.5)


def log2_error(predicted: float, measured: float) -> float:
  return math.log2(predicted / measured)


def score(predicted: list, measured: list) -> dict:
  """Share within x1.5 and median |log2 error| of paired NFP lists."""
  errors = [abs(log2_error(p, m)) for p, m in zip(predicted, measured)]
  return dict(share_within_1_5x=sum(e <= WITHIN + 1e-12 for e in errors) / len(errors),
              median_abs_log2_error=statistics.median(errors), cases=len(errors))


def summarize(cases: list, tau_key: str = '0.1') -> dict:
  """The report's summary over case records (each with nfp_measured,
  nfp_predicted, n_idle and positions, all maps from tau keys but positions)."""
  measured = [c['nfp_measured'][tau_key] for c in cases]
  predicted = [c['nfp_predicted'][tau_key] for c in cases]
  idle = [c['n_idle'][tau_key] for c in cases]
  smallest = [c['positions'][0] for c in cases]
  principle = score(predicted, measured)
  ranges = [c.get('nfp_range', {}).get(tau_key) or [m, m] for c, m in zip(cases, measured)]
  return dict(
      tau=tau_key, **principle,
      # Within x1.5 of some N in the measured CI range [nfp_low, nfp_high]:
      # how often the prediction is consistent with the measurement's noise.
      share_consistent_with_range=sum(
          lo / 1.5 <= p <= hi * 1.5 for p, (lo, hi) in zip(predicted, ranges))
      / len(predicted),
      median_idle_overprediction=statistics.median(
          i / m for i, m in zip(idle, measured)),
      share_measured_above_2=sum(m > 2 for m in measured) / len(measured),
      naive=dict(idle=score(idle, measured), smallest=score(smallest, measured)),
      beats_naive=all(principle['share_within_1_5x'] > s['share_within_1_5x'] and
                      principle['median_abs_log2_error'] < s['median_abs_log2_error']
                      for s in (score(idle, measured), score(smallest, measured))))


def case_record(name: str, measured_summary: dict, prediction, taus) -> dict:
  """One case of the report from a measured sweep summary and a Prediction."""
  keys = [boundary.tau_key(t) for t in taus]
  nfp = measured_summary['nfp']
  return dict(
      name=name, config_id=measured_summary['config_id'],
      config=measured_summary['config'], positions=measured_summary['positions'],
      nfp_measured=nfp, nfp_bracket=measured_summary['nfp_bracket'],
      nfp_range=measured_summary['nfp_range'],
      nfp_predicted=prediction.nfp_predicted, nfp_resource=prediction.nfp_resource,
      n_idle=measured_summary['n_idle'],
      binding_mechanism=prediction.binding_mechanism,
      log2_error={k: log2_error(prediction.nfp_predicted[k], nfp[k]) for k in keys},
      idle_overprediction={k: measured_summary['n_idle'][k] / nfp[k] for k in keys},
      # Absolute latency error of the predicted curve (for a model: the error of
      # composing it from one compiled layer and the head).
      t_abs_log2_error=statistics.median(
          abs(math.log2(p / m)) for p, m in zip(prediction.t_pred_s,
                                                measured_summary['t_median_s'])),
      t_median_s=measured_summary['t_median_s'], ratio=measured_summary['ratio'],
      ratio_ci=measured_summary['ratio_ci'], t_pred_s=prediction.t_pred_s,
      t1_roofline_fraction=measured_summary['t1_roofline_fraction'])
