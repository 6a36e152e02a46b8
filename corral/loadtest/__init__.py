"""Load tests with fault accounting: chaos profiles, a harness, and a report.

``corral loadtest --runs 2000 --concurrency 200 --profile production --seed 7`` drives
the chaos workload (`corral.loadtest._workload`: order tasks with a known answer, chaos
tools and a chaos model) through Corral, then through a plain agent loop with no guard,
and reports where every injected fault ended up, what it cost, and whether the
invariants held (no run lost, no budget exceeded, no refused call executed, no side
effect twice, no completed model call repeated, every fault accounted for).

This package sits on top, beside `corral.server` and `corral.cli`: it may import
anything in Corral, and nothing in Corral but the CLI imports it.

For ``--server`` mode, run the service with this package's application::

    export CORRAL_LOADTEST_PROFILE=production CORRAL_LOADTEST_LEDGER=ledger.jsonl
    corral serve --app corral.loadtest:app
"""

from ._accounting import BUCKETS as BUCKETS
from ._accounting import Accounting as Accounting
from ._accounting import FaultRow as FaultRow
from ._accounting import Invariant as Invariant
from ._app import app as app
from ._harness import LoadTest as LoadTest
from ._harness import LoadTestResult as LoadTestResult
from ._harness import run_loadtest as run_loadtest
from ._ledger import Ledger as Ledger
from ._ledger import LedgerEntry as LedgerEntry
from ._profiles import FAULT_CLASSES as FAULT_CLASSES
from ._profiles import Profile as Profile
from ._profiles import load_profile as load_profile
from ._profiles import profile_names as profile_names
from ._report import render_report as render_report
from ._report import report_json as report_json
from ._workload import Case as Case
from ._workload import ChaosAgent as ChaosAgent
from ._workload import ChaosAgentModel as ChaosAgentModel

__all__ = [
    "BUCKETS",
    "FAULT_CLASSES",
    "Accounting",
    "Case",
    "ChaosAgent",
    "ChaosAgentModel",
    "FaultRow",
    "Invariant",
    "Ledger",
    "LedgerEntry",
    "LoadTest",
    "LoadTestResult",
    "Profile",
    "app",
    "load_profile",
    "profile_names",
    "render_report",
    "report_json",
    "run_loadtest",
]
