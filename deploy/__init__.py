"""Deployment of the three services: the key ceremony, the local run, the demo journey,
and (as files beside this package) systemd units, container recipes, example
configuration and a TLS note.

``family-linkage keys`` runs :func:`run_ceremony`; ``family-linkage up`` runs a
:class:`LocalStack`; ``family-linkage demo`` runs :func:`run_journey` on one.
See ``deploy/README.md``.
"""

from ._ceremony import CeremonyItem, run_ceremony
from ._errors import CeremonyError, DeployError, StackError
from ._journey import Journey, Unlocked, run_journey
from ._local import DemoProfessional, LocalStack, ServiceProcess, drop_databases

__all__ = [
    "CeremonyError",
    "CeremonyItem",
    "DemoProfessional",
    "DeployError",
    "Journey",
    "LocalStack",
    "ServiceProcess",
    "StackError",
    "Unlocked",
    "drop_databases",
    "run_ceremony",
    "run_journey",
]
