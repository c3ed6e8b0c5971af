"""Typed records: old result folders load, and every record round-trips to the
same JSON keys and values."""

import json
import pathlib

import pytest

from nfp_jax import compare
from nfp_jax import errors
from nfp_jax import plots
from nfp_jax import records
from nfp_jax import report
from nfp_jax import results

DATA = pathlib.Path(__file__).parent / 'data' / 'records'
FOLDERS = sorted(p for p in DATA.iterdir() if p.is_dir())


@pytest.mark.parametrize('folder', FOLDERS, ids=lambda p: p.name)
def test_old_records_round_trip_unchanged(folder):
  raw = results.read_jsonl(folder / 'results.jsonl')
  typed = records.read(folder / 'results.jsonl')
  assert len(typed) == len(raw) > 0
  for record, parsed in zip(raw, typed):
    assert parsed.to_json() == record
    assert json.dumps(parsed.to_json(), sort_keys=True) == json.dumps(record, sort_keys=True)


def test_typed_fields_read_the_old_keys():
  summary, = records.load_summaries(DATA / 'sweep_5470dcd')
  assert summary.module == 'dense' and summary.ok
  assert summary.positions == [1, 2, 4]
  assert summary.t1_s == summary.t_median_s[0] > 0
  assert set(summary.nfp) == {'0.05', '0.1', '0.2'}
  assert summary.framework_name == 'jax' and summary.backend == 'cpu'
  assert summary.get('rounds') == 3  # a key the type does not name
  points = [r for r in records.read(DATA / 'sweep_5470dcd' / 'results.jsonl')
            if isinstance(r, records.Point)]
  assert [p.positions for p in points] == [1, 2, 4]
  assert all(len(p.samples_s) == 3 for p in points)


def test_unknown_kind_and_not_a_folder(tmp_path):
  with pytest.raises(ValueError, match='Unknown record kind'):
    records.parse({'kind': 'other'})
  with pytest.raises(errors.ConfigError, match='is not a results folder'):
    records.load_summaries(tmp_path)
  (tmp_path / 'results.jsonl').write_text('{"kind": "point", "config_id": "a", '
                                          '"positions": 1}\n')
  with pytest.raises(errors.ConfigError, match='no summary record'):
    records.load_summaries(tmp_path)


def test_report_and_plots_read_old_folders(tmp_path):
  items = report.load([str(DATA / 'sweep_5470dcd'), str(DATA / 'compare_5470dcd'),
                       str(DATA / 'sweep_5470dcd')])
  table = report.rows(items)
  assert sorted(r['framework'] for r in table) == ['jax', 'jax', 'torch']
  assert '| cpu |' in report.markdown(table)
  assert plots.report_plots(table, tmp_path)
  summary, = records.load_summaries(DATA / 'sweep_5470dcd')
  plots.ratio_plot(summary, tmp_path / 'ratio.png')
  assert (tmp_path / 'ratio.png').stat().st_size > 0
  comp = compare.comparison(records.load_summaries(DATA / 'compare_5470dcd'))
  assert set(comp['frameworks']) == {'jax', 'torch'}
  assert comp['positions'] == [1, 2, 4]
  plots.overlay_plot(comp, tmp_path / 'compare.png')
  assert (tmp_path / 'compare.png').stat().st_size > 0
