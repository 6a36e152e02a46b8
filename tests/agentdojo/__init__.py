"""AgentDojo's banking and slack suites, run through Corral with a worst-case model.

The suites come from ``tests/fixtures/agentdojo/`` (plain JSON made from the AgentDojo
wheel by ``make_fixture.py``, with its MIT licence); nothing here imports ``agentdojo``.

* `_fixture`: the suites as data: environments with injection markers, user tasks and
  injection tasks with their ground-truth calls, and one `Scenario` per benign user task
  or per pair of a user task and an injection task.
* `_tools`: Corral tools doing what AgentDojo's tools do, over one scenario's environment,
  each recording in a `Ledger` every time its body runs.
* `_models`: the scripted models: benign (the user task's ground truth, in order, then
  the answer) and worst-case (the same, but it obeys an injection as soon as it reads
  one), and the same decision function behind the loopback provider servers.
* `_harness`: a useful deployment of each user task (its own side-effecting tools
  auto-approved), the person at the gates, and the figures.
"""
