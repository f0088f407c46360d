# Copyright: sutazai.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Documentation fragment shared by the modules of sutazai.ops: the common attributes."""


class ModuleDocFragment:
    """Attributes every sutazai.ops module documents; each module sets its own support level."""

    DOCUMENTATION = r"""
options: {}
attributes:
  check_mode:
    description: Can run in check mode and return a prediction of changed status without modifying the target.
  diff_mode:
    description: Returns details on what has changed (or would change in check mode) in diff mode.
"""
