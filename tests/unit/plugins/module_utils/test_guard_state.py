"""The guard's state file: atomic round trip, backups, and damaged files handled without losing records."""

import json
import os

from ansible_collections.sutazai.ops.plugins.module_utils import _guard_state as gs


def stop(name, tier=3):
    return {'action': 'stop', 'container': name, 'id': 'id-' + name, 'tier': tier, 'size': 100}


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
    path = tmp_path / 'guard.json'
    store = gs.StateStore(str(path))
    first = gs.empty_state()
    gs.record_stop(first, stop('a'), 1.0)
    store.save(first)
    second = store.load()
    gs.record_stop(second, stop('b'), 2.0)
    store.save(second)
    backup = json.loads((tmp_path / 'guard.json.bak').read_text())
    assert [r['name'] for r in backup['stopped']] == ['a']


def test_torn_file_is_kept_aside_and_records_come_from_backup(tmp_path):
    path = tmp_path / 'guard.json'
    store = gs.StateStore(str(path))
    state = gs.empty_state()
    gs.record_stop(state, stop('a'), 1.0)
    store.save(state)
    state = store.load()
    gs.record_stop(state, stop('b'), 2.0)
    store.save(state)
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
    assert not path.exists()
