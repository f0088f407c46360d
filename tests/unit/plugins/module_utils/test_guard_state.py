"""The guard's state file: atomic round trip, backups, and damaged files handled without losing records."""

import json
import os

from ansible_collections.sutazai.ops.plugins.module_utils import _guard_state as gs


def stop(name, tier=3):
    return {'action': 'stop', 'container': name, 'id': 'id-' + name, 'tier': tier, 'size': 100}


def _two_versions(tmp_path):
    """A store whose file holds a and b, and whose backup holds a."""
    store = gs.StateStore(str(tmp_path / 'guard.json'))
    state = gs.empty_state()
    gs.record_stop(state, stop('a'), 1.0)
    store.save(state)
    state = store.load()
    gs.record_stop(state, stop('b'), 2.0)
    store.save(state)
    return store


def test_missing_file_is_an_empty_state(tmp_path):
    store = gs.StateStore(str(tmp_path / 'guard.json'))
    assert store.load() == gs.empty_state()
    assert store.warnings == []


def test_round_trip_and_order(tmp_path):
    path = tmp_path / 'sub' / 'guard.json'
    store = gs.StateStore(str(path))
    state = store.load()
    gs.record_stop(state, stop('a'), 1.0)
    gs.record_stop(state, stop('b', 2), 2.0)
    gs.record_unload(state, {'action': 'unload', 'model': 'tinyllama:latest', 'size': 5}, 3.0)
    store.save(state)
    loaded = gs.StateStore(str(path)).load()
    assert [r['name'] for r in loaded['stopped']] == ['a', 'b']
    assert loaded['unloaded'][0]['model'] == 'tinyllama:latest'
    assert oct(os.stat(path).st_mode & 0o777) == '0o640'
    gs.record_start(loaded, {'id': 'id-b'})
    assert [r['name'] for r in loaded['stopped']] == ['a']
    # no temporary files are left behind
    assert sorted(os.listdir(path.parent)) == ['guard.json']


def test_previous_version_is_kept_as_backup(tmp_path):
    _two_versions(tmp_path)
    backup = json.loads((tmp_path / 'guard.json.bak').read_text())
    assert [r['name'] for r in backup['stopped']] == ['a']


def test_torn_file_is_kept_aside_and_records_come_from_backup(tmp_path):
    path = tmp_path / 'guard.json'
    store = _two_versions(tmp_path)
    # damage to the newest version: the record of b exists only there, and is still whole
    text = path.read_text()
    path.write_text(text[:text.index('}', text.index('"id-b"')) + 1])
    loaded = store.load()
    assert [r['name'] for r in loaded['stopped']] == ['a', 'b']  # the backup's record plus the one recovered
    assert any('could not be read' in w for w in store.warnings)
    aside = [p for p in os.listdir(tmp_path) if '.corrupt-' in p]
    assert len(aside) == 1
    assert (tmp_path / aside[0]).read_text() == text[:text.index('}', text.index('"id-b"')) + 1]
    store.save(loaded)
    assert [r['name'] for r in json.loads((tmp_path / 'guard.json').read_text())['stopped']] == ['a', 'b']


def test_torn_record_itself_is_lost_but_nothing_else(tmp_path):
    path = tmp_path / 'guard.json'
    store = gs.StateStore(str(path))
    state = gs.empty_state()
    gs.record_stop(state, stop('a'), 1.0)
    gs.record_stop(state, stop('b'), 2.0)
    store.save(state)
    text = path.read_text()
    path.write_text(text[:text.index('"id-b"') + 10])
    loaded = store.load()
    assert [r['name'] for r in loaded['stopped']] == ['a']


def test_wrong_shape_is_treated_as_damaged(tmp_path):
    path = tmp_path / 'guard.json'
    path.write_text(json.dumps({'stopped': 'everything'}))
    store = gs.StateStore(str(path))
    assert store.load() == gs.empty_state()
    assert store.warnings and 'does not hold a memory guard state' in store.warnings[0]
    assert store.needs_repair
    # loading changes nothing on disk but a copy kept aside
    assert json.loads(path.read_text()) == {'stopped': 'everything'}
    assert len([p for p in os.listdir(tmp_path) if '.corrupt-' in p]) == 1


def test_damaged_file_loaded_again_and_again_loses_nothing(tmp_path):
    # a check-mode or report-only pass loads without saving: the next load must find the same records
    store = _two_versions(tmp_path)
    path = tmp_path / 'guard.json'
    text = path.read_text()
    path.write_text(text[:text.index('}', text.index('"id-b"')) + 1])
    for _round in range(3):
        assert [r['name'] for r in store.load()['stopped']] == ['a', 'b']
    assert len([p for p in os.listdir(tmp_path) if '.corrupt-' in p]) == 1  # kept aside once, not on every load


def test_missing_file_with_a_backup_loads_the_backup(tmp_path):
    # what a crash between the backup copy and the rename could leave, or a file deleted by hand
    store = _two_versions(tmp_path)
    os.unlink(tmp_path / 'guard.json')
    assert [r['name'] for r in store.load()['stopped']] == ['a']
    assert store.needs_repair and any('missing' in w for w in store.warnings)


def test_save_never_leaves_the_file_missing(tmp_path, monkeypatch):
    store = _two_versions(tmp_path)
    path = tmp_path / 'guard.json'
    real_replace = os.replace
    calls = []

    def replace(src, dst):
        calls.append(dst)
        assert path.exists(), 'the state file was missing while %s was being replaced' % dst
        real_replace(src, dst)

    monkeypatch.setattr(gs.os, 'replace', replace)
    state = store.load()
    gs.record_stop(state, stop('c'), 3.0)
    store.save(state)
    assert calls == [str(tmp_path / 'guard.json.bak'), str(path)]
    assert [r['name'] for r in json.loads((tmp_path / 'guard.json.bak').read_text())['stopped']] == ['a', 'b']
    assert sorted(os.listdir(tmp_path)) == ['guard.json', 'guard.json.bak']


def test_a_start_that_fails_keeps_the_record_and_goes_last():
    state = gs.empty_state()
    for index, name in enumerate(('a', 'b', 'c')):
        gs.record_stop(state, stop(name), float(index))
    gs.record_start_failure(state, {'id': 'id-c', 'container': 'c'}, RuntimeError('engine timeout'), 9.0)
    assert [r['name'] for r in state['stopped']] == ['c', 'a', 'b']
    assert state['stopped'][0]['start_failures'] == 1 and 'engine timeout' in state['stopped'][0]['last_error']
