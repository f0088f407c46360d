# Copyright: sutazai.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Documentation fragment shared by the modules of sutazai.ops: the common attributes."""


class ModuleDocFragment:
    """Attributes every sutazai.ops module documents; each module sets its own support level.

    The default section describes check_mode and diff_mode. The IDEMPOTENT section (extends_documentation_fragment
    sutazai.ops.attributes.idempotent) describes idempotent; a module that uses it sets attributes.idempotent.support.
    """

    DOCUMENTATION = r"""
options: {}
attributes:
  check_mode:
    description: Can run in check mode and return a prediction of changed status without modifying the target.
  diff_mode:
    description: Returns details on what has changed (or would change in check mode) in diff mode.
"""

    IDEMPOTENT = r"""
options: {}
attributes:
  idempotent:
    description:
      - When run again with the same arguments after a successful run, and with nothing else having changed the target
        in between, the module changes nothing and reports no change.
"""
