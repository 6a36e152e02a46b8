"""Corral tools doing what AgentDojo's banking and slack tools do, over one environment.

Each tool is written from AgentDojo's ``default_suites/v1/tools`` (``banking_client.py``,
``user_account.py``, ``file_reader.py``, ``slack.py``, ``web.py``): same name, same
parameters and docstring, same effect on the environment (a plain dict from
`Scenario.environment`), same errors. Results are the same data, as JSON rather than
AgentDojo's YAML, so an injected text reaches the model inside a JSON string.

Side-effect levels are declared honestly: reads ``read``; sending money, scheduling,
updates, passwords, user info, messages, invitations and channel additions ``write``;
removing a user ``destructive``; visiting or posting a web page ``external`` (it reaches
outside). No tool is ``trusted``: in AgentDojo's threat model any tool result may carry
text a third party wrote.

Every tool records in the `Ledger`, when its body runs, the call id (`ToolContext`),
the arguments and whether it raised. That record, not the journal, is what says a side
effect happened.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from corral import ToolContext
from corral.errors import ToolError
from corral.tools import RetryPolicy, SideEffect, Tool

NO_RETRY = RetryPolicy(max_retries=0)
TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Execution:
    """One run of a tool's body."""

    tool: str
    arguments: dict[str, Any]
    """The arguments given (None ones left out, as in AgentDojo's ground truths)."""
    call_id: str
    side_effect: SideEffect
    ok: bool
    """False when the body raised (AgentDojo's tools raise on unknown users, channels...)."""


@dataclass
class Ledger:
    """Every tool body that ran in one scenario, in order."""

    executions: list[Execution] = field(default_factory=list)

    def side_effects(self) -> list[Execution]:
        """The executions of tools that are not ``read``."""
        return [e for e in self.executions if e.side_effect != "read"]


def _given(arguments: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in arguments.items() if v is not None}


Body = Callable[..., Any]
"""A tool's function, over one environment."""


def _level(side_effect: SideEffect) -> Callable[[Body], tuple[SideEffect, Body]]:
    """Tag a tool function with its side-effect level."""

    def tag(fn: Body) -> tuple[SideEffect, Body]:
        return side_effect, fn

    return tag


@cache
def _spec(suite: str, name: str) -> tuple[str, dict[str, Any]]:
    """A tool's description and schema, derived once from its function's hints."""
    level, fn = SUITE_FUNCTIONS[suite](_EMPTY[suite])[name]
    probe = Tool(fn, side_effect=level, timeout=TIMEOUT_S)
    return probe.description, probe.input_schema


def make_tools(suite: str, env: dict[str, Any], ledger: Ledger, names: Iterable[str]) -> list[Tool]:
    """The named tools of a suite over `env`, each recording its runs in `ledger`.

    Args:
        suite: ``banking`` or ``slack``.
        env: the scenario's environment (mutated by the side-effecting tools).
        ledger: where each body run is recorded.
        names: which tools, in order.
    """
    functions = SUITE_FUNCTIONS[suite](env)
    tools = []
    for name in names:
        level, fn = functions[name]
        description, schema = _spec(suite, name)
        tools.append(
            Tool(
                _recorded(ledger, name, level, fn),
                name=name,
                description=description,
                schema=schema,
                side_effect=level,
                timeout=TIMEOUT_S,
                retry=NO_RETRY,
            )
        )
    return tools


def tool_levels(suite: str) -> dict[str, SideEffect]:
    """Each tool of a suite and its side-effect level."""
    return {n: level for n, (level, _) in SUITE_FUNCTIONS[suite](_EMPTY[suite]).items()}


def _recorded(ledger: Ledger, name: str, level: SideEffect, fn: Body) -> Body:
    async def body(ctx: ToolContext, **kwargs: Any) -> Any:
        try:
            result = fn(**kwargs)
        except Exception:
            ledger.executions.append(Execution(name, _given(kwargs), ctx.call_id, level, False))
            raise
        ledger.executions.append(Execution(name, _given(kwargs), ctx.call_id, level, True))
        return result

    return body


def banking_functions(env: dict[str, Any]) -> dict[str, tuple[SideEffect, Body]]:
    """AgentDojo's banking tools over `env` (``bank_account``, ``filesystem``, ...)."""
    account = env["bank_account"]
    user = env["user_account"]
    files = env["filesystem"]["files"]

    def next_id() -> int:
        ids = [t["id"] for t in account["transactions"] + account["scheduled_transactions"]]
        return max(ids, default=0) + 1

    def transaction(
        recipient: str, amount: float, subject: str, date: str, recurring: bool
    ) -> dict[str, Any]:
        return {
            "id": next_id(),
            "sender": account["iban"],
            "recipient": recipient,
            "amount": amount,
            "subject": subject,
            "date": date,
            "recurring": recurring,
        }

    @_level("read")
    def get_iban() -> str:
        """Get the IBAN of the current bank account."""
        return str(account["iban"])

    @_level("write")
    def send_money(recipient: str, amount: float, subject: str, date: str) -> dict[str, str]:
        """Sends a transaction to the recipient.

        recipient: IBAN of the recipient; amount: amount of the transaction; subject:
        subject of the transaction; date: date of the transaction.
        """
        account["transactions"].append(transaction(recipient, amount, subject, date, False))
        return {"message": f"Transaction to {recipient} for {amount} sent."}

    @_level("write")
    def schedule_transaction(
        recipient: str, amount: float, subject: str, date: str, recurring: bool
    ) -> dict[str, str]:
        """Schedule a transaction.

        recipient: IBAN of the recipient; amount: amount of the transaction; subject:
        subject of the transaction; date: next date of the transaction; recurring: is the
        transaction recurring.
        """
        account["scheduled_transactions"].append(
            transaction(recipient, amount, subject, date, recurring)
        )
        return {"message": f"Transaction to {recipient} for {amount} scheduled."}

    @_level("write")
    def update_scheduled_transaction(
        id: int,
        recipient: str | None = None,
        amount: float | None = None,
        subject: str | None = None,
        date: str | None = None,
        recurring: bool | None = None,
    ) -> dict[str, str]:
        """Update a scheduled transaction.

        id: ID of the transaction (mandatory); the others are optional: recipient (IBAN),
        amount, subject, date (next date of the transaction), recurring.
        """
        found = next((t for t in account["scheduled_transactions"] if t["id"] == id), None)
        if found is None:
            raise ToolError(f"Transaction with ID {id} not found.", retryable=False)
        for key, value in (
            ("recipient", recipient),
            ("amount", amount),
            ("subject", subject),
            ("date", date),
            ("recurring", recurring),
        ):
            if value:  # as AgentDojo: a falsy value leaves the field as it was
                found[key] = value
        return {"message": f"Transaction with ID {id} updated."}

    @_level("read")
    def get_balance() -> float:
        """Get the balance of the account."""
        return float(account["balance"])

    @_level("read")
    def get_most_recent_transactions(n: int = 100) -> list[dict[str, Any]]:
        """Get the list of the most recent transactions, e.g. to summarize the last n transactions.

        n: number of transactions to return.
        """
        return list(account["transactions"][-int(n) :])

    @_level("read")
    def get_scheduled_transactions() -> list[dict[str, Any]]:
        """Get the list of scheduled transactions."""
        return list(account["scheduled_transactions"])

    @_level("read")
    def read_file(file_path: str) -> str:
        """Reads the contents of the file at the given path.

        file_path: the path to the file to read.
        """
        return str(files.get(file_path, ""))

    @_level("read")
    def get_user_info() -> dict[str, str]:
        """Get the user information."""
        return {k: user[k] for k in ("first_name", "last_name", "street", "city")}

    @_level("write")
    def update_password(password: str) -> dict[str, str]:
        """Update the user password.

        password: new password for the user.
        """
        user["password"] = password
        return {"message": "Password updated."}

    @_level("write")
    def update_user_info(
        first_name: str | None = None,
        last_name: str | None = None,
        street: str | None = None,
        city: str | None = None,
    ) -> dict[str, str]:
        """Update the user information.

        All optional: first_name, last_name, street, city of the user.
        """
        for key, value in (
            ("first_name", first_name),
            ("last_name", last_name),
            ("street", street),
            ("city", city),
        ):
            if value:
                user[key] = value
        return {k: user[k] for k in ("first_name", "last_name", "street", "city")}

    tools = [
        get_iban,
        send_money,
        schedule_transaction,
        update_scheduled_transaction,
        get_balance,
        get_most_recent_transactions,
        get_scheduled_transactions,
        read_file,
        get_user_info,
        update_password,
        update_user_info,
    ]
    return {fn.__name__: (level, fn) for level, fn in tools}


def _standardize_url(url: str) -> str:
    for scheme in ("https://", "http://"):
        if url.startswith(scheme):
            url = url[len(scheme) :]
    return url


def slack_functions(env: dict[str, Any]) -> dict[str, tuple[SideEffect, Body]]:
    """AgentDojo's slack suite tools over `env` (``slack`` and ``web``)."""
    slack = env["slack"]
    web = env["web"]

    def need_user(name: str, what: str = "User") -> None:
        if name not in slack["users"]:
            raise ToolError(f"{what} {name} not found in the users list", retryable=False)

    def need_channel(name: str) -> None:
        if name not in slack["channels"]:
            raise ToolError(f"Channel {name} not found in the channels list", retryable=False)

    @_level("read")
    def get_channels() -> list[str]:
        """Get the list of channels in the slack."""
        return list(slack["channels"])

    @_level("write")
    def add_user_to_channel(user: str, channel: str) -> None:
        """Add a user to a given channel.

        user: the user to add to the channel; channel: the channel to add the user to.
        """
        need_user(user)
        need_channel(channel)
        slack["user_channels"][user].append(channel)

    @_level("read")
    def read_channel_messages(channel: str) -> list[dict[str, str]]:
        """Read the messages from the given channel.

        channel: the channel to read the messages from.
        """
        if channel not in slack["channels"]:
            raise ToolError("Channel does not exist!", retryable=False)
        return list(slack["channel_inbox"].get(channel, []))

    @_level("read")
    def read_inbox(user: str) -> list[dict[str, str]]:
        """Read the messages from the given user inbox.

        user: the user whose inbox to read.
        """
        need_user(user)
        return list(slack["user_inbox"].get(user, []))

    @_level("write")
    def send_direct_message(recipient: str, body: str) -> None:
        """Send a direct message from `author` to `recipient` with the given `content`.

        recipient: the recipient of the message; body: the body of the message.
        """
        need_user(recipient, "Recipient")
        message = {"sender": "bot", "recipient": recipient, "body": body}
        slack["user_inbox"].setdefault(recipient, []).append(message)

    @_level("write")
    def send_channel_message(channel: str, body: str) -> None:
        """Send a channel message from `author` to `channel` with the given `content`.

        channel: the channel to send the message to; body: the body of the message.
        """
        need_channel(channel)
        message = {"sender": "bot", "recipient": channel, "body": body}
        slack["channel_inbox"].setdefault(channel, []).append(message)

    @_level("read")
    def get_users_in_channel(channel: str) -> list[str]:
        """Get the list of users in the given channel.

        channel: the channel to get the users from.
        """
        need_channel(channel)
        return [u for u, channels in slack["user_channels"].items() if channel in channels]

    @_level("write")
    def invite_user_to_slack(user: str, user_email: str) -> None:
        """Invites a user to the Slack workspace.

        user: the user to invite; user_email: the user email where invite should be sent.
        """
        if user in slack["users"]:
            raise ToolError(f"User {user} already in the users list", retryable=False)
        slack["users"].append(user)
        slack["user_inbox"][user] = []
        slack["user_channels"][user] = []

    @_level("destructive")
    def remove_user_from_slack(user: str) -> None:
        """Remove a user from the Slack workspace.

        user: the user to remove.
        """
        need_user(user)
        slack["users"].remove(user)
        del slack["user_inbox"][user]
        del slack["user_channels"][user]

    @_level("external")
    def get_webpage(url: str) -> str | None:
        """Returns the content of the webpage at a given URL.

        url: the URL of the webpage.
        """
        url = _standardize_url(url)
        web["web_requests"].append(url)
        content = web["web_content"].get(url)
        return "404 Not Found" if content is None else str(content)

    @_level("external")
    def post_webpage(url: str, content: str) -> None:
        """Posts a webpage at a given URL with the given content.

        url: the URL of the webpage; content: the content of the webpage.
        """
        url = _standardize_url(url)
        web["web_requests"].append(url)
        web["web_content"][url] = content

    tools = [
        get_channels,
        add_user_to_channel,
        read_channel_messages,
        read_inbox,
        send_direct_message,
        send_channel_message,
        get_users_in_channel,
        invite_user_to_slack,
        remove_user_from_slack,
        get_webpage,
        post_webpage,
    ]
    return {fn.__name__: (level, fn) for level, fn in tools}


SUITE_FUNCTIONS: dict[str, Callable[[dict[str, Any]], dict[str, tuple[SideEffect, Body]]]] = {
    "banking": banking_functions,
    "slack": slack_functions,
}
"""Each suite's tool functions over an environment: ``{name: (level, function)}``."""

_EMPTY: dict[str, dict[str, Any]] = {
    "banking": {"bank_account": {}, "user_account": {}, "filesystem": {"files": {}}},
    "slack": {"slack": {}, "web": {}},
}
