# Copyright: sutazai.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from ansible_collections.sutazai.ops.plugins.module_utils._diff import DifferenceTracker


def test_difference_tracker():
    tracker = DifferenceTracker()
    tracker.add('size_bytes', 1, 1)
    assert not tracker.has_differences()
    tracker.add('active', False, True)
    assert tracker.has_differences()
    assert tracker.differences() == ['active']
    assert tracker.get_before_after() == ({'size_bytes': 1, 'active': False}, {'size_bytes': 1, 'active': True})
    assert tracker.get_before_after(only_changed=True) == ({'active': False}, {'active': True})


def test_merge_and_header():
    tracker = DifferenceTracker()
    tracker.merge({'memory': 1, 'cpus': 2}, {'memory': 2, 'pids': 3})
    entry = tracker.diff(header='redis')
    assert entry == {'before': {'cpus': 2, 'memory': 1, 'pids': None}, 'after': {'cpus': None, 'memory': 2, 'pids': 3},
                     'before_header': 'redis', 'after_header': 'redis'}
    assert tracker.diff(only_changed=True)['after'] == {'cpus': None, 'memory': 2, 'pids': 3}
