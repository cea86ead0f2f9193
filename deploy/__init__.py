"""Deployment of the three services: the key ceremony, and (as files beside this
package) systemd units, container recipes, example configuration and a TLS note.

``family-linkage-keys`` runs :func:`run_ceremony`; see ``deploy/README.md``.
"""

from ._ceremony import CeremonyItem, run_ceremony
from ._errors import CeremonyError, DeployError

__all__ = ["CeremonyError", "CeremonyItem", "DeployError", "run_ceremony"]
