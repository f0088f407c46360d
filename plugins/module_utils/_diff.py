# Copyright: sutazai.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Before/after tracking for diff mode, shared by every module. PRIVATE to the collection: no compatibility promise.

Plain Python with no Ansible import. Modeled on community.docker's DifferenceTracker: a module
adds each property it compared, then asks for the before/after dicts or a diff entry with a header.
"""


class DifferenceTracker:
    """Collect before/after values of named properties."""

    def __init__(self):
        self._items = []

    def add(self, name, before, after):
        """Record one property."""
        self._items.append((name, before, after))

    def merge(self, before, after):
        """Record every key of two dicts (a key missing on one side is None there)."""
        for name in sorted(set(before) | set(after)):
            self.add(name, before.get(name), after.get(name))

    def has_differences(self):
        """True when a property changes."""
        return any(before != after for _name, before, after in self._items)

    def differences(self):
        """Names of the properties that change."""
        return [name for name, before, after in self._items if before != after]

    def get_before_after(self, only_changed=False):
        """(before, after) dicts of the recorded properties (only those that change with only_changed)."""
        items = [item for item in self._items if not only_changed or item[1] != item[2]]
        return ({name: before for name, before, _after in items},
                {name: after for name, _before, after in items})

    def diff(self, header=None, only_changed=False):
        """One entry of a module's `diff` result: {'before', 'after'} with optional headers."""
        before, after = self.get_before_after(only_changed)
        entry = {'before': before, 'after': after}
        if header is not None:
            entry['before_header'] = entry['after_header'] = header
        return entry
