"""The guard's state file: atomic round trip, backups, and damaged files handled without losing records."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

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
    loaded = store.load(keep_aside=True)  # as an acting pass loads
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
    assert store.load(keep_aside=True) == gs.empty_state()
    assert store.warnings and 'does not hold a memory guard state' in store.warnings[0]
    assert store.needs_repair
    # an acting pass's load changes nothing on disk but a copy kept aside
    assert json.loads(path.read_text()) == {'stopped': 'everything'}
    assert len([p for p in os.listdir(tmp_path) if '.corrupt-' in p]) == 1


def test_damaged_file_loaded_again_and_again_loses_nothing(tmp_path):
    # a check-mode or report-only pass loads without saving: the next load must find the same records
    store = _two_versions(tmp_path)
    path = tmp_path / 'guard.json'
    text = path.read_text()
    path.write_text(text[:text.index('}', text.index('"id-b"')) + 1])
    for _round in range(3):
        assert [r['name'] for r in store.load(keep_aside=True)['stopped']] == ['a', 'b']
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


def tree(directory):
    """Every entry of `directory`: name -> (size, mtime_ns, ctime_ns, content)."""
    result = {}
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        info = os.stat(path)
        with open(path, 'rb') as handle:
            result[name] = (info.st_size, info.st_mtime_ns, info.st_ctime_ns, handle.read())
    return result


@pytest.mark.parametrize('damage', ['torn', 'missing', 'wrong shape'])
def test_plain_load_writes_nothing(tmp_path, damage):
    store = _two_versions(tmp_path)
    path = tmp_path / 'guard.json'
    if damage == 'torn':
        path.write_text(path.read_text()[:30])
    elif damage == 'missing':
        os.unlink(path)
    else:
        path.write_text('[]')
    before = tree(tmp_path)
    for _round in range(2):
        assert [r['name'] for r in store.load()['stopped']] == ['a']  # the backup's record
        assert store.needs_repair
    assert tree(tmp_path) == before
    if damage != 'missing':
        assert any('the next acting pass keeps a copy aside' in w for w in store.warnings)


def test_duplicated_records_load_once(tmp_path):
    path = tmp_path / 'guard.json'
    state = gs.empty_state()
    gs.record_stop(state, stop('a'), 1.0)
    gs.record_stop(state, stop('b'), 2.0)
    state['stopped'].append(dict(state['stopped'][0], stopped_at=3.0))  # a second record of a
    path.write_text(json.dumps(state))
    assert [(r['name'], r['stopped_at']) for r in gs.StateStore(str(path)).load()['stopped']] == [('b', 2.0), ('a', 3.0)]


def test_stopping_then_stopped(tmp_path):
    state = gs.empty_state()
    gs.record_stop(state, stop('a'), 1.0, status='stopping')
    assert state['stopped'][0]['status'] == 'stopping'
    gs.record_stop_failure(state, stop('a'), RuntimeError('engine timeout'))
    assert 'engine timeout' in state['stopped'][0]['last_error']
    gs.record_stopped(state, stop('a'))
    assert state['stopped'][0]['status'] == 'stopped' and 'last_error' not in state['stopped'][0]


def test_unwritable_state_file_is_a_clear_error_and_leaves_the_file(tmp_path):
    store = _two_versions(tmp_path)
    blocker = tmp_path / 'blocker'
    blocker.write_text('')
    store = gs.StateStore(str(blocker / 'guard.json'))  # its directory is a file: nothing can be written there
    with pytest.raises(gs.StateWriteError) as err:
        store.save(gs.empty_state())
    assert 'cannot write the state file %s' % (blocker / 'guard.json') in str(err.value)
    assert isinstance(err.value, OSError)


# The lock: a second process really holds it.

HOLDER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, sys.argv[1])
    from ansible_collections.sutazai.ops.plugins.module_utils import _guard_state as gs
    store = gs.StateStore(sys.argv[2])
    with store.locked():
        print('locked', flush=True)
        if sys.argv[3] == 'until-stdin-closes':
            sys.stdin.read()
        else:
            time.sleep(float(sys.argv[3]))
    print('released', flush=True)
""")
COLLECTIONS = os.path.join(os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..', '..')), '.collections')


def _holder(path, hold):
    proc = subprocess.Popen([sys.executable, '-c', HOLDER, COLLECTIONS, str(path), hold],  # pylint: disable=consider-using-with
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == 'locked'
    return proc


def test_a_held_lock_fails_clearly_after_the_wait(tmp_path):
    path = tmp_path / 'guard.json'
    proc = _holder(path, 'until-stdin-closes')
    try:
        store = gs.StateStore(str(path), lock_timeout=0.2)
        with pytest.raises(gs.StateLockError) as err:
            with store.locked():
                pass
        assert str(err.value) == ('the state file %s is locked by another guard pass (pid %d) and was not released within 0.2 seconds'
                                  % (path, proc.pid))
    finally:
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0
    with gs.StateStore(str(path), lock_timeout=0).locked():  # free again
        pass


def test_a_waiting_pass_gets_the_lock_once_the_holder_releases_it(tmp_path):
    path = tmp_path / 'guard.json'
    proc = _holder(path, '0.5')
    try:
        with gs.StateStore(str(path), lock_timeout=60).locked():
            # the holder printed 'released' before this pass got in
            assert proc.stdout.readline().strip() == 'released'
    finally:
        proc.wait(timeout=30)


def test_lock_file_that_cannot_be_created_is_a_clear_error(tmp_path):
    (tmp_path / 'blocker').write_text('')
    store = gs.StateStore(str(tmp_path / 'blocker' / 'guard.json'))
    with pytest.raises(gs.StateLockError) as err:
        with store.locked():
            pass
    assert 'cannot open the lock file %s' % (tmp_path / 'blocker' / 'guard.json.lock') in str(err.value)
